"""`make bench` rows for services spread over hosts: the latency of a `run` through a
gateway whose node services are on another host (two network namespaces joined by a
veth pair, mutual TLS between them), beside the same `run` on one host (unix sockets).

    rows = measure(tar_path, runs)   # starts both layouts on their own roots, stops them
    report(rows)

The two are measured in turns (one remote run, one local run, ...), so that the load
of the moment weighs on both alike; the ratio is what to read.
"""

from __future__ import annotations

import statistics
import time

from berth.engine.v1 import engine_pb2 as pb
from tests.support.engine import Engine
from tests.support.remote import RemotePair

IMAGE = "berth-bench/remote:latest"


def _run(stub) -> float:
    started = time.perf_counter()
    replies = list(stub.RunContainer(pb.RunContainerRequest(
        config=pb.ContainerConfig(image=IMAGE, cmd=["/bin/true"], auto_remove=True), attach=True)))
    assert replies[-1].exit.exit_code == 0
    return (time.perf_counter() - started) * 1000


def measure(tar_path: str, runs: int) -> dict[str, float]:
    local, pair = Engine(), RemotePair()
    try:
        local.start()
        pair.start()
        stubs = {}
        for name, engine in (("local", local), ("remote", pair.gateway)):
            engine.cli("import", tar_path, IMAGE, check=True)
            stubs[name] = engine.engine_stub()
            _run(stubs[name])  # warm: layers unpacked, channels (and TLS sessions) open
        times: dict[str, list[float]] = {"local": [], "remote": []}
        for _ in range(runs):
            for name in ("remote", "local"):
                times[name].append(_run(stubs[name]))
        return {name: statistics.median(t) for name, t in times.items()}
    finally:
        pair.stop()
        local.stop()


def report(rows: dict[str, float]) -> None:
    print(f"\n{'services over hosts (run --rm /bin/true, gRPC)':52} {'ms':>9}")
    print(f"{'  gateway and node services on one host (unix)':52} {rows['local']:9.1f}")
    print(f"{'  gateway on another host (TCP, mutual TLS)':52} {rows['remote']:9.1f}")
    print(f"{'  remote / local':52} {rows['remote'] / rows['local']:9.2f}x")
