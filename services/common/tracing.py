"""OpenTelemetry set up once for every service.

A tracer provider is always installed so that trace context travels over gRPC
metadata (one client call is one trace across processes and hosts; the Docker API's
HTTP edge opens its own server span, see docs/observability.md); spans are exported
only when the standard OTEL_TRACES_EXPORTER asks for it ("console", or "otlp"
when the OTLP exporter package is installed). The default exports nothing.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter


def setup(service: str) -> None:
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", f"berth-{service}")})
    provider = TracerProvider(resource=resource)
    for name in filter(None, os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")):
        exporter = _exporter(name.strip())
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def shutdown() -> None:
    """Flush spans still queued; services call it on a clean stop (forked
    services leave with os._exit, so the SDK's atexit hook never runs)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def _exporter(name: str):
    if name in ("", "none"):
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        # Optional dependency: only deployments that export spans need it.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    raise SystemExit(f"OTEL_TRACES_EXPORTER={name!r} is not supported (use none, console or otlp)")


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def server_interceptors() -> list:
    return [aio_server_interceptor()]


def client_interceptors() -> list:
    return list(aio_client_interceptors())
