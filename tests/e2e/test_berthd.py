"""berthd as an operator sees it: services up in order, restarted when they die, stopped cleanly."""

from __future__ import annotations

import json
import os
import signal
import stat
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.config import SERVICES
from tests.support.engine import Engine

SERVING = health_pb2.HealthCheckResponse.SERVING
# Supervision is tested on the services this part of berth owns, so that it
# does not wait for the heavier ones; test_starts_every_service covers all.
LIGHT = ("network", "volume")


@pytest.fixture
def light_engine():
    eng = Engine(services=LIGHT).start()
    try:
        yield eng
    finally:
        eng.stop()


def reflected_services(engine: Engine, service: str) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(engine.channel(service))
    replies = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    return {s.name for r in replies for s in r.list_services_response.service}


def test_starts_every_service(fresh_engine):
    pids = fresh_engine.service_pids()
    assert set(pids) == set(SERVICES)
    for service in SERVICES:
        sock = fresh_engine.socket(service)
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600, service
        assert fresh_engine.health(service) == SERVING, service
        names = reflected_services(fresh_engine, service)
        assert "grpc.health.v1.Health" in names
        # Each serves its own contract: berth's, or Kubernetes' CRI (runtime.v1).
        assert any(n.startswith(("berth.", "runtime.v1.")) for n in names), (service, names)
    _assert_started_in_dependency_order(fresh_engine)
    pss = fresh_engine.pss_kib()
    print(f"\nidle PSS (KiB): {pss} total {sum(pss.values()) / 1024:.1f} MiB")


def test_killed_service_is_restarted(light_engine):
    for service in LIGHT:
        old = light_engine.kill_service(service, signal.SIGKILL)
        new = _wait_new_pid(light_engine, service, old)
        light_engine.wait_serving(service, timeout=15)
        assert new != old and light_engine.health(service) == SERVING
    assert '"service_died"' in light_engine.log_text()


def test_sigterm_stops_every_child_and_exits_0(light_engine):
    pids = light_engine.service_pids()
    code = light_engine.terminate()
    assert code == 0, light_engine.log_text()
    for service, pid in pids.items():
        assert not _alive(pid), f"{service} ({pid}) survived berthd"
    assert '"berthd_stopped"' in light_engine.log_text()


def test_services_follow_a_killed_berthd(light_engine):
    # Otherwise a new berthd would find the old services holding the sockets.
    pids = light_engine.service_pids()
    light_engine.proc.kill()
    light_engine.proc.wait()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids.values()), pids


def _assert_started_in_dependency_order(eng: Engine) -> None:
    deadline = time.monotonic() + 5
    while eng.log_text().count('"service_ready"') < len(SERVICES) and time.monotonic() < deadline:
        time.sleep(0.05)
    events = [json.loads(line) for line in eng.log_text().splitlines() if line.startswith("{")]
    order = [(e["event"], e["service"]) for e in events
             if e.get("event") in ("service_spawned", "service_ready")]
    for service, needs in (("container", ("image", "network", "volume")),
                           ("gateway", ("image", "network", "volume", "container"))):
        spawned = order.index(("service_spawned", service))
        for need in needs:
            assert order.index(("service_ready", need)) < spawned, (service, need, order)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_new_pid(eng: Engine, service: str, old: int, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = eng.pid_of(service)
            if pid != old:
                return pid
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"berthd did not restart {service}:\n{eng.log_text()}")
