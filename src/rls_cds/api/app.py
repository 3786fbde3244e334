"""The FastAPI application: `create_app(settings)` wires runtime, error handlers and routers."""

from __future__ import annotations

import importlib
import logging

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from rls_cds.api import feedback, health, hooks
from rls_cds.api.errors import install_error_handlers
from rls_cds.api.runtime import build_runtime
from rls_cds.settings import Settings, get_settings

log = logging.getLogger("rls_cds.api")

# --- Routers added by other parts -----------------------------------------------------------
# Each module exposes `router` (a FastAPI APIRouter). Included only if importable, so a part that
# has not landed yet does not stop the hooks. Add new routers here, one line each.
OPTIONAL_ROUTERS = [
    "rls_cds.api.subscriptions",
    "rls_cds.api.panels",
]
# ----------------------------------------------------------------------------------------------


def _include_optional_routers(app: FastAPI) -> None:
    for name in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name != name:  # the module exists but something it imports is broken: say so
                log.error("optional router failed to import", extra={"router": name, "missing": exc.name})
            continue
        app.include_router(module.router)


def _openapi_with_service_ids(app: FastAPI, service_ids: list[str]):
    """Declare the known service ids as an enum, so clients and fuzzers see the real contract."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = original()
            for path in schema.get("paths", {}).values():
                for op in path.values():
                    for param in op.get("parameters", []):
                        if param.get("name") == "service_id" and service_ids:
                            param["schema"] = {"type": "string", "enum": service_ids}
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="rls-cds",
        version="0.1.0",
        description="CDS Hooks 2.0 services for restless legs syndrome: causes, aggravators, drug safety.",
    )
    app.state.runtime = build_runtime(settings)
    app.state.settings = settings
    install_error_handlers(app)
    # CDS Hooks: browser-based EHRs and the CDS Hooks sandbox call services cross-origin. No cookies
    # are used (bearer JWTs only), so any origin may call.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
    )
    app.include_router(health.router)
    app.include_router(feedback.router)  # before the hooks: /{id}/feedback is more specific
    app.include_router(hooks.router)
    _include_optional_routers(app)
    app.openapi = _openapi_with_service_ids(app, list(app.state.runtime.catalogue))
    if settings.dev_mode:
        log.warning("DEVELOPMENT MODE: no authentication; serve on loopback only")
    return app
