"""`rls-cds reevaluate PATIENT --fhir-server URL`: queue (and optionally wait for) a re-evaluation."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("reevaluate", help="queue a background re-evaluation of one patient")
    p.add_argument("patient", help="FHIR Patient id on the FHIR server")
    p.add_argument("--fhir-server", required=True, help="FHIR base URL the patient's data are read from")
    p.add_argument("--tenant", default="default", help="tenant the assessment is stored under")
    p.add_argument("--wait", action="store_true", help="wait for the result and print it")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait with --wait")
    p.set_defaults(func=run)


def run(args) -> int:
    from rls_cds.background.store import redis_url
    from rls_cds.background.tasks import FHIR_ID
    from rls_cds.background.triggers import enqueue_reevaluation
    from rls_cds.settings import get_settings

    if not FHIR_ID.match(args.patient):
        print("PATIENT must be a FHIR id ([A-Za-z0-9-.], at most 64 characters)", file=sys.stderr)
        return 2
    if not args.fhir_server.startswith(("http://", "https://")):
        print("--fhir-server must be an http(s) URL", file=sys.stderr)
        return 2
    if not redis_url(get_settings()):
        print(
            "no REDIS_URL and no embedded Redis running (start `rls-cds serve` or set REDIS_URL)",
            file=sys.stderr,
        )
        return 2
    # An operator asking explicitly gets a run even if one is already queued.
    queued = enqueue_reevaluation(args.tenant, args.fhir_server, args.patient, "operator", coalesce=False)
    out = {"patient": queued.patient, "task_id": queued.task_id}
    if args.wait:
        from celery.exceptions import TimeoutError as CeleryTimeout

        from rls_cds.background.celery_app import app

        try:
            out["result"] = app.AsyncResult(queued.task_id).get(timeout=args.timeout, propagate=False)
        except CeleryTimeout:
            print(json.dumps(out))
            print(f"no result within {args.timeout}s (is a worker running?)", file=sys.stderr)
            return 1
    print(json.dumps(out, default=str))
    return 0 if not args.wait or (out["result"] or {}).get("outcome") in ("stored", "unchanged") else 1
