"""`make bench`: every benchmark, one results file.

Runs, each as its own process with a time limit: the clinical-core bench (bench_core.py), hook
latency vs baseline (bench_hooks.py), batch throughput vs bare parsing (bench_batch.py), and, when
present, the prefetch-fallback and re-evaluation benches owned by other parts. Writes
`benchmarks/results/<YYYY-MM-DD>.json` with the headline ratios at the top
(`hook_p99_ratio`, `batch_ratio`), machine info and every raw figure.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only hooks,batch]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"


def machine() -> dict:
    import psutil

    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except OSError:
        return None


def last_json(text: str):
    """The last JSON document a bench printed (single line or indented), or None."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            try:
                return json.loads("\n".join(lines[i:]))
            except ValueError:
                continue
    return None


def run_bench(name: str, cmd: list[str], timeout: float, json_out: Path | None = None) -> dict:
    """Run one bench; its figures come from --json-out when it supports it, else from its stdout."""
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        print(out[-2000:], flush=True)
        return {"status": "timeout", "seconds": timeout, "stdout_tail": out[-2000:]}
    seconds = round(time.perf_counter() - start, 1)
    print(proc.stdout[-4000:], flush=True)
    result: dict = {"status": "ok" if proc.returncode == 0 else f"exit {proc.returncode}", "seconds": seconds}
    data = None
    if json_out is not None and json_out.exists():
        data = json.loads(json_out.read_text())
    if data is None:
        data = last_json(proc.stdout)
    if data is not None:
        result["figures"] = data
    if proc.returncode != 0 or data is None:
        result["stdout_tail"] = proc.stdout[-2000:]
        result["stderr_tail"] = proc.stderr[-2000:]
        print(proc.stderr[-2000:], flush=True)
    return result


def plan(quick: bool, tmp: Path) -> list[tuple[str, list[str], float, Path | None]]:
    py = sys.executable
    hooks_json, batch_json = tmp / "hooks.json", tmp / "batch.json"
    hooks = [py, str(HERE / "bench_hooks.py"), "--json-out", str(hooks_json)]
    hooks += ["--duration", "3", "--warmup", "1", "--fallback-n", "20"] if quick else ["--duration", "10"]
    batch = [py, str(HERE / "bench_batch.py"), "--json-out", str(batch_json)]
    batch += ["--sizes", "200,1000"] if quick else ["--sizes", "1000,10000"]
    out = [
        ("core", [py, str(HERE / "bench_core.py")], 120, None),
        ("hooks", hooks, 360, hooks_json),
        ("batch", batch, 420, batch_json),
        (
            "hook_fallback",
            [py, str(HERE / "bench_hook_fallback.py"), "--n", "50" if quick else "200"],
            180,
            None,
        ),
        (
            "reevaluate",
            [py, str(HERE / "bench_reevaluate.py"), "--json-out", str(tmp / "reevaluate.json")],
            180,
            tmp / "reevaluate.json",
        ),
    ]
    return [b for b in out if Path(b[1][1]).exists()]


def headline(benches: dict) -> dict:
    hooks = benches.get("hooks", {}).get("figures") or {}
    batch = benches.get("batch", {}).get("figures") or {}
    return {
        "hook_p99_ratio": hooks.get("hook_p99_ratio"),
        "hook_p50_ratio": hooks.get("hook_p50_ratio"),
        "hook_p99_ratio_cold": hooks.get("hook_p99_ratio_cold"),
        "batch_ratio": batch.get("batch_ratio"),
        "batch_peak_rss_growth_1k_to_10k": batch.get("peak_rss_growth"),
        "targets": {
            "hook_p99_ratio": "<= 2.0 (large patient-view)",
            "batch_ratio": ">= 0.5 (2 workers / bare)",
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short cases and small exports (a smoke run)")
    ap.add_argument("--only", help="comma-separated bench names: core,hooks,batch,hook_fallback,reevaluate")
    ap.add_argument("--out", help="results file (default benchmarks/results/<date>.json)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-all-"))
    wanted = set(args.only.split(",")) if args.only else None
    started = datetime.now(UTC)
    benches = {
        name: run_bench(name, cmd, timeout, json_out)
        for name, cmd, timeout, json_out in plan(args.quick, tmp)
        if wanted is None or name in wanted
    }
    results = {
        **headline(benches),
        "date": started.strftime("%Y-%m-%d"),
        "started_utc": started.isoformat(timespec="seconds"),
        "total_seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "quick": args.quick,
        "commit": git_commit(),
        "machine": machine(),
        "benches": benches,
    }
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"{started.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: results[k]
                for k in ("hook_p99_ratio", "hook_p50_ratio", "hook_p99_ratio_cold", "batch_ratio")
            }
        )
    )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
