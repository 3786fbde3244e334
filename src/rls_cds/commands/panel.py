"""`rls-cds panel`: screen patient panels.

    rls-cds panel list
    rls-cds panel run PANEL [--wait]                  # Celery workers do the work (queue `batch`)
    rls-cds panel run --ndjson DIR_OR_FILES... [--workers N] [--tenant T]   # local, no FHIR server
    rls-cds panel status RUN
    rls-cds panel report RUN [--format json|csv]

Exit code: 0 when the run succeeded (every patient assessed), 1 when it completed with patients in
the error report or failed, 2 for bad usage. Output never names a patient (the report files do).
"""

from __future__ import annotations

import json
import sys
import time

from rls_cds.commands.logsetup import configure_command_logging


def register(sub) -> None:
    p = sub.add_parser("panel", help="nightly panel screening: run, status, report")
    psub = p.add_subparsers(dest="panel_command", metavar="ACTION")
    psub.required = True

    run = psub.add_parser("run", help="run a panel now (Celery), or screen local NDJSON with --ndjson")
    run.add_argument("panel", nargs="?", help="panel id from the panels file")
    run.add_argument("--ndjson", nargs="+", metavar="PATH", help="Bulk NDJSON files or directories")
    run.add_argument("--workers", type=int, default=1, help="worker processes for --ndjson (default 1)")
    run.add_argument("--tenant", help="with --ndjson: also store assessments under this tenant")
    run.add_argument(
        "--panel-id",
        help="with --ndjson: panel id used in the report and to find the previous run (default: "
        "'local-' and a digest of the paths, so only runs of the same export are compared)",
    )
    run.add_argument("--wait", action="store_true", help="wait for the Celery run to finish")
    run.add_argument("--timeout", type=float, default=24 * 3600, help="seconds --wait waits")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(func=_store_errors(cmd_run))

    status = psub.add_parser("status", help="status and counts of a run")
    status.add_argument("run_id")
    status.set_defaults(func=_store_errors(cmd_status))

    report = psub.add_parser("report", help="print a finished run's worklist")
    report.add_argument("run_id")
    report.add_argument("--format", choices=["json", "csv"], default="json")
    report.set_defaults(func=_store_errors(cmd_report))

    lst = psub.add_parser("list", help="configured panels")
    lst.set_defaults(func=cmd_list)


def _store_errors(func):
    """Redis or the Celery broker unreachable: one clear line and exit code 1, not a traceback."""

    def wrapped(args) -> int:
        import redis

        try:
            return func(args)
        except Exception as exc:
            # kombu is looked up, not imported (~10 ms of start-up `panel run --ndjson` never needs):
            # if nothing imported it, the error cannot be one of its broker errors.
            broker = sys.modules.get("kombu.exceptions")
            if isinstance(exc, redis.RedisError) or (broker and isinstance(exc, broker.OperationalError)):
                return _fail(f"Redis (run state / task queue) is not reachable ({type(exc).__name__})", 1)
            raise

    return wrapped


def _settings():
    from rls_cds.settings import get_settings

    return get_settings()


def _fail(msg: str, code: int = 2) -> int:
    print(f"rls-cds panel: {msg}", file=sys.stderr)
    return code


