"""-p from the CLI and PortBindings from the Docker API: one parser, one validation."""

from __future__ import annotations

import pytest

from berth.engine.v1 import engine_pb2
from berth_cli import cli, commands
from berth_docker import create, ports
from berth_errors import NotImplementedYet


@pytest.mark.parametrize("flag,key,host", [
    ("80", "80/tcp", {"HostIp": "", "HostPort": ""}),
    ("8080:80", "80/tcp", {"HostIp": "", "HostPort": "8080"}),
    ("127.0.0.1:8080:80/udp", "80/udp", {"HostIp": "127.0.0.1", "HostPort": "8080"}),
    ("127.0.0.1::53/udp", "53/udp", {"HostIp": "127.0.0.1", "HostPort": ""}),
])
def test_a_publish_flag_and_port_bindings_are_the_same_binding(flag, key, host):
    from_cli = commands.container_config(cli.parse(["run", "-p", flag, "busybox"])).ports
    from_api = create.container_config({"Image": "busybox", "HostConfig": {"PortBindings": {key: [host]}}}, "").ports
    assert list(from_cli) == list(from_api) and len(from_api) == 1


def test_publish_flag_fields():
    assert ports.publish_flag("127.0.0.1:8080:80/udp") == engine_pb2.PortBinding(
        protocol="udp", host_ip="127.0.0.1", host_port=8080, container_port=80)
    assert ports.publish_flag("80").host_port == 0


@pytest.mark.parametrize("flag,key,host", [
    ("80/sctp", "80/sctp", {"HostPort": "1"}),
    ("0", "0/tcp", {"HostPort": "1"}),
    ("70000:80", "80/tcp", {"HostPort": "70000"}),
    ("x:80", "80/tcp", {"HostPort": "x"}),
    ("nothost:80:80", "80/tcp", {"HostIp": "nothost", "HostPort": "80"}),
])
def test_bad_ports_are_refused_by_both_edges(flag, key, host):
    with pytest.raises(ValueError):
        commands.container_config(cli.parse(["run", "-p", flag, "busybox"]))
    with pytest.raises(ValueError):
        create.container_config({"Image": "b", "HostConfig": {"PortBindings": {key: [host]}}}, "")


def test_port_ranges_are_refused_as_not_implemented_by_both_edges():
    with pytest.raises(NotImplementedYet):
        ports.publish_flag("8080-8081:80-81")
    with pytest.raises(NotImplementedYet):
        ports.port_bindings({"80/tcp": [{"HostPort": "8080-8081"}]})


def test_ports_shown_back():
    bound = [engine_pb2.PortBinding(protocol="tcp", host_port=8080, container_port=80),
             engine_pb2.PortBinding(protocol="udp", host_ip="127.0.0.1", host_port=53, container_port=53)]
    assert ports.ports_column(bound) == "0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp"
    assert ports.ports_json(bound) == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                                       "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "53"}]}
