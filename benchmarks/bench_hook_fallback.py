"""Hook latency with a ~600-resource patient: full prefetch vs prefetch missing (fetched from FHIR).

Starts a real sekmet-fhir server and `rls-cds serve --dev` (both on loopback, via the test harness),
loads one large patient, then sends sequential patient-view calls from this process and prints the
median and p99 of each case. Not part of the test suite's pass/fail.

    .venv/bin/python benchmarks/bench_hook_fallback.py [--n 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.cds_server import start_cds_server, start_redis  # noqa: E402
from tests.support.fhir_server import start_fhir_server, stop_process, transaction  # noqa: E402

LOINC = ["2276-4", "2502-3", "2498-4", "2500-7", "33914-3", "4548-4", "2345-7", "19123-9", "2132-9", "718-7"]
RX = ["312941", "310430", "197361", "617314", "314076", "197884", "311989", "283742"]


def large_patient(pid: str) -> list[dict]:
    subj = {"reference": f"Patient/{pid}"}
    out: list[dict] = [{"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1958-03-01"}]
    icd = ["G25.81", "E11.9", "I10", "E78.5", "N18.3", "K21.9", "M54.5", "F32.9", "J45.909", "E03.9"]
    for i in range(50):
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{pid}-c{i}",
                "subject": subj,
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {
                    "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": icd[i % len(icd)]}]
                },
                "onsetDateTime": f"20{10 + i % 15:02d}-01-15",
            }
        )
    for i in range(500):
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-o{i}",
                "status": "final",
                "subject": subj,
                "code": {"coding": [{"system": "http://loinc.org", "code": LOINC[i % len(LOINC)]}]},
                "effectiveDateTime": f"20{16 + i % 10:02d}-{1 + i % 12:02d}-10T08:00:00Z",
                "valueQuantity": {
                    "value": 20 + (i * 7) % 180,
                    "unit": "ng/mL",
                    "system": "http://unitsofmeasure.org",
                    "code": "ng/mL",
                },
            }
        )
    for i in range(80):
        out.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"{pid}-m{i}",
                "subject": subj,
                "status": "active" if i % 4 == 0 else "completed",
                "intent": "order",
                "authoredOn": f"20{18 + i % 8:02d}-05-01",
                "medicationCodeableConcept": {
                    "coding": [
                        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": RX[i % len(RX)]}
                    ]
                },
            }
        )
    return out


def prefetch_for(resources: list[dict], service: dict) -> dict:
    by_type: dict[str, list[dict]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    out, obs_done = {}, False
    for key, template in service["prefetch"].items():
        kind = template.split("?")[0].split("/")[0]
        if kind == "Patient":
            out[key] = by_type["Patient"][0]
            continue
        items = [] if (kind == "Observation" and obs_done) else by_type.get(kind, [])
        obs_done = obs_done or kind == "Observation"
        out[key] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in items]}
    return out


def measure(url: str, body: bytes, n: int) -> dict:
    session = requests.Session()
    times = []
    for i in range(n + 5):
        start = time.perf_counter()
        resp = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
        elapsed = time.perf_counter() - start
        assert resp.status_code == 200, resp.text[:300]
        if i >= 5:  # warm-up
            times.append(elapsed * 1000)
    times.sort()
    return {
        "n": n,
        "median_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
        "cards": len(resp.json()["cards"]),
        "request_bytes": len(body),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fallback-"))
    fhir = start_fhir_server(work / "fhir")
    redis = start_redis(work / "redis")
    cds = start_cds_server(work / "cds", env={"REDIS_URL": redis.url})
    try:
        pid = f"bench-{uuid.uuid4().hex[:8]}"
        resources = large_patient(pid)
        fhir.load_bundle(transaction(resources))
        service = next(
            s
            for s in requests.get(f"{cds.url}/cds-services", timeout=5).json()["services"]
            if s["hook"] == "patient-view"
        )
        url = f"{cds.url}/cds-services/{service['id']}"
        base = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": pid}}
        full = json.dumps({**base, "prefetch": prefetch_for(resources, service)}).encode()
        missing = json.dumps(
            {
                **base,
                "fhirServer": fhir.base_url,
                "fhirAuthorization": {"access_token": fhir.token, "token_type": "Bearer"},
            }
        ).encode()
        results = {
            "resources": len(resources),
            "full_prefetch": measure(url, full, args.n),
            "prefetch_missing_local_fhir": measure(url, missing, max(20, args.n // 4)),
        }
        print(json.dumps(results, indent=2))
    finally:
        for proc in (cds.process, redis.process, fhir.process):
            stop_process(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
