"""`rls-cds beat`: the Celery beat scheduler (nightly panel runs); run exactly one per deployment.

Logs as the other long-running commands do (rls_cds.commands.logsetup: one redacted JSON object a
line on stderr). Celery keeps that root handler (``worker_hijack_root_logger=False`` in celery_app);
``--quiet`` drops its plain-text banner, the start-up line below says what it said that matters.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import logging

from rls_cds.commands.celery_setup import settings_with_broker


def register(sub) -> None:
    p = sub.add_parser("beat", help="run the Celery beat scheduler (one per deployment)")
    p.add_argument("--loglevel", "-l", help="log level (default: RLS_LOG_LEVEL)")
    p.add_argument("--schedule", help="schedule state file (default: RLS_BEAT_SCHEDULE_FILE)")
    p.set_defaults(func=run)


def run(args) -> int:
    settings = settings_with_broker("beat")
    if settings is None:
        return 2
    log = logging.getLogger("rls_cds.background")
    from rls_cds.background.celery_app import app

    schedule = args.schedule or str(settings.beat_schedule_file)
    from pathlib import Path

    Path(schedule).parent.mkdir(parents=True, exist_ok=True)
    loglevel = (args.loglevel or settings.log_level).upper()
    _import_eagerly(app)
    log.info("beat starting", extra={"schedule_file": schedule, "loglevel": loglevel})
    app.start(argv=["--quiet", "beat", "--schedule", schedule, "--loglevel", loglevel])
    return 0


def _import_eagerly(app) -> None:
    """Import now what beat imports lazily while it starts (scheduler, AMQP producer, Redis result
    backend, the dbm module behind its shelve schedule file). Beat's SIGTERM handler raises
    SystemExit wherever the main thread is; landing inside one of those imports left a
    half-initialised module and an exit code 1 instead of a clean stop."""
    import celery.backends.redis  # noqa: F401
    import celery.beat  # noqa: F401
    import kombu.transport.redis  # noqa: F401

    for name in ("dbm.gnu", "dbm.ndbm", "dbm.dumb"):  # shelve picks one by the file it finds
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    codecs.lookup("latin-1")  # dbm.dumb opens its files as Latin-1: the codec module loads lazily too

    app.amqp  # noqa: B018 - a cached property: instantiating it is the import
    app.backend  # noqa: B018 - the same (no connection is made until first use)
