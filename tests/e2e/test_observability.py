"""Observability through the Docker API: a `docker run` is one trace across the gateway's
HTTP edge and every node service it reached, log lines name their trace, and the
gateway's /metrics is Prometheus text covering every service."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_tracing import spans
from tests.support.engine import Engine
from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    engine = Engine()
    metrics_address = f"127.0.0.1:{free_port()}"
    engine.env = {"OTEL_TRACES_EXPORTER": "console", "BERTH_METRICS_ADDRESS": metrics_address}
    engine.start()
    try:
        tar = rootfs_tar_bytes(make_busybox_rootfs(str(tmp_path_factory.mktemp("rootfs"))))
        engine.cli("import", "-", "observed:1", input=tar, check=True)
        docker = subprocess.run(["docker", "-H", f"unix://{engine.docker_socket}", "run", "--rm", "observed:1",
                                 "sh", "-c", "echo observed"], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "DOCKER_CONFIG": str(tmp_path_factory.mktemp("docker"))})
        assert docker.returncode == 0 and docker.stdout == "observed\n", docker
        # A client that sends its own W3C context: its trace goes on in the engine.
        request = urllib.request.Request("http://localhost/containers/json", headers={
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        with _unix_http(engine.docker_socket) as opener:
            opener.open(request, timeout=30).read()
        with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=30) as reply:
            scraped = reply.read().decode()
        engine.terminate()  # flushes every service's span processor
        yield engine.log_text(), scraped
    finally:
        engine.stop()


class _unix_http:
    """urllib over the Docker API's unix socket."""

    def __init__(self, path: str):
        import http.client

        class Connection(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)

        class Handler(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(Connection, req)

        self.opener = urllib.request.build_opener(Handler)

    def __enter__(self):
        return self.opener

    def __exit__(self, *exc):
        return False


def _run_trace(found: list[dict]) -> str:
    creates = [s for s in found if s["name"] == "POST /containers/create"]
    assert len(creates) == 1, sorted({s["name"] for s in found})
    return creates[0]["context"]["trace_id"]


def test_a_docker_run_is_one_trace(observed):
    log, _ = observed
    found = spans(log)
    trace_id = _run_trace(found)
    in_trace = {s["name"] for s in found if s["context"]["trace_id"] == trace_id}
    # The docker CLI's requests about the container, each a server span of the one trace...
    for request in ("POST /containers/{id}/attach", "POST /containers/{id}/wait", "POST /containers/{id}/start"):
        assert request in in_trace, (request, sorted(in_trace))
    # ...and the node services' spans under them.
    for node_call in ("/berth.container.v1.ContainerService/CreateContainer",
                      "/berth.container.v1.ContainerService/StartContainer",
                      "/berth.image.v1.ImageService/PrepareSnapshot",
                      "/berth.network.v1.NetworkService/CreateEndpoint"):
        assert node_call in in_trace, (node_call, sorted(in_trace))
    # Every span of the run hangs from the create's server span, not from a root of its own.
    roots = [s for s in found if s["context"]["trace_id"] == trace_id and not s.get("parent_id")]
    assert [s["name"] for s in roots] == ["POST /containers/create"]


def test_a_client_traceparent_is_honoured(observed):
    log, _ = observed
    listed = [s for s in spans(log) if s["name"] == "GET /containers/json"
              and s["context"]["trace_id"] == "0x0af7651916cd43dd8448eb211c80319c"]
    assert listed and listed[0]["parent_id"] == "0xb7ad6b7169203331"
    assert listed[0]["kind"] == "SpanKind.SERVER"


def test_log_lines_carry_their_trace(observed):
    log, _ = observed
    trace_hex = _run_trace(spans(log)).removeprefix("0x")
    lines = []
    for line in log.splitlines():
        if line.startswith("{") and '"event"' in line:
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    created = [entry for entry in lines if entry.get("event") == "container_created"]
    assert created and created[-1].get("trace_id") == trace_hex, created
    assert len(created[-1]["span_id"]) == 16


def test_metrics_are_scraped_for_every_service(observed):
    _, scraped = observed
    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    up = {s.labels["service"]: s.value for s in families["berth_up"].samples}
    assert up == {"gateway": 1.0, "image": 1.0, "network": 1.0, "volume": 1.0, "container": 1.0, "build": 1.0}
    states = {s.labels["state"] for s in families["berth_containers"].samples}
    assert {"created", "running", "stopped", "paused"} <= states
    counts = {(s.labels["service"], s.labels["rpc_method"]): s.value
              for s in families["berth_rpc_server_duration_seconds"].samples if s.name.endswith("_count")}
    assert counts[("container", "/berth.container.v1.ContainerService/CreateContainer")] >= 1
    assert counts[("gateway", "/berth.engine.v1.EngineService/ImportImage")] >= 1
