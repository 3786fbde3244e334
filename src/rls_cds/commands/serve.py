"""`rls-cds serve`: the CDS Hooks HTTP service on uvicorn.

With REDIS_URL unset it first starts the embedded Redis server and a worker beside the API
(rls_cds.background.embedded), so one command runs everything on one machine.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from rls_cds.commands.logsetup import configure_command_logging

# DESIGN §1: most of the latency tail on large bodies is the garbage collector; a larger
# generation-0 budget plus freezing the start-up heap (terminology index) cut p99 about 5x.
GC_THRESHOLDS = (50_000, 50, 100)


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve the CDS Hooks services over HTTP")
    p.add_argument("--host", help="bind address (default: RLS_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: RLS_PORT or 8080)")
    p.add_argument(
        "--dev", action="store_true", help="development mode: no authentication, loopback only, loud warnings"
    )
    p.set_defaults(func=run)


def _settings(args):
    from rls_cds.settings import get_settings

    # Through the environment, so every module that calls get_settings() sees the same values.
    if args.host:
        os.environ["RLS_HOST"] = args.host
    if args.port:
        os.environ["RLS_PORT"] = str(args.port)
    if args.dev:
        os.environ["RLS_DEV_MODE"] = "true"
    get_settings.cache_clear()
    return get_settings()


def _security_problem(settings) -> str | None:
    """Production needs trusted issuers (and never the public sandbox key); None when fine."""
    try:
        from rls_cds.security.issuers import IssuerConfigError, check_startup
    except ImportError:
        return None
    try:
        check_startup(settings)
    except IssuerConfigError as exc:
        return str(exc)
    return None


def _catalogue_problem(settings) -> str | None:
    """The service catalogue must load before anything starts (a `pip install` carries no cds-hooks/)."""
    from rls_cds.api.catalogue import load_catalogue

    try:
        load_catalogue(settings.catalogue_dir, None)
    except Exception as exc:  # noqa: BLE001 - no patient data here; name the variable and the cause
        if isinstance(exc, OSError):
            cause = f"{exc.strerror}: {exc.filename}"
        else:
            cause = f"{type(exc).__name__}: {exc}"
        return f"RLS_CATALOGUE_DIR: the service catalogue (services.yaml) does not load ({cause})"
    return None


class StartupRefused(Exception):
    """A start-up problem for the operator: one line on stderr, exit 2, no traceback."""


def _start_embedded(settings):
    """Start embedded Redis + worker; returns a stop callable (or None when not available)."""
    try:
        from rls_cds.background.embedded import FolderInUse, start_embedded
    except ImportError:
        logging.getLogger("rls_cds.api").warning("no REDIS_URL and no embedded store: feedback is disabled")
        return None
    try:
        url, stop = start_embedded(settings)
    except FolderInUse as exc:  # another `rls-cds serve` owns the embedded Redis folder
        raise StartupRefused(str(exc)) from None
    os.environ["REDIS_URL"] = url
    from rls_cds.settings import get_settings

    get_settings.cache_clear()
    return stop


def tuned_app():
    """Build the app (terminology loaded), then freeze the start-up heap and raise the GC budget."""
    from rls_cds.api.app import create_app
    from rls_cds.settings import get_settings
    from rls_cds.tracing import instrument

    if not logging.getLogger().handlers:  # a fresh uvicorn worker process
        configure_command_logging(get_settings())
    app = instrument(create_app(), get_settings())  # no-op unless RLS_OTEL_ENABLED
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return app


@contextmanager
def _shared_metrics_dir() -> Iterator[str]:
    """A new private (0700) directory, exported as PROMETHEUS_MULTIPROC_DIR to the uvicorn workers
    started inside the block and removed after them: /metrics then sums every worker's values
    (rls_cds.api.metrics). Workers are spawned fresh interpreters, so the variable is in their
    environment before they import prometheus_client. New (and empty) for every run, so files of an
    earlier run never count. Entered after the embedded Celery worker has started: it does not inherit
    the variable (its task metrics go through Redis, rls_cds.background.metrics)."""
    from rls_cds.api.metrics import MULTIPROC_DIR_ENV

    path = tempfile.mkdtemp(prefix="rls-cds-metrics-")
    before = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = path
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = before
        shutil.rmtree(path, ignore_errors=True)


def _exit_quietly_on_stop_signals() -> None:
    """Uvicorn drains, restores the handlers it found and re-raises SIGTERM/SIGINT after shutdown.
    With the default handler there, the process would die of the signal before the `finally` below
    stops the embedded Redis and worker; this one unwinds through it and exits 0 (also when the
    signal comes before uvicorn has started, e.g. while the terminology loads)."""

    def stop(signum, frame):
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


def run(args) -> int:
    import uvicorn

    settings = _settings(args)
    configure_command_logging(settings)
    log = logging.getLogger("rls_cds.api")
    if settings.dev_mode and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.error("development mode serves on loopback only; refusing host", extra={"host": settings.host})
        return 2
    from rls_cds.tracing import missing_dependency

    problem = _security_problem(settings) or missing_dependency(settings) or _catalogue_problem(settings)
    if problem:
        log.error("refusing to start: %s", problem)
        print(f"rls-cds serve: refusing to start: {problem}", file=sys.stderr)
        return 2
    _exit_quietly_on_stop_signals()
    try:
        stop = _start_embedded(settings) if not settings.redis_url else None
    except StartupRefused as exc:
        log.error("refusing to start: %s", str(exc))
        print(f"rls-cds serve: refusing to start: {exc}", file=sys.stderr)
        return 2
    try:
        from rls_cds.settings import get_settings

        settings = get_settings()
        log.info("serving", extra={"host": settings.host, "port": settings.port, "dev": settings.dev_mode})
        common = {
            "host": settings.host,
            "port": settings.port,
            "log_level": settings.log_level.lower(),
            "access_log": False,  # access lines carry URLs; our own hook log is PHI-safe
            "log_config": None,
            # SIGTERM: stop accepting, let in-flight hooks finish for at most this long.
            "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        }
        if settings.api_workers > 1:
            # Each worker process builds its own app (and tunes its own GC) from the environment;
            # their metrics meet in one directory so any worker answers /metrics for all of them.
            with _shared_metrics_dir():
                uvicorn.run(
                    "rls_cds.commands.serve:tuned_app", factory=True, workers=settings.api_workers, **common
                )
        else:
            uvicorn.run(tuned_app(), **common)
    finally:
        if stop is not None:
            stop()
    return 0
