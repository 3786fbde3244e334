"""Profile one hook call end to end inside one process: where does the service's time go?

Builds the app as `rls-cds serve` does in production (auth on with a trusted issuer whose ES256
JWKS is served on loopback, a real redis-server, metrics and INFO logging, the service's GC tuning)
and drives it through its ASGI interface (no socket: uvicorn's HTTP parsing is the same in the
service and the baseline). Each call carries a fresh JWT with a unique jti (minted beforehand).
Prints the time per call and the functions with the most cumulative and own time.

    .venv/bin/python benchmarks/profile_hook.py [--size large] [--hook patient-view] [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_hooks  # noqa: E402
import generate  # noqa: E402


async def call(app, path: str, body: bytes, token: str) -> tuple[int, bytes]:
    """One POST through the ASGI app, body in 64 KiB chunks as uvicorn delivers it."""
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    pending = list(chunks)
    out: dict = {"status": 0, "body": []}

    async def receive():
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"].append(message.get("body", b""))

    await app(scope, receive, send)
    return out["status"], b"".join(out["body"])


def _time_gc() -> dict:
    """Collections and their total time from now on (gc.callbacks)."""
    state = {"n": 0, "s": 0.0, "t0": 0.0}

    def callback(phase, info):
        if phase == "start":
            state["t0"] = time.perf_counter()
        else:
            state["n"] += 1
            state["s"] += time.perf_counter() - state["t0"]

    gc.callbacks.append(callback)
    return state


def _profile_in_threads(rt, thread_prof: cProfile.Profile, timings: dict) -> None:
    """Time (and, once enabled, profile) what the hook runs in the thread pool: token verification,
    the rate limiter and the evaluation. Calls never overlap here (one request at a time)."""
    from rls_cds.api import hooks

    def wrap(name, fn):
        def wrapped(*a, **kw):
            t0 = time.perf_counter()
            on = getattr(thread_prof, "enable_in_threads", False)
            if on:
                thread_prof.enable()
            try:
                return fn(*a, **kw)
            finally:
                if on:
                    thread_prof.disable()
                timings.setdefault(name, []).append(time.perf_counter() - t0)

        return wrapped

    hooks._evaluate = wrap("evaluate", hooks._evaluate)
    verifier = getattr(rt.authenticator, "verifier", None)
    if verifier is not None:
        verifier.verify = wrap("verify", verifier.verify)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="large", choices=["small", "large"])
    ap.add_argument("--hook", default="patient-view", choices=["patient-view", "order-select"])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--no-profile", action="store_true", help="only time the calls")
    args = ap.parse_args(argv)

    from cryptography.hazmat.primitives import serialization

    from tests.support.cds_server import start_redis
    from tests.support.fhir_server import stop_process

    workdir = Path(tempfile.mkdtemp(prefix="profile-hook-"))
    key_file, jwks = bench_hooks.make_key(workdir)
    jwks_server, jwks_url = bench_hooks.serve_jwks(jwks)
    redis = start_redis(workdir / "redis")
    try:
        for k in [k for k in os.environ if k.startswith("RLS_")]:
            del os.environ[k]
        os.environ.update(bench_hooks.service_env(redis.url, jwks_url, []))
        os.environ["RLS_EMBEDDED_WORKER"] = "false"
        from rls_cds.commands.serve import tuned_app
        from rls_cds.settings import get_settings

        get_settings.cache_clear()
        app = tuned_app()
        rt = app.state.runtime
        service = next(s for s in rt.catalogue.values() if s.hook == args.hook)
        request = generate.make_request(args.size, args.hook, prefetch_keys=service.prefetch)
        body = json.dumps(request, separators=(",", ":")).encode()
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        timings: dict[str, list[float]] = {}
        tokens = [bench_hooks.mint(key, uuid.uuid4().hex) for _ in range(args.n + 50)]
        path = f"/cds-services/{service.id}"
        time.sleep(0.5)  # JWKS prewarm thread

        async def run(n: int, offset: int) -> list[float]:
            times = []
            for i in range(n):
                t0 = time.perf_counter()
                status, _ = await call(app, path, body, tokens[offset + i])
                times.append(time.perf_counter() - t0)
                if status != 200:
                    raise SystemExit(f"status {status}")
            return times

        thread_prof = cProfile.Profile()  # work the hook hands to the thread pool
        _profile_in_threads(rt, thread_prof, timings)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(run(50, 0))  # warm-up
        timings.clear()
        gc_time = _time_gc()
        prof = cProfile.Profile()
        if not args.no_profile:
            prof.enable()
            thread_prof.enable_in_threads = True
        cpu0 = time.process_time()
        times = loop.run_until_complete(run(args.n, 50))
        cpu = (time.process_time() - cpu0) / args.n
        prof.disable()
        times.sort()
        print(
            f"{args.size} {args.hook}: {len(body) // 1024} KB, {args.n} calls, "
            f"p50 {times[len(times) // 2] * 1000:.2f} ms, p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms"
            + f", CPU {cpu * 1000:.2f} ms per call (all threads)"
            + ("" if args.no_profile else " (under cProfile)")
        )
        print(
            f"  garbage collector: {gc_time['n']} collections, {gc_time['s'] / args.n * 1000:.3f} ms per call"
        )
        for name, values in timings.items():
            values.sort()
            print(
                f"  in thread: {name:12} mean {sum(values) / len(values) * 1000:.3f} ms "
                f"p50 {values[len(values) // 2] * 1000:.3f} ms"
            )
        if not args.no_profile:
            for label, p in (("event loop thread", prof), ("thread pool", thread_prof)):
                for order in ("cumulative", "tottime"):
                    s = io.StringIO()
                    pstats.Stats(p, stream=s).sort_stats(order).print_stats(args.top)
                    print(f"===== {label}, by {order}")
                    print(s.getvalue())
    finally:
        stop_process(redis.process)
        jwks_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
