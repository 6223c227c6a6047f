"""The pieces of observability, in process: trace ids in log lines, the Docker API's
server span and how one `docker run`'s requests join one trace, the merged /metrics."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from services.common import logging as logging_mod
from services.gateway.docker.server import _Traces, trace_middleware
from services.gateway.metrics_http import merge

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider():
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        current = trace.get_tracer_provider()
    current.add_span_processor(SimpleSpanProcessor(EXPORTER))
    yield


@pytest.fixture
def spans():
    EXPORTER.clear()
    return EXPORTER


def test_log_lines_inside_a_span_carry_its_ids():
    with trace.get_tracer(__name__).start_as_current_span("x") as span:
        event = logging_mod.add_trace_ids(None, "info", {"event": "e"})
    ctx = span.get_span_context()
    assert event["trace_id"] == format(ctx.trace_id, "032x") and event["span_id"] == format(ctx.span_id, "016x")
    assert "trace_id" not in logging_mod.add_trace_ids(None, "info", {"event": "outside"})


def _app() -> web.Application:
    async def create(request):
        return web.json_response({"Id": "c1"}, status=201)

    async def start(request):
        return web.Response(status=204)

    app = web.Application(middlewares=[trace_middleware(_Traces(size=2))])
    for prefix in ("", r"/v{major:\d+}.{minor:\d+}"):
        app.router.add_post(prefix + "/containers/create", create)
        app.router.add_post(prefix + "/containers/{id}/start", start)
        app.router.add_get(prefix + "/_ping", start)
    return app


async def test_a_containers_later_requests_join_the_trace_that_created_it(spans):
    async with TestClient(TestServer(_app())) as client:
        assert (await client.post("/v1.45/containers/create")).status == 201
        assert (await client.post("/v1.45/containers/c1/start")).status == 204
        assert (await client.get("/_ping")).status == 204
    create, start, ping = spans.get_finished_spans()
    assert create.name == "POST /containers/create" and start.name == "POST /containers/{id}/start"
    assert create.kind == trace.SpanKind.SERVER and create.attributes["http.response.status_code"] == 201
    assert start.context.trace_id == create.context.trace_id and start.parent.span_id == create.context.span_id
    assert ping.context.trace_id != create.context.trace_id and ping.parent is None


async def test_a_client_traceparent_wins(spans):
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with TestClient(TestServer(_app())) as client:
        await client.post("/containers/create")
        await client.post("/containers/c1/start", headers={"traceparent": parent})
    start = spans.get_finished_spans()[-1]
    assert format(start.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(start.parent.span_id, "016x") == "b7ad6b7169203331"


def test_the_trace_memory_is_bounded():
    traces = _Traces(size=2)
    for i in range(3):
        traces.remember(f"c{i}", object())
    assert traces.get("c0") is None and traces.get("c2") is not None


def test_merged_metrics_label_every_sample_with_its_service():
    text = ("# HELP berth_build_steps_total steps\n# TYPE berth_build_steps_total counter\n"
            'berth_build_steps_total{state="done"} 2.0\n')
    families = {f.name: f for f in text_string_to_metric_families(
        merge({"build": text, "gateway": "", "image": None}).decode())}
    assert [(s.labels, s.value) for s in families["berth_build_steps"].samples] == [
        ({"state": "done", "service": "build"}, 2.0)]
    up = {s.labels["service"]: s.value for s in families["berth_up"].samples}
    assert up == {"build": 1.0, "gateway": 1.0, "image": 0.0}
