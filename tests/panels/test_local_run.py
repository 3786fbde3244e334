"""`panel run --ndjson`: same findings as the clinical core on full resources, 1 or 2 workers, reports,
new-since-previous, malformed lines, chunks processed twice, and the CLI itself."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from rls_cds.core.engine import evaluate
from rls_cds.panels import local, runs
from rls_cds.panels.state import RunState
from rls_cds.settings import Settings
from tests.panels.conftest import patients_of, write_export
from tests.support.fhir_server import REPO

N = 60


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("export")
    (directory / "counts.json").write_text(json.dumps(write_export(directory, N)))
    return directory


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(reports_dir=tmp_path / "reports", **kw)


def _actionable(report: dict) -> dict[str, set[str]]:
    return {row["patient"]: {f["cause"] for f in row["findings"]} for row in report["worklist"]}


def test_thin_batch_finds_what_the_core_finds_on_full_resources(export, tmp_path, panel_redis, terminology):
    report = local.run_ndjson([str(export)], 1, _settings(tmp_path), panel_redis.url, terminology, "eq")
    assert report["status"] == "succeeded"
    assert report["counts"]["patients_assessed"] == N
    now = datetime.fromisoformat(report["evaluated_at"])
    expected: dict[str, set[str]] = {}
    wording: dict[str, list[tuple]] = {}
    for patient in patients_of(N):
        resources = [r for kind in patient.values() for r in kind]
        found = evaluate(resources, now=now, terminology=terminology).findings
        causes = {f.cause for f in found if f.actionable}
        if causes:
            expected[patient["Patient"][0]["id"]] = causes
            wording[patient["Patient"][0]["id"]] = [
                (f.cause, f.strength, f.summary, f.action) for f in found if f.actionable
            ]
    assert expected, "the generated panel must contain positive patients"
    assert len(expected) < N, "and negative ones"
    assert _actionable(report) == expected
    # Not only the same causes: the same strength and the same words (values, dates, drugs) on each row.
    rows = {
        r["patient"]: [(f["cause"], f["strength"], f["summary"], f["action"]) for f in r["findings"]]
        for r in report["worklist"]
    }
    assert rows == wording


def test_two_workers_same_report_and_nothing_new_the_second_time(export, tmp_path, panel_redis, terminology):
    settings = _settings(tmp_path)
    one = local.run_ndjson([str(export)], 1, settings, panel_redis.url, terminology, "twice")
    two = local.run_ndjson([str(export)], 2, settings, panel_redis.url, terminology, "twice")
    assert two["status"] == "succeeded"
    assert _actionable(two) == _actionable(one)
    assert one["counts"]["new_since_previous"] == one["counts"]["worklist"] > 0
    assert two["previous_run"] == one["run"]
    assert two["counts"]["new_since_previous"] == 0
    assert two["patients_per_cause"] == one["patients_per_cause"]
    rows = list(csv.DictReader(io.StringIO(Path(two["files"]["csv"]).read_text())))
    assert {r["patient"] for r in rows} == set(_actionable(two))
    assert all(r["new"] == "no" for r in rows)
    assert orjson.loads(Path(two["files"]["json"]).read_bytes())["run"] == two["run"]
    # Worklists hold patient ids and findings: the service's user only (they were 0644 in 0755).
    for path in map(Path, two["files"].values()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def _edited_export(export: Path, target: Path, edit) -> Path:
    """A copy of the export in ``target`` with each file's bytes passed through ``edit(name, data)``."""
    target.mkdir()
    for f in export.glob("*.ndjson"):
        (target / f.name).write_bytes(edit(f.name, f.read_bytes()))
    return target


def test_malformed_lines_reported_with_file_and_line_rest_processed(
    export, tmp_path, panel_redis, terminology
):
    def edit(name: str, data: bytes) -> bytes:
        lines = data.splitlines(keepends=True)
        if name == "Condition.ndjson":
            lines.insert(4, b'{"resourceType": "Condition", "id": \n')  # line 5: not JSON
            lines.insert(9, b'{"resourceType":"Condition","id":"x","subject":{"reference":7}}\n')  # line 10
        return b"".join(lines)

    broken = _edited_export(export, tmp_path / "broken", edit)
    report = local.run_ndjson([str(broken)], 2, _settings(tmp_path), panel_redis.url, terminology, "broken")
    errs = sorted((e["file"], e["line"]) for e in report["parse_errors"])
    assert errs == [("Condition.ndjson", 5), ("Condition.ndjson", 10)]
    assert "malformed JSON" in " ".join(e["reason"] for e in report["parse_errors"])
    assert report["counts"]["patients_assessed"] == N  # the rest is processed
    assert report["status"] == "completed_with_errors"  # never success with unreadable data


