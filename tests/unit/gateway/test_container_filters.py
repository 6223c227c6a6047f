"""`docker ps --filter`: every filter the Engine API documents for /containers/json; and `diff` without the engine's own files."""

from __future__ import annotations

import pytest

from berth.engine.v1 import engine_pb2
from berth.types.v1 import port_pb2
from services.common import errors
from services.gateway.convert import matches_filters


def _info(**state) -> engine_pb2.ContainerInfo:
    info = engine_pb2.ContainerInfo(id="abc123", name="web", image="busybox", image_id="sha256:1",
                                    state=engine_pb2.ContainerState(**state))
    info.networks.add(network="app_default", network_id="n1234")
    info.mounts.add(type="volume", name="data", source="/v/data/_data", destination="/data")
    info.config.ports.add(protocol="tcp", container_port=80, host_port=8080)
    info.config.ports.append(port_pb2.PortBinding(protocol="udp", container_port=53, host_port=5353))
    return info


EXITED = {"status": "exited", "exit_code": 3}


@pytest.mark.parametrize("filters, state, want", [
    ({"exited": ["3"]}, EXITED, True),
    ({"exited": ["0", "1"]}, EXITED, False),
    ({"exited": ["0"]}, {"status": "running", "running": True}, False),
    ({"health": ["none"]}, EXITED, True),
    ({"health": ["healthy"]}, EXITED, False),
    ({"network": ["app_default"]}, EXITED, True),
    ({"network": ["n12"]}, EXITED, True),
    ({"network": ["other"]}, EXITED, False),
    ({"publish": ["80"]}, EXITED, True),
    ({"publish": ["80/udp"]}, EXITED, False),
    ({"publish": ["50-60/udp"]}, EXITED, True),
    ({"expose": ["8080"]}, EXITED, False),
    ({"volume": ["data"]}, EXITED, True),
    ({"volume": ["/data"]}, EXITED, True),
    ({"volume": ["/logs"]}, EXITED, False),
    ({"is-task": ["true"]}, EXITED, False),
    ({"is-task": ["false"]}, EXITED, True),
    ({"isolation": ["default"]}, EXITED, True),
    ({"network": ["app_default"], "exited": ["1"]}, EXITED, False),
])
def test_container_filters(filters, state, want):
    assert matches_filters(_info(**state), {}, filters, set()) is want


def test_health_filter_reads_the_health_state():
    info = _info(status="running", running=True)
    info.state.health.status = "unhealthy"
    assert matches_filters(info, {}, {"health": ["unhealthy"]}, set())
    assert not matches_filters(info, {}, {"health": ["none", "healthy"]}, set())


@pytest.mark.parametrize("filters", [{"exited": ["x"]}, {"publish": ["http"]}, {"is-task": ["maybe"]}])
def test_bad_filter_values_are_invalid_arguments(filters):
    with pytest.raises(errors.InvalidArgument):
        matches_filters(_info(**EXITED), {}, filters, set())


def test_diff_leaves_out_the_engines_own_files():
    from berth.types.v1 import file_change_pb2
    from services.gateway.backends.containers import without_engine_files

    def changes(*pairs):
        return [file_change_pb2.FileChange(kind=k, path=p) for k, p in pairs]
    made = changes(("C", "/etc"), ("A", "/etc/hosts"), ("A", "/etc/resolv.conf"), ("A", "/etc/hostname"),
                   ("A", "/test"))
    assert without_engine_files(made) == changes(("A", "/test"))
    mine = changes(("C", "/etc"), ("A", "/etc/hosts"), ("A", "/etc/app.conf"))
    assert without_engine_files(mine) == changes(("C", "/etc"), ("A", "/etc/app.conf"))
