"""Networking as docker clients expect it, through the real docker CLI: the resolver at
127.0.0.11 (names, aliases, links, every network of the container, UDP and TCP), network
connect/disconnect in any order, `--network container:<name>`, IPv6 networks."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

DOCKER = shutil.which("docker")
pytestmark = pytest.mark.skipif(DOCKER is None, reason="no docker CLI installed")

# A DNS query over TCP to the resolver, run inside a container's namespace by nsenter.
TCP_QUERY = r"""
import socket, struct, sys
name = sys.argv[1].encode()
q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p for p in name.split(b".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.create_connection(("127.0.0.11", 53), timeout=10)
s.sendall(struct.pack("!H", len(q)) + q)
data = b""
while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
reply = data[2:]
count = struct.unpack("!H", reply[6:8])[0]
print(".".join(str(b) for b in reply[-4:]) if count else "none")
"""


@pytest.fixture
def docker(engine, busybox_image):
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config"}
    env.pop("DOCKER_CONTEXT", None)
    made: list[tuple[str, str]] = []

    def run(*args: str, check: bool = False) -> subprocess.CompletedProcess:
        r = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=120)
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r
    run.made = made
    run.engine = engine
    yield run
    for kind, name in reversed(made):
        if kind == "container":
            run("rm", "-f", name)
        else:
            run("network", "rm", name)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _network(docker, *args: str) -> str:
    name = _name("nf")
    docker("network", "create", *args, name, check=True)
    docker.made.append(("network", name))
    return name


def _run(docker, *args: str) -> str:
    name = _name("c")
    docker("run", "-d", "--name", name, *args, "busybox", "sleep", "300", check=True)
    docker.made.append(("container", name))
    return name


def _inspect(docker, name: str) -> dict:
    return json.loads(docker("inspect", name, check=True).stdout)[0]


def _ip(docker, container: str, network: str) -> str:
    return _inspect(docker, container)["NetworkSettings"]["Networks"][network]["IPAddress"]


def _nslookup(docker, container: str, name: str) -> subprocess.CompletedProcess:
    return docker("exec", container, "busybox", "nslookup", name)


def test_connected_container_resolves_names_aliases_and_links_over_udp_and_tcp(docker):
    net = _network(docker)
    server = _run(docker, "--network", net, "--network-alias", "svc")
    server_ip = _ip(docker, server, net)
    client = _run(docker)   # the default bridge: no names there
    r = _nslookup(docker, client, server)
    assert r.returncode == 1 and server_ip not in r.stdout, (r.stdout, r.stderr)

    docker("network", "connect", net, client, check=True)
    for name in (server, "svc", f"{server}.{net}"):
        r = _nslookup(docker, client, name)
        assert r.returncode == 0 and server_ip in r.stdout, (name, r.stdout, r.stderr)
    resolv = docker("exec", client, "cat", "/etc/resolv.conf", check=True).stdout
    assert "nameserver 127.0.0.11" in resolv

    # The same over TCP, asked from inside the container's namespace.
    netns = _inspect(docker, client)["NetworkSettings"]["SandboxKey"]
    r = subprocess.run(["nsenter", f"--net={netns}", sys.executable, "-c", TCP_QUERY, "svc"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == server_ip, r.stderr

    # A legacy link's alias resolves for the container that asked for it only.
    linked = _run(docker, "--network", net, "--link", f"{server}:upstream")
    assert _inspect(docker, linked)["NetworkSettings"]["Networks"][net]["Links"] == [f"{server}:upstream"]
    r = _nslookup(docker, linked, "upstream")
    assert r.returncode == 0 and server_ip in r.stdout, (r.stdout, r.stderr)
    assert _nslookup(docker, client, "upstream").returncode == 1

    # The resolver's sockets live in the network service: a restarted one opens them again.
    docker.engine.kill_service("network")
    docker.engine.wait_serving("network")
    r = _nslookup(docker, client, "svc")
    assert r.returncode == 0 and server_ip in r.stdout, (r.stdout, r.stderr)

    docker("network", "disconnect", net, client, check=True)
    assert _nslookup(docker, client, server).returncode == 1


def test_connect_in_any_order_and_container_network_mode(docker):
    net = _network(docker)
    # docker-compose's order: create, disconnect from the only network, connect with aliases, start.
    name = _name("c")
    docker("create", "--name", name, "--network", net, "busybox", "sleep", "300", check=True)
    docker.made.append(("container", name))
    docker("network", "disconnect", net, name, check=True)
    docker("network", "connect", "--alias", "web", net, name, check=True)
    docker("start", name, check=True)
    ip = _ip(docker, name, net)
    assert "web" in _inspect(docker, name)["NetworkSettings"]["Networks"][net]["Aliases"]

    # A second container in the first one's namespace: same address, same resolver.
    sharer = _run(docker, "--network", f"container:{name}")
    assert f"inet {ip}/" in docker("exec", sharer, "busybox", "ip", "addr", check=True).stdout
    r = _nslookup(docker, sharer, "web")
    assert r.returncode == 0 and ip in r.stdout, (r.stdout, r.stderr)
    r = docker("network", "connect", net, sharer)
    assert r.returncode != 0 and "shar" in r.stderr

    # Connected while running, then back to no network at all and connected again.
    other = _network(docker)
    docker("network", "connect", other, name, check=True)
    docker("network", "disconnect", net, name, check=True)
    docker("network", "disconnect", other, name, check=True)
    assert "eth" not in docker("exec", name, "busybox", "ip", "link", check=True).stdout
    docker("network", "connect", net, name, check=True)
    assert "eth0" in docker("exec", name, "busybox", "ip", "link", check=True).stdout


def test_ipv6_network_gives_addresses_on_the_bridge_and_in_the_container(docker):
    net = _network(docker, "--ipv6", "--subnet", "fd00:b7:11::/64", "--subnet", _free_v4())
    a = _run(docker, "--network", net, "--ip6", "fd00:b7:11::10")
    b = _run(docker, "--network", net)
    settings = _inspect(docker, a)["NetworkSettings"]["Networks"][net]
    assert settings["GlobalIPv6Address"] == "fd00:b7:11::10"
    assert settings["IPAMConfig"]["IPv6Address"] == "fd00:b7:11::10"
    info = json.loads(docker("network", "inspect", net, check=True).stdout)[0]
    assert info["EnableIPv6"] is True
    assert [c["Subnet"] for c in info["IPAM"]["Config"]][1] == "fd00:b7:11::/64"
    r = docker("exec", b, "busybox", "ping", "-6", "-c", "1", "-W", "5", "fd00:b7:11::10")
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = docker("network", "create", "--ipv6", _name("bad"))
    assert r.returncode != 0 and "IPv6" in r.stderr


def _free_v4() -> str:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    used = [ipaddress.ip_network(line.split()[0], strict=False) for line in routes.splitlines()
            if line and line.split()[0][0].isdigit()]
    for third in range(0, 250, 4):
        net = ipaddress.ip_network(f"10.243.{third}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    pytest.skip("no free test subnet")

