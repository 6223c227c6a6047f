"""OpenTelemetry metrics set up once for every service, read in Prometheus' text format.

Each service records into its own MeterProvider, whose PrometheusMetricReader (the
OpenTelemetry exporter for Prometheus) renders on demand: nothing is computed between
scrapes and no thread or port is opened per service. Every service answers
berth.metrics.v1.MetricsService/ScrapeMetrics with its text (see rpc.serve); the gateway
merges them, each sample labelled with its service, into one /metrics (services/gateway/metrics_http.py).

    counter = metrics.meter(__name__).create_counter("berth.image.pull.bytes", unit="By")
    counter.add(len(chunk))

Instruments: berth.rpc.server.duration (seconds, per method and status), berth.containers
(by state), berth.image.pull.bytes, berth.build.steps (by state).
"""

from __future__ import annotations

import os

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from berth.metrics.v1 import metrics_pb2, metrics_pb2_grpc

# Seconds, from a unix-socket call (~1 ms) to a pull or a long build step.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_registry: CollectorRegistry | None = None
_rpc_duration = None


def setup(service: str) -> None:
    global _registry, _rpc_duration
    # A registry of its own rather than prometheus_client's global one, so that what is
    # rendered is exactly this provider's instruments (no process collectors twice).
    _registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(disable_target_info=True, scope_info_enabled=False, registry=_registry)
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", f"berth-{service}")})
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=[
        View(instrument_name="berth.rpc.server.duration",
             aggregation=ExplicitBucketHistogramAggregation(RPC_BUCKETS))])
    metrics.set_meter_provider(provider)
    _rpc_duration = provider.get_meter(__name__).create_histogram(
        "berth.rpc.server.duration", unit="s", description="Time to answer a gRPC call, by method and status")


def meter(name: str) -> metrics.Meter:
    return metrics.get_meter(name)


def record_rpc(method: str, status: str, seconds: float) -> None:
    if _rpc_duration is not None:
        _rpc_duration.record(seconds, {"rpc_method": method, "rpc_status": status})


class MetricsServicer:
    """berth.metrics.v1.MetricsService: this process's scrape, for the gateway's /metrics."""

    async def ScrapeMetrics(self, request, context):
        return metrics_pb2.ScrapeMetricsResponse(text=render())


def add_servicer(server) -> str:
    """Serve MetricsService on `server`; returns its full name (for reflection)."""
    metrics_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsServicer(), server)
    return metrics_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name


def render() -> str:
    """This process's metrics in Prometheus' text format ("" before setup)."""
    return generate_latest(_registry).decode() if _registry is not None else ""