class Progress:
    """One self-overwriting line on a terminal: chunks, patients and resources per second."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def __call__(self, phase: str, done: int, total: int, totals: dict) -> None:
        if not self.enabled:
            return
        secs = max(1e-6, time.perf_counter() - self.t0)
        sys.stderr.write(
            f"\r{phase:7s} {done}/{total}  {totals['patients']} patients ({totals['patients'] / secs:,.0f}/s)"
            f"  {totals['resources']:,} resources ({totals['resources'] / secs:,.0f}/s)   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _summary(report: dict, seconds: float | None = None) -> str:
    c = report["counts"]
    line = (
        f"run {report['run']} ({report['panel']}): {report['status']}; {c['patients_assessed']} patients "
        f"assessed, {c['patients_in_error']} in the error report, {c['worklist']} on the worklist "
        f"({c['new_since_previous']} new since the previous run); {c['resources']} resources"
    )
    if seconds:
        line += f" in {seconds:.2f} s ({c['resources'] / seconds:,.0f} resources/s)"
    if c.get("bad_lines"):
        line += f"\n{c['bad_lines']} unreadable lines (parse_errors in the report)"
    if c.get("patients_without_patient_resource"):
        line += f"\n{c['patients_without_patient_resource']} patients assessed without a Patient resource"
    for problem in report.get("run_errors") or []:
        line += f"\n{problem}"
    return line + f"\nreport: {report['files']['json']}  {report['files']['csv']}"


def cmd_run(args) -> int:
    settings = _settings()
    configure_command_logging(settings)
    if args.ndjson:
        if args.panel:
            return _fail("give either a PANEL or --ndjson, not both")
        return _run_ndjson(args, settings)
    if not args.panel:
        return _fail("give a PANEL id (see `rls-cds panel list`) or --ndjson PATH")
    from rls_cds.panels import service

    try:
        run_id = service.start_run(settings, args.panel)
    except service.PanelError as exc:
        return _fail(str(exc))
    print(f"run {run_id} started for panel {args.panel}")
    if not args.wait:
        return 0
    report = service.wait(settings, run_id, args.timeout, progress=None if args.quiet else WaitProgress())
    if report is None:
        return _fail(f"run {run_id} did not finish within {args.timeout:.0f} s", 1)
    print(_summary(report))
    return 0 if report["status"] == "succeeded" else 1


class WaitProgress:
    """One self-overwriting line while a Celery run proceeds: phase, patients and resources per second."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, status: dict) -> None:
        if not sys.stderr.isatty():
            return
        p = status.get("progress", {})
        secs = max(1e-6, time.perf_counter() - self.t0)
        patients, resources = p.get("patients", 0), p.get("resources", 0)
        sys.stderr.write(
            f"\r{status.get('status')}: chunks {p.get('chunks_done')}/{p.get('chunks')}"
            f"  units {p.get('units_done')}/{p.get('units')}  {patients} patients ({patients / secs:,.0f}/s)"
            f"  {resources:,} resources ({resources / secs:,.0f}/s)   "
        )
        sys.stderr.flush()


def _run_ndjson(args, settings) -> int:
    from rls_cds.panels import ndjson
    from rls_cds.panels.local import run_ndjson
    from rls_cds.panels.service import redis_url_for_cli

    if args.workers < 1:
        return _fail("--workers must be at least 1")
    try:
        ndjson.ndjson_files(args.ndjson)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    from rls_cds.panels.runs import load_terminology

    terminology = load_terminology(settings)
    t0 = time.perf_counter()
    progress = Progress(not args.quiet)
    with redis_url_for_cli(settings) as url:
        report = run_ndjson(
            args.ndjson,
            args.workers,
            settings,
            url,
            terminology,
            panel_id=args.panel_id or _local_panel_id(args.ndjson),
            tenant=args.tenant,
            progress=progress,
        )
    progress.close()
    print(_summary(report, time.perf_counter() - t0))
    return 0 if report["status"] == "succeeded" else 1


def _local_panel_id(paths: list[str]) -> str:
    """'local-<digest of the resolved paths>': "new since the previous run" then compares runs of one
    export, never two unrelated ones that both defaulted to 'local'."""
    import hashlib
    from pathlib import Path

    key = "\0".join(sorted(str(Path(p).resolve()) for p in paths))
    return "local-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def cmd_status(args) -> int:
    from rls_cds.panels import service

    settings = _settings()
    status = service.run_status(settings, args.run_id)
    if status is None:
        return _fail(f"no run {args.run_id}", 1)
    print(json.dumps(status, indent=2, default=str))
    return 0


def cmd_report(args) -> int:
    from rls_cds.panels import service
    from rls_cds.panels.report import worklist_csv

    report = service.run_report(_settings(), args.run_id)
    if report is None:
        return _fail(f"no report for run {args.run_id} (unknown or not finished)", 1)
    if args.format == "csv":
        sys.stdout.write(worklist_csv(report))
    else:
        print(json.dumps(report, indent=2, default=str))
    return 0


def cmd_list(args) -> int:
    from rls_cds.panels.config import PanelConfigError, load_panels

    try:
        panels = load_panels(_settings())
    except PanelConfigError as exc:
        return _fail(str(exc))
    if not panels:
        print("no panels configured (RLS_PANELS_FILE names the panels file)", file=sys.stderr)
    for p in panels.values():
        print(f"{p.id}\t{p.strategy}\t{p.schedule or '-'}\t{p.title}")
    return 0
