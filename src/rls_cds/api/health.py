"""Discovery, health, readiness and metrics endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rls_cds.api.models import DiscoveryResponse
from rls_cds.api.runtime import Runtime

router = APIRouter()


@router.get(
    "/cds-services", response_model=DiscoveryResponse, summary="CDS Hooks discovery", tags=["cds-hooks"]
)
async def discovery(request: Request) -> dict:
    rt: Runtime = request.app.state.runtime
    return {"services": [s.discovery() for s in rt.catalogue.values()]}


@router.api_route(
    "/healthz", methods=["GET", "HEAD"], summary="Liveness: the process answers", tags=["operations"]
)
async def healthz() -> dict:
    return {"status": "ok"}


def _core_available() -> bool:
    try:
        import rls_cds.core.engine  # noqa: F401
        import rls_cds.core.resources  # noqa: F401
    except ImportError:
        return False
    return True


@router.get(
    "/readyz",
    summary="Readiness: terminology loaded and store reachable",
    tags=["operations"],
    responses={503: {"description": "not ready; the body says which check failed"}},
)
async def readyz(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.runtime
    store_ok = rt.feedback is not None and await run_in_threadpool(rt.feedback.ping)
    checks = {
        "terminology": rt.terminology is not None,
        "clinical_core": _core_available(),
        "store": bool(store_ok),
    }
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    if rt.terminology is not None:
        body["terminology_version"] = getattr(rt.terminology, "version", None)
    if rt.problems:
        body["problems"] = rt.problems
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", tags=["operations"], response_class=Response)
async def metrics(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    return Response(rt.metrics.render(), media_type=rt.metrics.content_type)
