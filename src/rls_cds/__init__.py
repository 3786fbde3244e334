"""rls-cds: a CDS Hooks service for the causes and aggravators of Restless Legs Syndrome."""

__version__ = "0.1.0"
