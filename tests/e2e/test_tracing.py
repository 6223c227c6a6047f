"""One client call is one trace across processes: the gateway's server span and
the node services' spans for the same `run` share a trace id."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.engine import Engine
from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes


@pytest.fixture
def traced_engine(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    engine = Engine().start()
    try:
        yield engine
    finally:
        engine.stop()


def spans(log: str) -> list[dict]:
    """The console exporter's JSON documents, picked out of the mixed log."""
    found, decoder, i = [], json.JSONDecoder(), 0
    while (start := log.find("{\n", i)) != -1:
        try:
            doc, end = decoder.raw_decode(log, start)
        except ValueError:
            i = start + 1
            continue
        if "context" in doc and "name" in doc:
            found.append(doc)
        i = end
    return found


def test_a_run_is_one_trace_across_services(traced_engine, tmp_path):
    engine = traced_engine
    tar = rootfs_tar_bytes(make_busybox_rootfs(str(tmp_path / "rootfs")))
    engine.cli("import", "-", "traced:1", input=tar, check=True)
    engine.cli("run", "--rm", "traced:1", "true", check=True)
    engine.terminate()  # flushes every service's span processor
    by_name: dict[str, set[str]] = {}
    for span in spans(engine.log_text()):
        by_name.setdefault(span["name"], set()).add(span["context"]["trace_id"])
    run_traces = by_name.get("/berth.engine.v1.EngineService/RunContainer")
    assert run_traces and len(run_traces) == 1, sorted(by_name)
    trace_id = next(iter(run_traces))
    for node_call in ("/berth.container.v1.ContainerService/CreateContainer",
                      "/berth.image.v1.ImageService/PrepareSnapshot",
                      "/berth.network.v1.NetworkService/CreateEndpoint"):
        assert trace_id in by_name.get(node_call, set()), (node_call, sorted(by_name))
    assert re.fullmatch(r"0x[0-9a-f]{32}", trace_id)
