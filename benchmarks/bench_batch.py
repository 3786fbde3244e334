"""Batch throughput: `rls-cds panel run --ndjson` vs bare NDJSON parsing of the same files.

For 1,000 and 10,000 generated patients (Bulk-style NDJSON, one file per resource type):
- bare: one process reads every file line by line, parses each line with orjson and groups it by
  patient (a per-patient count: the parse-and-group cost without keeping the resources);
- service: `rls-cds panel run --ndjson DIR --workers 1`, then `--workers 2`.
Each is a separate process; wall time gives resources per second, and a psutil poller records the
peak resident memory of the process tree (children included). `batch_ratio` = service resources/s
with 2 workers / bare resources/s at 10,000 patients; memory growth is peak(10k) / peak(1k).

    .venv/bin/python benchmarks/bench_batch.py [--sizes 1000,10000] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import generate  # noqa: E402

RLS_CDS = REPO / ".venv" / "bin" / "rls-cds"
KINDS = ("Patient", "Condition", "Observation", "MedicationRequest", "Medication")


def bare_parse(directory: Path) -> dict:
    """The baseline: orjson-parse every line of every file, grouped by patient."""
    import orjson

    per_patient: dict[str, int] = {}
    resources = 0
    for kind in KINDS:
        path = directory / f"{kind}.ndjson"
        if not path.exists():
            continue
        with path.open("rb") as f:
            for line in f:
                if not line.strip():
                    continue
                res = orjson.loads(line)
                resources += 1
                key = _patient_of(res)
                per_patient[key] = per_patient.get(key, 0) + 1
    return {"resources": resources, "patients": len(per_patient) - ("" in per_patient)}


def _patient_of(res: dict) -> str:
    if res.get("resourceType") == "Patient":
        return f"Patient/{res.get('id')}"
    subject = res.get("subject") or res.get("patient") or {}
    # Medications have no subject: they travel with whoever references them.
    return subject.get("reference", "") if isinstance(subject, dict) else ""


class PeakRss:
    """Polls the resident memory of a process and all its children; keeps the peak of the sum."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self._interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):  # a child may exit between calls
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            self._stop.wait(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed_process(cmd: list[str], env: dict, log_path: Path, timeout: float) -> dict:
    start = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        watcher = PeakRss(proc.pid)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = "timeout"
        peak = watcher.stop()
    return {
        "seconds": round(time.perf_counter() - start, 3),
        "exit_code": code,
        "peak_rss_mb": round(peak / 2**20, 1),
    }


def run_bare(directory: Path, resources: int, workdir: Path, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "bare", str(directory)]
    out = timed_process(cmd, dict(os.environ), workdir / f"bare-{directory.name}.log", timeout)
    out["resources_per_s"] = round(resources / out["seconds"], 1) if out["exit_code"] == 0 else None
    return out


def run_panel(
    directory: Path, resources: int, workers: int, workdir: Path, env: dict, timeout: float
) -> dict:
    reports = workdir / f"reports-{directory.name}-w{workers}"
    cmd = [str(RLS_CDS), "panel", "run", "--ndjson", str(directory), "--workers", str(workers)]
    log = workdir / f"panel-{directory.name}-w{workers}.log"
    out = timed_process(cmd, {**env, "RLS_REPORTS_DIR": str(reports)}, log, timeout)
    ok = out["exit_code"] == 0
    out["resources_per_s"] = round(resources / out["seconds"], 1) if ok else None
    if not ok:
        out["log_tail"] = log.read_text(errors="replace")[-1500:]
    return out


def generate_data(root: Path, patients: int, seed: int) -> tuple[Path, dict]:
    directory = root / f"ndjson-{patients}-seed{seed}"
    stamp = directory / "counts.json"
    if stamp.exists():  # generated data is deterministic: reuse it between runs
        return directory, json.loads(stamp.read_text())
    counts = generate.write_ndjson(directory, patients, seed=seed)
    stamp.write_text(json.dumps(counts))
    return directory, counts


def service_env(workdir: Path) -> tuple[dict, object]:
    """Environment for `rls-cds panel run`: a real redis-server for whatever state the run keeps."""
    sys.path.insert(0, str(REPO))
    from tests.support.cds_server import start_redis

    redis = start_redis(workdir / "redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    env.update({"REDIS_URL": redis.url, "RLS_EMBEDDED_WORKER": "false", "RLS_LOG_LEVEL": "WARNING"})
    return env, redis


def bench(args) -> dict:
    data_root = Path(args.data_dir) if args.data_dir else Path(tempfile.gettempdir()) / "rls-cds-bench-data"
    workdir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    env, redis = service_env(workdir)
    results: dict = {"sizes": {}}
    try:
        for patients in args.sizes:
            t0 = time.perf_counter()
            directory, counts = generate_data(data_root, patients, args.seed)
            resources = sum(counts.values())
            entry: dict = {
                "patients": patients,
                "resources": resources,
                "counts": counts,
                "bytes": sum(p.stat().st_size for p in directory.glob("*.ndjson")),
                "generate_s": round(time.perf_counter() - t0, 1),
                "bare": run_bare(directory, resources, workdir, args.timeout),
            }
            for workers in args.workers:
                entry[f"service_w{workers}"] = run_panel(
                    directory, resources, workers, workdir, env, args.timeout
                )
            w2 = entry.get("service_w2", {}).get("resources_per_s")
            entry["ratio_w2_over_bare"] = (
                round(w2 / entry["bare"]["resources_per_s"], 3)
                if w2 and entry["bare"]["resources_per_s"]
                else None
            )
            results["sizes"][str(patients)] = entry
            _print_entry(entry, args.workers)
    finally:
        from tests.support.fhir_server import stop_process

        stop_process(redis.process)
    _summarise(results, args.sizes, args.workers)
    return results


def _print_entry(entry: dict, workers: list[int]) -> None:
    parts = [f"bare {entry['bare']['resources_per_s']} res/s peak {entry['bare']['peak_rss_mb']} MB"]
    for w in workers:
        run = entry[f"service_w{w}"]
        parts.append(
            f"{w} worker(s) {run['resources_per_s']} res/s "
            f"peak {run['peak_rss_mb']} MB (exit {run['exit_code']})"
        )
    print(f"{entry['patients']} patients / {entry['resources']} resources: " + "; ".join(parts), flush=True)


def _summarise(results: dict, sizes: list[int], workers: list[int]) -> None:
    largest = results["sizes"][str(max(sizes))]
    results["batch_ratio"] = largest.get("ratio_w2_over_bare")
    if len(sizes) >= 2:
        small = results["sizes"][str(min(sizes))]
        growth = {}
        for name in ["bare", *[f"service_w{w}" for w in workers]]:
            a, b = small[name]["peak_rss_mb"], largest[name]["peak_rss_mb"]
            growth[name] = round(b / a, 2) if a else None
        results["peak_rss_growth"] = growth
        results["resource_growth"] = round(largest["resources"] / small["resources"], 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="batch throughput vs bare NDJSON parsing")
    sub = ap.add_subparsers(dest="cmd")
    bare = sub.add_parser("bare", help="(internal) the bare-parse process")
    bare.add_argument("directory")
    ap.add_argument("--sizes", default="1000,10000", help="patients per export, comma-separated")
    ap.add_argument("--workers", default="1,2", help="worker counts for `panel run`, comma-separated")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", help="where generated NDJSON is kept between runs")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per run")
    ap.add_argument("--json-out")
    args = ap.parse_args(argv)
    if args.cmd == "bare":
        print(json.dumps(bare_parse(Path(args.directory))))
        return 0
    args.sizes = sorted(int(s) for s in args.sizes.split(","))
    args.workers = [int(w) for w in args.workers.split(",")]
    results = bench(args)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    print(
        json.dumps({"batch_ratio": results["batch_ratio"], "peak_rss_growth": results.get("peak_rss_growth")})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
