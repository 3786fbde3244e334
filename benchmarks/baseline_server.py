"""The benchmark's baseline: the service's HTTP stack with nothing behind it.

FastAPI on uvicorn with the service's process tuning (gc.freeze after start-up and the same
generation-0 threshold, access log off), one POST endpoint that reads the body, parses it with
orjson (the service's parser) and answers a fixed `{"cards": [], "systemActions": []}`.
The ratio service/baseline then measures what rls-cds adds, not what Python HTTP costs.

    .venv/bin/python benchmarks/baseline_server.py --port 8099
"""

from __future__ import annotations

import argparse
import gc
import sys

import orjson
from fastapi import FastAPI, Request, Response

try:  # the service's own numbers, so the two processes are tuned alike
    from rls_cds.commands.serve import GC_THRESHOLDS
except ImportError:  # pragma: no cover - only before the service exists
    GC_THRESHOLDS = (50_000, 50, 100)

FIXED_ANSWER = orjson.dumps({"cards": [], "systemActions": []})


def create_app() -> FastAPI:
    app = FastAPI(title="rls-cds benchmark baseline", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/cds-services/{service_id}")
    async def hook(service_id: str, request: Request) -> Response:
        obj = orjson.loads(await request.body())
        if not isinstance(obj, dict):
            return Response(b'{"error":"invalid_request"}', status_code=400, media_type="application/json")
        return Response(FIXED_ANSWER, media_type="application/json")

    return app


def tuned_app() -> FastAPI:
    app = create_app()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    ap = argparse.ArgumentParser(description="bare FastAPI/uvicorn endpoint: parse body, fixed answer")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8099)
    args = ap.parse_args(argv)
    uvicorn.run(
        tuned_app(), host=args.host, port=args.port, log_level="warning", access_log=False, log_config=None
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
