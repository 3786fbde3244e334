"""`rls-cds beat`: the Celery beat scheduler (nightly panel runs); run exactly one per deployment.

Logs as the other long-running commands do (rls_cds.commands.logsetup: one redacted JSON object a
line on stderr). Celery keeps that root handler (``worker_hijack_root_logger=False`` in celery_app);
``--quiet`` drops its plain-text banner, the start-up line below says what it said that matters.
"""

from __future__ import annotations

import logging

from rls_cds.commands.logsetup import configure_command_logging


def register(sub) -> None:
    p = sub.add_parser("beat", help="run the Celery beat scheduler (one per deployment)")
    p.add_argument("--loglevel", "-l", help="log level (default: RLS_LOG_LEVEL)")
    p.add_argument("--schedule", help="schedule state file (default: RLS_BEAT_SCHEDULE_FILE)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rls_cds.settings import get_settings

    settings = get_settings()
    configure_command_logging(settings)
    log = logging.getLogger("rls_cds.background")
    from rls_cds.background.celery_app import app
    from rls_cds.background.store import redis_url

    if not redis_url(settings):
        log.error("no REDIS_URL and no embedded Redis running: beat has no broker")
        return 2
    schedule = args.schedule or str(settings.beat_schedule_file)
    from pathlib import Path

    Path(schedule).parent.mkdir(parents=True, exist_ok=True)
    loglevel = (args.loglevel or settings.log_level).upper()
    log.info("beat starting", extra={"schedule_file": schedule, "loglevel": loglevel})
    app.start(argv=["--quiet", "beat", "--schedule", schedule, "--loglevel", loglevel])
    return 0
