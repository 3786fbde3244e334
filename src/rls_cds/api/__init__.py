"""The HTTP adapter: CDS Hooks discovery, services, feedback, health, metrics."""
