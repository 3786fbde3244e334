"""What `rls-cds worker` and `rls-cds beat` do first: PHI-safe logging, then find their broker."""

from __future__ import annotations

import logging

from rls_cds.commands.logsetup import configure_command_logging


def settings_with_broker(name: str):
    """The settings, with logging configured; None (and an error logged) when there is no broker."""
    from rls_cds.background.store import redis_url
    from rls_cds.settings import get_settings

    settings = get_settings()
    configure_command_logging(settings)
    if redis_url(settings):
        return settings
    logging.getLogger("rls_cds.background").error(
        "no REDIS_URL and no embedded Redis running: %s has no broker", name
    )
    return None
