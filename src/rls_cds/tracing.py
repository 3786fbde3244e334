"""Optional OpenTelemetry tracing of the HTTP API: off unless RLS_OTEL_ENABLED=true.

When off (the default), no tracer or exporter is created and nothing is sent, whatever OTEL_* variables
say; the SDK is not a dependency of the service. When on, it needs the ``tracing`` extra
(``pip install 'rls-cds[tracing]'``) and exports spans over OTLP/HTTP, configured by the standard
variables: OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
OTEL_SERVICE_NAME (default "rls-cds"), OTEL_RESOURCE_ATTRIBUTES, ...

One server span per HTTP request, named by the route *template* (``POST /cds-services/{service_id}``):
never the raw path or query, which on operator endpoints can name a patient, and no headers, bodies or
exception messages (they can quote tokens or resources). An incoming W3C ``traceparent`` is honoured, so
an EHR or gateway that traces its calls sees rls-cds inside its own trace.
"""

from __future__ import annotations

import os
from typing import Any

from rls_cds.security.logs import route_of

INSTALL_HINT = "RLS_OTEL_ENABLED=true needs the tracing extra: pip install 'rls-cds[tracing]'"


def missing_dependency(settings) -> str | None:
    """A message when tracing is switched on but OpenTelemetry is not installed, else None."""
    if not getattr(settings, "otel_enabled", False):
        return None
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


class TracingMiddleware:
    """ASGI middleware: a SERVER span per HTTP request, PHI-free by construction."""

    def __init__(self, app, tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        method = scope.get("method", "HTTP")
        status: dict[str, int] = {}

        async def send_and_note_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        with self.tracer.start_as_current_span(
            method,
            context=extract(headers),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
            record_exception=False,  # an exception message can quote a resource or a token
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, send_and_note_status)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                # The router puts the matched route in the (shared) scope: name by its template.
                route = route_of(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            code = status.get("code", 500)
            span.set_attribute("http.response.status_code", code)
            if code >= 500:
                span.set_status(Status(StatusCode.ERROR))


def instrument(app: Any, settings) -> Any:
    """Add tracing to a FastAPI app when RLS_OTEL_ENABLED is on (one provider per process)."""
    if not getattr(settings, "otel_enabled", False):
        return app
    problem = missing_dependency(settings)
    if problem:
        raise RuntimeError(problem)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "rls-cds")})
    provider = TracerProvider(resource=resource)  # flushes its spans at interpreter exit
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Deliberately NOT the global provider: FastAPI's built-in telemetry switches itself on when a global
    # one exists and records raw URL paths, validation inputs and exception messages (PHI). Only the
    # spans made here are exported.
    tracer = provider.get_tracer("rls_cds")
    app.add_middleware(TracingMiddleware, tracer=tracer)
    return app
