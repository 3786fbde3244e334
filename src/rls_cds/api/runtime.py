"""What the API needs at run time, built once per app: terminology, catalogue, store, auth, metrics.

Modules owned by other parts (terminology, security, background store) are imported here and only
here, so a missing or failing part degrades one capability (reported by /readyz) instead of the app.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from rls_cds.api.catalogue import Service, load_catalogue
from rls_cds.api.errors import ApiError
from rls_cds.api.metrics import Metrics
from rls_cds.api.suppression import FeedbackStore
from rls_cds.core.validation import set_cache_size as set_validation_cache_size
from rls_cds.settings import Settings

log = logging.getLogger("rls_cds.api")

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@dataclass(frozen=True)
class DevCaller:
    """Caller used when no authenticator is available and development mode is on explicitly."""

    issuer: str = "dev"
    tenant: str = "dev"
    allowed_fhir_servers: tuple[str, ...] = ()
    dev: bool = True

    def allows_fhir_server(self, url: str) -> bool:
        return True


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    terminology: Any | None = None
    catalogue: dict[str, Service] = field(default_factory=dict)
    store: Any | None = None
    feedback: FeedbackStore | None = None
    authenticator: Any | None = None
    auth_error: type[BaseException] | None = None
    # rls_cds.background.triggers.on_order_sign(tenant, fhir_server, patient_id), when that part exists.
    on_order_sign: Any | None = None
    problems: list[str] = field(default_factory=list)

    async def authenticate(self, request: Request) -> Any:
        if self.authenticator is None:
            if self.settings.dev_mode:
                return DevCaller()
            raise ApiError(401, "unauthorized", "a valid bearer token is required", UNAUTHORIZED_HEADERS)
        try:
            return await self.authenticator(request)
        except Exception as exc:
            if self.auth_error is not None and isinstance(exc, self.auth_error):
                raise ApiError(
                    401, "unauthorized", "a valid bearer token is required", UNAUTHORIZED_HEADERS
                ) from None
            raise


def _load_terminology(settings: Settings, problems: list[str]) -> Any | None:
    try:
        from rls_cds.terminology import load_terminology
    except ImportError:
        problems.append("terminology module not available")
        return None
    try:
        return load_terminology(path=settings.terminology_dir)
    except Exception as exc:  # noqa: BLE001 - TerminologyError names file and line; keep serving health
        problems.append("terminology failed to load")
        log.error("terminology failed to load", extra={"error_type": type(exc).__name__, "error": str(exc)})
        return None


def _build_store(settings: Settings) -> Any | None:
    try:
        from rls_cds.background.store import Store
    except ImportError:
        return None
    try:
        return Store.from_settings(settings)
    except Exception as exc:  # noqa: BLE001 - store down must not stop the API
        log.warning("store unavailable at start-up", extra={"error_type": type(exc).__name__})
        return None


def _build_authenticator(runtime: Runtime) -> None:
    try:
        from rls_cds.security.auth import AuthError, build_authenticator
    except ImportError:
        if not runtime.settings.dev_mode:
            runtime.problems.append("security module not available: every hook call is refused")
        return
    runtime.auth_error = AuthError
    runtime.authenticator = build_authenticator(runtime.settings, runtime.store)


def build_runtime(settings: Settings) -> Runtime:
    rt = Runtime(settings=settings, metrics=Metrics())
    set_validation_cache_size(settings.validation_cache_size)  # the core reads no settings itself
    rt.terminology = _load_terminology(settings, rt.problems)
    rt.catalogue = load_catalogue(settings.catalogue_dir, rt.terminology)
    rt.store = _build_store(settings)
    try:  # queue lengths and worker task counts, read from Redis at scrape time
        from rls_cds.background.metrics import register_background_metrics

        register_background_metrics(rt.metrics.registry, rt.store)
    except ImportError:
        pass
    if settings.redis_url:
        rt.feedback = FeedbackStore.from_url(settings.redis_url, rt.metrics)
    _build_authenticator(rt)
    try:
        from rls_cds.background.triggers import on_order_sign

        rt.on_order_sign = on_order_sign
    except ImportError:
        pass
    return rt