def test_lines_msgspec_cannot_decode_at_all_are_reported_not_a_crash(
    export, tmp_path, panel_redis, terminology
):
    # Bytes that are not UTF-8 and JSON nested deeper than the decoder recurses raise UnicodeDecodeError
    # and RecursionError, not msgspec's errors: they stopped the map (and the whole run) with a traceback.
    def edit(name: str, data: bytes) -> bytes:
        if name == "Patient.ndjson":
            data += b'{"resourceType":"Patient","id":"latin1-\xe9"}\n'
        if name == "Observation.ndjson":
            data += b'{"resourceType":"Observation","code":' + b'{"x":' * 5000 + b"1" + b"}" * 5001 + b"\n"
        return data

    broken = _edited_export(export, tmp_path / "undecodable", edit)
    lines = {f.name: f.read_bytes().count(b"\n") for f in broken.glob("*.ndjson")}
    for workers in (1, 2):
        report = local.run_ndjson(
            [str(broken)], workers, _settings(tmp_path), panel_redis.url, terminology, "u8"
        )
        errs = sorted((e["file"], e["line"]) for e in report["parse_errors"])
        assert errs == [
            ("Observation.ndjson", lines["Observation.ndjson"]),
            ("Patient.ndjson", lines["Patient.ndjson"]),
        ]
        assert report["counts"]["patients_assessed"] == N
        assert report["status"] == "completed_with_errors"


def test_versioned_medication_references_are_joined_like_the_core_joins_them(
    export, tmp_path, panel_redis, terminology
):
    # 'https://ehr/fhir/Medication/m1/_history/2' names Medication m1 for the core (hooks); the batch
    # looked for a Medication with id 'm1/_history/2', found none and dropped the order without a word.
    def edit(name: str, data: bytes) -> bytes:
        if name != "MedicationRequest.ndjson":
            return data
        versioned_ref = rb'"reference":"https://ehr/fhir/Medication/\1/_history/2"'
        return re.sub(rb'"reference":"Medication/([^"]+)"', versioned_ref, data)

    versioned = _edited_export(export, tmp_path / "versioned", edit)
    assert b"/_history/2" in (versioned / "MedicationRequest.ndjson").read_bytes()
    settings = _settings(tmp_path)
    plain = local.run_ndjson([str(export)], 1, settings, panel_redis.url, terminology, "med-plain")
    report = local.run_ndjson([str(versioned)], 2, settings, panel_redis.url, terminology, "med-versioned")
    assert _actionable(report) == _actionable(plain)


def test_chunks_and_partitions_processed_twice_do_not_double_count(
    export, tmp_path, panel_redis, terminology
):
    import redis

    settings = _settings(tmp_path, panel_chunk_bytes=64 * 1024, panel_partition_bytes=256 * 1024)
    client = redis.Redis.from_url(panel_redis.url)
    state = runs.create_local_run(client, sorted(export.glob("*.ndjson")), "idem", 2, settings)
    ctx = runs.Context(settings=settings, redis=client, terminology=terminology)
    chunk_ids = state.ids("map")
    assert len(chunk_ids) > 10
    for cid in chunk_ids + list(reversed(chunk_ids[::3])):  # a third of the chunks run twice
        runs.run_map(state, cid, ctx)
    units = state.ids("reduce")
    for uid in units + units[:2]:
        runs.run_reduce(state, uid, ctx)
    assert runs.next_actions(state) == ("finalize", [])
    report = runs.finalize(state, settings.reports_dir)
    total = sum(json.loads((export / "counts.json").read_text()).values())
    assert report["counts"]["patients_assessed"] == N
    assert report["counts"]["resources"] == total
    assert len(report["worklist"]) == len({r["patient"] for r in report["worklist"]})
    assert RunState(client, state.run_id).meta()["status"] == "succeeded"


