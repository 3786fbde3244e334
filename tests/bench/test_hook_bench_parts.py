"""The hook bench's parts over real loopback HTTP: baseline server, load generator, JWT minting."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import jwt
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_hooks  # noqa: E402
import generate  # noqa: E402

from tests.support.fhir_server import stop_process  # noqa: E402


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    proc, url = bench_hooks.start_baseline(tmp_path_factory.mktemp("baseline"))
    yield url
    stop_process(proc)


def test_percentiles_are_nearest_rank():
    data = [float(i) for i in range(1, 101)]
    assert bench_hooks.percentile(data, 50) == 50.0
    assert bench_hooks.percentile(data, 99) == 99.0
    assert bench_hooks.percentile([], 99) is None


def test_load_generator_against_baseline_counts_only_successes(baseline):
    body = json.dumps(generate.make_request("small", "patient-view", prefetch_keys={})).encode()
    result = bench_hooks.run_load(baseline, "/cds-services/x", body, None, 0.5, 50, 2)
    assert result["requests"] == 50 and result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"] <= result["max_ms"]
    bad = bench_hooks.run_load(baseline, "/cds-services/x", b"[1]", None, 0.5, 10, 1)
    assert bad["requests"] == 0 and bad["statuses"] == {"400": 10}


def test_minted_tokens_verify_against_served_jwks_with_unique_jti(tmp_path):
    from cryptography.hazmat.primitives import serialization

    pem, jwks = bench_hooks.make_key(tmp_path)
    server, url = bench_hooks.serve_jwks(jwks)
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            served = json.loads(resp.read())
    finally:
        server.stop()
    key = serialization.load_pem_private_key(pem.read_bytes(), None)
    tokens = [bench_hooks.mint(key, f"jti-{i}") for i in range(2)]
    public = jwt.PyJWK(served["keys"][0]).key
    claims = [jwt.decode(t, public, algorithms=["ES256"], audience=bench_hooks.AUDIENCE) for t in tokens]
    assert claims[0]["iss"] == bench_hooks.ISSUER and claims[0]["jti"] != claims[1]["jti"]
    assert jwt.get_unverified_header(tokens[0])["kid"] == bench_hooks.KID
