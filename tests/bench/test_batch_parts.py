"""The batch bench's parts: bare parse of generated NDJSON, peak-RSS of a real process tree."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_batch  # noqa: E402
import generate  # noqa: E402


def test_bare_parse_counts_every_resource_and_groups_by_patient(tmp_path):
    counts = generate.write_ndjson(tmp_path, 25, seed=5)
    assert bench_batch.bare_parse(tmp_path) == {"resources": sum(counts.values()), "patients": 25}


def test_timed_process_reports_peak_rss_of_children(tmp_path):
    # The child allocates ~200 MB and holds it briefly: the tree's peak must see it.
    child = "b = bytearray(b'x' * (200 * 2**20)); import time; time.sleep(0.6)"
    code = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    out = bench_batch.timed_process([sys.executable, "-c", code], {}, tmp_path / "log", timeout=30)
    assert out["exit_code"] == 0
    assert out["peak_rss_mb"] > 200
