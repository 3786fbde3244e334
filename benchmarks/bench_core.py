"""Clinical core throughput on the large synthetic patient (~630 resources), with a profile by stage.

    .venv/bin/python benchmarks/bench_core.py [--seconds 5] [--hook patient-view] [--patients 5]

Measures, in one process with the service's GC settings: the bare orjson parse of the request body
(the baseline), ``flatten`` + ``evaluate`` + ``render_cards`` from parsed JSON (what the hook adds),
and the same from bytes. Then runs cProfile over a batch of evaluations and sums own time per stage
(module). The last stdout line is one JSON object (read by run_all.py).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import generate  # noqa: E402

from rls_cds.commands.serve import GC_THRESHOLDS  # noqa: E402
from rls_cds.core.engine import evaluate, render_cards  # noqa: E402
from rls_cds.core.resources import read_input  # noqa: E402
from rls_cds.settings import get_settings  # noqa: E402
from rls_cds.terminology import load_terminology  # noqa: E402

STAGES = {
    "rls_cds/core/resources.py": "flatten",
    "rls_cds/core/facts.py": "facts",
    "rls_cds/core/rules.py": "rules",
    "rls_cds/core/causes/": "rules",
    "rls_cds/core/findings.py": "rules",
    "rls_cds/core/validation.py": "validation",
    "rls_cds/core/cards.py": "cards",
    "rls_cds/core/engine.py": "engine",
    "rls_cds/terminology/": "terminology index",
    "pydantic": "fhir.resources/pydantic",
    "fhir": "fhir.resources/pydantic",
}


def _timeit(fn, seconds: float) -> tuple[list[float], float]:
    """Wall times per call, and CPU seconds per call (process_time: steadier on a shared machine)."""
    times = []
    end = time.perf_counter() + seconds
    cpu0 = time.process_time()
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times, (time.process_time() - cpu0) / max(1, len(times))


def _summary(measured: tuple[list[float], float]) -> dict:
    times, cpu = measured
    ordered = sorted(times)
    return {
        "cpu_ms": round(cpu * 1000, 3),
        "n": len(times),
        "per_second": round(len(times) / sum(times), 1),
        "mean_ms": round(statistics.fmean(times) * 1000, 3),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


def _stage(filename: str) -> str:
    for key, stage in STAGES.items():
        if key in filename:
            return stage
    return "other (stdlib, msgspec, orjson)"


# Pipeline steps by the function that runs each (cumulative time: pydantic-core's C validator,
# orjson and the like count for the step that calls them, unlike own time per module above).
STEPS = {
    ("rls_cds/core/facts.py", "extract"): "facts (extract)",
    ("rls_cds/core/rules.py", "run_all"): "rules (run_all)",
    ("rls_cds/core/validation.py", "validate"): "fhir.resources validation of evidence",
    ("rls_cds/core/engine.py", "_fingerprint"): "fingerprint",
    ("rls_cds/core/cards.py", "render_cards"): "cards (render_cards)",
}


_ENTRY_POINTS = {("core/engine.py", "evaluate"), ("core/cards.py", "render_cards")}


def _by_step(stats: pstats.Stats) -> dict[str, float]:
    total = 0.0
    steps: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, _tt, cumtime, _callers) in stats.stats.items():
        if (filename.rsplit("rls_cds/", 1)[-1], name) in _ENTRY_POINTS:
            total += cumtime
        for (path, fn), step in STEPS.items():
            if filename.endswith(path) and name == fn:
                steps[step] = steps.get(step, 0.0) + cumtime
    if not total:
        return {}
    steps["engine (rest)"] = max(0.0, total - sum(steps.values()))
    return {k: round(v / total, 3) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="time per measurement")
    ap.add_argument("--hook", default="patient-view", choices=["patient-view", "order-select", "order-sign"])
    ap.add_argument("--patients", type=int, default=5, help="distinct large patients to cycle through")
    args = ap.parse_args(argv)

    t = load_terminology(path=get_settings().terminology_dir)
    gc.collect()
    gc.freeze()  # as the service does after start-up (terminology loaded), with its thresholds
    gc.set_threshold(*GC_THRESHOLDS)
    now = generate.DEFAULT_NOW
    bodies = []
    for i in range(args.patients):
        request = generate.make_request("large", hook=args.hook, index=i, now=now, rls=True)
        bodies.append(orjson.dumps(request))
    parsed = [orjson.loads(b) for b in bodies]
    inputs = [read_input(p) for p in parsed]
    n_resources = statistics.fmean(len(i.resources) for i in inputs)
    counter = {"i": 0}

    def nxt(items):
        counter["i"] = (counter["i"] + 1) % len(items)
        return items[counter["i"]]

    def parse_only():
        orjson.loads(nxt(bodies))

    def core_only():
        inp = nxt(inputs)
        a = evaluate(inp.resources, now=now, terminology=t, draft_orders=inp.draft_orders)
        render_cards(a, hook=args.hook)

    def bytes_to_cards():
        inp = read_input(orjson.loads(nxt(bodies)))
        a = evaluate(inp.resources, now=now, terminology=t, draft_orders=inp.draft_orders)
        render_cards(a, hook=args.hook)

    core_only()  # warm caches (model classes, regexes)
    results = {
        "resources_per_patient": round(n_resources),
        "body_kb": round(statistics.fmean(len(b) for b in bodies) / 1024),
        "parse_only": _summary(_timeit(parse_only, args.seconds)),
        "core_only": _summary(_timeit(core_only, args.seconds)),
        "bytes_to_cards": _summary(_timeit(bytes_to_cards, args.seconds)),
    }
    results["core_over_parse"] = round(results["core_only"]["cpu_ms"] / results["parse_only"]["cpu_ms"], 2)

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(200):
        core_only()
    prof.disable()
    stats = pstats.Stats(prof)
    by_stage: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        stage = _stage(filename)
        by_stage[stage] = by_stage.get(stage, 0.0) + tottime
    total = sum(by_stage.values()) or 1.0
    results["profile_share_by_stage"] = {
        k: round(v / total, 3) for k, v in sorted(by_stage.items(), key=lambda kv: -kv[1])
    }
    results["profile_share_by_step"] = _by_step(stats)

    n, kb = results["resources_per_patient"], results["body_kb"]
    print(f"large patient: {n} resources, {kb} KB ({args.hook})")
    for name in ("parse_only", "core_only", "bytes_to_cards"):
        r = results[name]
        print(
            f"  {name:15} {r['per_second']:>8.1f}/s  cpu {r['cpu_ms']:.3f} ms/eval  "
            f"wall p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms"
        )
    print(f"  core / bare parse (cpu): {results['core_over_parse']}x")
    print("  profile (own time share by stage):")
    for stage, share in results["profile_share_by_stage"].items():
        print(f"    {stage:28} {share * 100:5.1f} %")
    print("  profile (time inside each pipeline step, callees included):")
    for step, share in results["profile_share_by_step"].items():
        print(f"    {step:28} {share * 100:5.1f} %")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
