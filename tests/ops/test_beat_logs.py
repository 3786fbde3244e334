"""A real `rls-cds beat` on a real Redis logs as the other commands do: one redacted JSON object a
line on stderr, Celery's own lines included, nothing in plain text (no banner, no traceback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from tests.support.cds_server import RLS_CDS_BIN, start_redis
from tests.support.fhir_server import stop_process

pytestmark = pytest.mark.slow

PATIENT_IDS = ["beat-phi-Xq7201", "beat-phi-Xq7202"]  # distinctive, so any leak is found by substring


def _panels_file(path) -> str:
    panel = {
        "fhir_server": "http://127.0.0.1:9/fhir",
        "patients": PATIENT_IDS,
        "strategy": "search",
        "schedule": "0 2 * * *",
    }
    path.write_text(yaml.safe_dump({"panels": {"night-clinic": panel}}))
    return str(path)


def _run_beat_until(tmp_path, env: dict, marker: str, timeout: float = 12) -> tuple[str, str, int]:
    """Starts beat, waits for `marker` on stderr, stops it with SIGTERM; (stdout, stderr, exit code)."""
    out_path, err_path = tmp_path / "beat.out", tmp_path / "beat.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        beat = subprocess.Popen(
            [str(RLS_CDS_BIN), "beat", "--loglevel", "debug"], env=env, stdout=out, stderr=err
        )
        try:
            end = time.monotonic() + timeout
            while marker not in err_path.read_text() and time.monotonic() < end:
                assert beat.poll() is None, err_path.read_text()
                time.sleep(0.1)
            beat.send_signal(signal.SIGTERM)
            code = beat.wait(timeout=10)
        finally:
            stop_process(beat)
    return out_path.read_text(), err_path.read_text(), code


def test_beat_logs_redacted_json_lines_only(tmp_path):
    broker = start_redis(tmp_path / "redis")
    schedule = tmp_path / "beat" / "schedule"
    schedule.parent.mkdir()
    # A schedule file a crash left unreadable: Celery logs the error with its traceback and starts afresh.
    schedule.write_bytes(b"not a schedule database\x00\xff" * 8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    env.update(
        REDIS_URL=broker.url,
        RLS_BEAT_SCHEDULE_FILE=str(schedule),
        RLS_PANELS_FILE=_panels_file(tmp_path / "panels.yaml"),
    )
    try:
        stdout, stderr, code = _run_beat_until(tmp_path, env, "Waking up")
    finally:
        stop_process(broker.process)

    assert code == 0, stderr
    assert stdout == "", "Celery's plain-text banner must not reach the logs"
    records = []
    for line in stderr.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records), records
    by_logger = {(r["logger"], r["msg"].split("\n")[0]) for r in records}
    assert ("celery.beat", "beat: Starting...") in by_logger, "Celery's own lines go through our handler"
    listing = next(r["msg"] for r in records if r["msg"].startswith("Current schedule"))
    assert "rls-panel-night-clinic" in listing, "the panels file was loaded (so its patients were at hand)"

    corrupted = next(r for r in records if "corrupted schedule file" in r["msg"])
    assert corrupted["level"] == "ERROR" and corrupted["logger"] == "celery.beat"
    assert corrupted["exc_type_name"] and corrupted["stack"], (
        "the redaction filter turned exc_info into frames"
    )
    assert "Traceback" not in stderr
    for pid in PATIENT_IDS:
        assert pid not in stderr
