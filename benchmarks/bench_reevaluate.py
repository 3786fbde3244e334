"""Background re-evaluation throughput: patients re-evaluated per second with 1 and 2 worker processes.

Starts a real sekmet-fhir server (SMART Backend Services client), loads N generated patients
(benchmarks/generate.py, 'small' or 'mixed' size), then for each worker count starts a fresh
redis-server and that many `rls-cds worker --concurrency 1` processes, queues one
`reevaluate_patient` per patient (distinct patients: every task reads FHIR, evaluates and stores)
and measures the wall time until every result is in. A warm-up pass (tokens, connections) runs first
and is not timed. Not part of the test suite's pass/fail.

    .venv/bin/python benchmarks/bench_reevaluate.py [--patients 200] [--size small] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import generate  # noqa: E402

from tests.support.celery_workers import client_app, start_worker  # noqa: E402
from tests.support.fhir_server import start_fhir_server, stop_process, transaction  # noqa: E402
from tests.support.redis_server import start_redis  # noqa: E402

TASK = "rls_cds.background.tasks.reevaluate_patient"


def load_patients(fhir, n: int, size: str) -> list[str]:
    ids, batch = [], []
    for i in range(n):
        patient = generate.make_patient(i, size=size, seed=7)
        ids.append(patient["Patient"][0]["id"])
        batch += generate.flat(patient)
        if len(batch) > 500 or i == n - 1:
            fhir.load_bundle(transaction(batch))
            batch = []
    return ids


def run(work: Path, fhir, servers: Path, ids: list[str], workers: int) -> dict:
    broker = start_redis(work / f"redis-{workers}")
    procs = []
    try:
        env = {"RLS_FHIR_SERVERS_FILE": str(servers), "RLS_LOG_LEVEL": "WARNING"}
        procs = [
            start_worker(work / f"w{workers}", broker.url, env=env, concurrency=1) for _ in range(workers)
        ]
        app = client_app(broker.url)

        def batch(patients: list[str], tenant: str) -> list[dict]:
            results = [
                app.send_task(TASK, args=[tenant, fhir.base_url, p, "bench"], queue="hooks") for p in patients
            ]
            return [r.get(timeout=600) for r in results]

        batch(ids[:10], "warmup")
        start = time.perf_counter()
        outcomes = batch(ids, "bench")
        elapsed = time.perf_counter() - start
        bad = [o for o in outcomes if o.get("outcome") != "stored"]
        import redis

        seconds = redis.Redis.from_url(broker.url).hgetall("rls:stats:task_seconds")
        counts = redis.Redis.from_url(broker.url).hgetall("rls:stats:tasks")
        key = b"reevaluate_patient|stored"
        mean_ms = 1000 * float(seconds.get(key, 0)) / max(1, int(counts.get(key, 1)))
        return {
            "workers": workers,
            "patients": len(ids),
            "seconds": round(elapsed, 2),
            "per_second": round(len(ids) / elapsed, 1),
            "not_stored": len(bad),
            "mean_task_ms": round(mean_ms, 1),  # inside the task: FHIR reads + core + store
        }
    finally:
        for p in procs:
            p.stop()
        stop_process(broker.process)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--size", default="small", choices=["small", "mixed", "large"])
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-reeval-") as tmp:
        work = Path(tmp)
        fhir = start_fhir_server(work / "sekmet")
        try:
            ids = load_patients(fhir, args.patients, args.size)
            servers = fhir.write_fhir_servers_file(work / "fhir-servers.yaml", token_url=fhir.token_url)
            rows = [run(work, fhir, servers, ids, int(n)) for n in args.workers.split(",")]
        finally:
            stop_process(fhir.process)
    for row in rows:
        print(
            f"{row['workers']} worker process(es): {row['patients']} patients in {row['seconds']} s "
            f"= {row['per_second']} re-evaluations/s, {row['mean_task_ms']} ms per task "
            f"(not stored: {row['not_stored']})"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return 0 if all(r["not_stored"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
