"""Logging for the long-running commands (serve, worker, beat, panel): the PHI-safe configuration."""

from __future__ import annotations

import logging


def configure_command_logging(settings) -> None:
    """rls_cds.security.logs when installed; plain basicConfig at the configured level otherwise."""
    try:
        from rls_cds.security.logs import configure_logging
    except ImportError:
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        return
    configure_logging(settings)
