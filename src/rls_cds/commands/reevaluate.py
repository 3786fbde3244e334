"""`rls-cds reevaluate PATIENT --fhir-server URL`: queue (and optionally wait for) a re-evaluation.

`rls-cds reevaluate --dead-letters`: queue again every patient in the tenant's dead-letter list (after
the FHIR server or the SMART registration is fixed). The operator API lists dead letters without
patient ids; this command reads them from Redis and never prints them.
"""

from __future__ import annotations

import json
import sys

# What a waiting operator is told when no result came, by Celery task state.
_NO_RESULT = {
    "PENDING": "no worker has taken it yet (is a worker consuming the 'hooks' queue?)",
    "RETRY": "a worker is retrying it (FHIR server trouble? the worker log has the reason)",
    "STARTED": "a worker is still running it",
}


def register(sub) -> None:
    p = sub.add_parser("reevaluate", help="queue a background re-evaluation of one patient")
    p.add_argument("patient", nargs="?", help="FHIR Patient id on the FHIR server")
    p.add_argument("--fhir-server", help="FHIR base URL the patient's data are read from (with PATIENT)")
    p.add_argument(
        "--dead-letters",
        action="store_true",
        help="instead of PATIENT: queue every dead-lettered patient again",
    )
    p.add_argument(
        "--tenant",
        help="tenant the assessment is stored under (default: as background work files it: the FHIR "
        "server's tenant in RLS_FHIR_SERVERS_FILE, else 'dev' in development mode, else 'default')",
    )
    p.add_argument("--wait", action="store_true", help="wait for the result and print it")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait with --wait")
    p.set_defaults(func=run)


def _usage_problem(args) -> str | None:
    from rls_cds.fhir.base_url import base_url_problem
    from rls_cds.fhir.ids import FHIR_ID

    if args.dead_letters:
        return "give either PATIENT or --dead-letters" if args.patient or args.wait else None
    if not args.patient or not FHIR_ID.match(args.patient):
        return "PATIENT must be a FHIR id ([A-Za-z0-9-.], at most 64 characters)"
    problem = base_url_problem(args.fhir_server) if args.fhir_server else "is required with PATIENT"
    return f"--fhir-server {problem}" if problem else None


def run(args) -> int:
    from rls_cds.background.store import redis_url
    from rls_cds.settings import get_settings

    problem = _usage_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if not redis_url(get_settings()):
        print(
            "no REDIS_URL and no embedded Redis running (start `rls-cds serve` or set REDIS_URL)",
            file=sys.stderr,
        )
        return 2
    args.tenant = args.tenant or _default_tenant(args.fhir_server)
    return _requeue_dead_letters(args.tenant) if args.dead_letters else _reevaluate_one(args)


def _default_tenant(fhir_server: str | None) -> str:
    """The tenant a notification about this server would be filed under, so hooks find the result."""
    from rls_cds.background.triggers import background_server, unlisted_tenant
    from rls_cds.settings import get_settings

    return background_server(fhir_server)[1] if fhir_server else unlisted_tenant(get_settings())


def _reevaluate_one(args) -> int:
    from rls_cds.background.triggers import enqueue_reevaluation

    # An operator asking explicitly gets a run even if one is already queued.
    queued = enqueue_reevaluation(args.tenant, args.fhir_server, args.patient, "operator", coalesce=False)
    out = {"tenant": args.tenant, "patient": queued.patient, "task_id": queued.task_id}
    if args.wait:
        from celery.exceptions import TimeoutError as CeleryTimeout

        from rls_cds.background.celery_app import app

        result = app.AsyncResult(queued.task_id)
        try:
            out["result"] = result.get(timeout=args.timeout, propagate=False)
        except CeleryTimeout:
            print(json.dumps(out))
            why = _NO_RESULT.get(result.state, f"task state {result.state}")
            print(f"no result within {args.timeout}s: {why}", file=sys.stderr)
            return 1
    print(json.dumps(out, default=str))
    return 0 if not args.wait or (out["result"] or {}).get("outcome") in ("stored", "unchanged") else 1


def _requeue_dead_letters(tenant: str) -> int:
    """Queue each dead-lettered patient once (however many entries name it); an entry leaves the list
    only after its patient is queued, so a failure or a kill half-way loses nothing (at worst a patient
    is queued twice). Entries that name no patient (older ones, notifications) stay listed."""
    import orjson
    import redis

    from rls_cds.background.store import Store
    from rls_cds.background.triggers import enqueue_reevaluation
    from rls_cds.settings import get_settings

    store = Store.from_settings(get_settings(), socket_timeout=5.0, retries=2)
    targets: dict[tuple[str, str], list[bytes]] = {}
    kept = requeued = 0
    try:
        for raw in store.raw_dead_letters(tenant):
            target = _requeue_target(orjson.loads(raw))
            if target is None:
                kept += 1
            else:
                targets.setdefault(target, []).append(raw)
        for (server, patient), entries in targets.items():
            enqueue_reevaluation(tenant, server, patient, "dead-letter requeue", store, coalesce=False)
            for raw in entries:
                store.remove_dead_letter(tenant, raw)
            requeued += 1
    except (redis.RedisError, OSError) as exc:
        print(
            f"stopped after queueing {requeued} patient(s): Redis failed ({type(exc).__name__}); "
            "the other entries are still listed, run the command again",
            file=sys.stderr,
        )
        return 1
    print(json.dumps({"tenant": tenant, "requeued": requeued, "kept": kept}))
    return 0


def _requeue_target(entry: object) -> tuple[str, str] | None:
    target = entry.get("requeue") if isinstance(entry, dict) else None
    if not isinstance(target, dict):
        return None
    server, patient = target.get("fhir_server"), target.get("patient_id")
    return (server, patient) if isinstance(server, str) and isinstance(patient, str) else None
