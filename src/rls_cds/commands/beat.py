"""`rls-cds beat`: the Celery beat scheduler (nightly panel runs); run exactly one per deployment."""

from __future__ import annotations

import logging


def register(sub) -> None:
    p = sub.add_parser("beat", help="run the Celery beat scheduler (one per deployment)")
    p.add_argument("--loglevel", "-l", help="log level (default: RLS_LOG_LEVEL)")
    p.add_argument("--schedule", help="schedule state file (default: RLS_BEAT_SCHEDULE_FILE)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rls_cds.settings import get_settings

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from rls_cds.background.celery_app import app
    from rls_cds.background.store import redis_url

    if not redis_url(settings):
        logging.getLogger("rls_cds.background").error("no REDIS_URL and no embedded Redis running")
        return 2
    schedule = args.schedule or str(settings.beat_schedule_file)
    from pathlib import Path

    Path(schedule).parent.mkdir(parents=True, exist_ok=True)
    app.start(
        argv=["beat", "--schedule", schedule, "--loglevel", (args.loglevel or settings.log_level).upper()]
    )
    return 0