def test_cli_ndjson_two_workers(export, tmp_path, panel_redis):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    env.update({"REDIS_URL": panel_redis.url, "RLS_REPORTS_DIR": str(tmp_path / "r")})
    cmd = [str(REPO / ".venv/bin/rls-cds"), "panel", "run", "--ndjson", str(export), "--workers", "2"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{N} patients assessed" in out.stdout and "resources/s" in out.stdout
    assert "synth-" not in out.stdout + out.stderr  # no patient id on the console or in logs
    [folder] = (tmp_path / "r").glob("local-*")  # one panel id per export: runs of it compare
    report = json.loads(next(folder.glob("*.json")).read_text())
    assert report["counts"]["patients_assessed"] == N
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and [p.name for p in (tmp_path / "r").glob("local-*")] == [folder.name]
    bad = subprocess.run([*cmd[:4], str(tmp_path / "missing")], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "no such NDJSON" in bad.stderr
    from tests.support.fhir_server import free_port

    dead = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    down = subprocess.run([*cmd[:2], "status", "some-run"], env=dead, capture_output=True, text=True)
    assert down.returncode == 1 and "Redis (run state / task queue) is not reachable" in down.stderr
    assert "Traceback" not in down.stderr


def test_file_that_cannot_be_read_puts_its_patients_in_the_error_report(
    export, tmp_path, panel_redis, terminology
):
    import redis

    from rls_cds.panels.tasks import _chunk_failed

    settings = _settings(tmp_path)
    client = redis.Redis.from_url(panel_redis.url)
    state = runs.create_local_run(client, sorted(export.glob("*.ndjson")), "lost-file", 1, settings)
    ctx = runs.Context(settings=settings, redis=client, terminology=terminology)
    for cid in state.ids("map"):
        if cid.startswith("Observation"):
            _chunk_failed(state, cid, "download failed: HTTP 500")  # what map_chunk records after retries
        else:
            runs.run_map(state, cid, ctx)
    for uid in state.ids("reduce"):
        runs.run_reduce(state, uid, ctx)
    report = runs.finalize(state, settings.reports_dir)
    assert report["status"] == "completed_with_errors"
    assert report["counts"]["patients_assessed"] == 0 and len(report["errors"]) == N
    assert {e["reason"] for e in report["errors"]} == {"incomplete export: could not read Observation"}
    assert any("Observation file could not be downloaded" in e for e in report["run_errors"])


def _die(_args):
    os._exit(1)  # a worker process killed mid-chunk (OOM killer, SIGKILL)


def test_local_worker_death_fails_the_run_instead_of_hanging(
    export, tmp_path, panel_redis, terminology, monkeypatch
):
    import redis

    monkeypatch.setattr(local, "_map_job", _die)
    with pytest.raises(RuntimeError, match="worker process died"):
        local.run_ndjson([str(export)], 2, _settings(tmp_path), panel_redis.url, terminology, "dies")
    client = redis.Redis.from_url(panel_redis.url)
    rid = client.lrange("rls:panel:p:dies:runs", 0, 0)[0].decode()
    assert RunState(client, rid).meta()["status"] == "failed"


def _interrupted(_args):
    raise KeyboardInterrupt  # Ctrl-C in the terminal running `panel run --ndjson`


def test_an_interrupted_local_run_is_marked_failed_not_left_active(
    export, tmp_path, panel_redis, terminology, monkeypatch
):
    import redis

    from rls_cds.panels.state import active_runs

    monkeypatch.setattr(local, "_map_job", _interrupted)
    with pytest.raises(KeyboardInterrupt):
        local.run_ndjson([str(export)], 1, _settings(tmp_path), panel_redis.url, terminology, "stops")
    client = redis.Redis.from_url(panel_redis.url)
    rid = client.lrange("rls:panel:p:stops:runs", 0, 0)[0].decode()
    meta = RunState(client, rid).meta()
    assert meta["status"] == "failed" and "KeyboardInterrupt" in meta["run_errors"][0]
    assert rid not in active_runs(client)


def test_assessments_stored_in_the_shared_store_when_a_tenant_is_given(
    export, tmp_path, panel_redis, terminology
):
    from rls_cds.background.store import Store

    settings = Settings(reports_dir=tmp_path / "reports", redis_url=panel_redis.url)
    report = local.run_ndjson(
        [str(export)], 2, settings, panel_redis.url, terminology, "stored", tenant="clinic-a"
    )
    store = Store.from_settings(settings)
    positive = report["worklist"][0]
    record = store.get_assessment("clinic-a", positive["patient"])
    assert record["source"] == "panel" and record["run"] == report["run"]
    assert {f["cause"] for f in positive["findings"]} <= {f["cause"] for f in record["findings"]}
    assert record["table_version"] == terminology.version
    assert store.get_assessment("other-tenant", positive["patient"]) is None
    # The same data again: the store sees the same fingerprint ("unchanged"), nothing is double-stored.
    local.run_ndjson([str(export)], 1, settings, panel_redis.url, terminology, "stored", tenant="clinic-a")
    assert store.get_assessment("clinic-a", positive["patient"])["outcome"] == "unchanged"
