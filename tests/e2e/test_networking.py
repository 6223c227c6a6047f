"""Bridge networks, DNS and published ports through the berth CLI, on a real kernel.

Traffic stays on loopback, on the engine's own bridges, and on a veth pair to
a namespace this test makes as "another host" (10.247.x, checked against the
host's routes first).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
import urllib.request

import pytest

from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes  # noqa: F401

HTTPD = ["httpd", "-f", "-p", "80", "-h", "/etc"]


def http_get(url: str, timeout: float = 5.0) -> str:
    """GET with retries until the server in the container is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def free_subnet(prefix: str = "10.247") -> str:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    used = [ipaddress.ip_network(line.split()[0], strict=False) for line in routes.splitlines()
            if line and line.split()[0][0].isdigit()]
    for third in range(0, 250, 4):
        net = ipaddress.ip_network(f"{prefix}.{third}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    pytest.skip("no free test subnet")


def nft_table(engine) -> str:
    return subprocess.run(["nft", "list", "table", "inet", engine.config.nft_table],
                          capture_output=True, text=True).stdout


def test_walkthrough_publish_ps_fetch_stop_rm(engine, busybox_image):
    out = engine.cli("run", "-d", "-p", "18080:80", "--name", "web", busybox_image, *HTTPD,
                     check=True)
    try:
        ps = engine.cli("ps", check=True).stdout
        assert "0.0.0.0:18080->80/tcp" in ps
        # httpd serves the container's /etc: its /etc/hosts names it.
        assert out.stdout.strip()[:12] in http_get("http://127.0.0.1:18080/hosts")
        assert engine.cli("port", "web", check=True).stdout.strip() == "80/tcp -> 0.0.0.0:18080"
        info = json.loads(engine.cli("inspect", "web", check=True).stdout)[0]
        assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]}
        assert info["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        engine.cli("stop", "web", check=True)
    finally:
        engine.cli("rm", "-f", "web")
    assert "dport 18080" not in nft_table(engine)


def test_ephemeral_and_publish_all_ports(engine, busybox_image):
    engine.cli("import", "-", "busybox-expose:latest", "-c", 'CMD ["sh"]', "-c", "EXPOSE 80",
               input=_tar(), check=True)
    engine.cli("run", "-d", "-p", "80", "--name", "eph", busybox_image, *HTTPD, check=True)
    engine.cli("run", "-d", "-P", "--name", "all", "busybox-expose", *HTTPD, check=True)
    try:
        for name in ("eph", "all"):
            line = engine.cli("port", name, "80", check=True).stdout.strip()
            host_port = int(line.rsplit(":", 1)[1])
            assert 49153 <= host_port <= 60999
            assert http_get(f"http://127.0.0.1:{host_port}/hosts")
    finally:
        engine.cli("rm", "-f", "eph", "all")
        engine.cli("rmi", "busybox-expose")


def _tar() -> bytes:
    import tempfile
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-rootfs-") as root:
        return rootfs_tar_bytes(make_busybox_rootfs(root))


def test_port_conflicts_and_bad_specs_change_nothing(engine, busybox_image):
    engine.cli("run", "-d", "-p", "18081:80", "--name", "p1", busybox_image, *HTTPD, check=True)
    try:
        before = nft_table(engine)
        r = engine.cli("run", "-d", "-p", "18081:80", "--name", "p2", busybox_image, *HTTPD)
        assert r.returncode == 125 and "port is already allocated" in r.stderr
        for spec, words in (("70000:80", "out of range"), ("80/sctp", "invalid proto"),
                            ("x:80", "invalid hostPort"), ("1.2.3:80:80", "invalid IP")):
            r = engine.cli("run", "-d", "-p", spec, busybox_image, "true")
            assert r.returncode == 125 and words in r.stderr, (spec, r.stderr)
        assert engine.cli("ps", "-a", "--format", "json").stdout.count("\n") == 1
        assert nft_table(engine) == before
    finally:
        engine.cli("rm", "-f", "p1", "p2")


def test_port_in_use_on_host_is_refused(engine, busybox_image):
    import socket
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = engine.cli("run", "-d", "-p", f"{port}:80", busybox_image, "true")
        assert r.returncode == 125 and "already in use" in r.stderr
        assert engine.cli("ps", "-aq").stdout.strip() == ""
    finally:
        s.close()


def test_user_networks_dns_aliases_isolation(engine, busybox_image):
    engine.cli("network", "create", "appnet", check=True)
    engine.cli("network", "create", "othernet", check=True)
    try:
        engine.cli("run", "-d", "--network", "appnet", "--name", "db", "--network-alias", "database",
                   busybox_image, *HTTPD, check=True)
        engine.cli("run", "-d", "--network", "othernet", "--name", "stranger",
                   busybox_image, *HTTPD, check=True)
        db_ip = json.loads(engine.cli("inspect", "db").stdout)[0][
            "NetworkSettings"]["Networks"]["appnet"]["IPAddress"]
        # busybox's own resolver (its wget -T crashes; no timeout applet).
        for target in ("db", "database"):
            r = engine.cli("run", "--rm", "--network", "appnet", busybox_image,
                           "busybox", "nslookup", target)
            assert r.returncode == 0 and db_ip in r.stdout, (r.stdout, r.stderr)
        r = engine.cli("run", "--rm", "--network", "appnet", busybox_image,
                       "wget", "-q", "-O", "-", f"http://{db_ip}/hosts")
        assert r.returncode == 0 and "db" in r.stdout, r.stderr
        # Names of other networks do not resolve, and their addresses are unreachable.
        r = engine.cli("run", "--rm", "--network", "appnet", busybox_image,
                       "busybox", "busybox", "nslookup", "stranger")
        assert r.returncode != 0
        ip = json.loads(engine.cli("inspect", "stranger").stdout)[0][
            "NetworkSettings"]["Networks"]["othernet"]["IPAddress"]
        r = engine.cli("run", "--rm", "--network", "appnet", busybox_image, "sh", "-c",
                       f"wget -q -O - http://{ip}/hosts & p=$!; sleep 2; kill $p && exit 7; wait $p")
        assert r.returncode != 0 and "stranger" not in r.stdout
        # Connected to both networks, a container reaches both.
        engine.cli("network", "connect", "othernet", "db", check=True)
        engine.cli("run", "-d", "--network", "appnet", "--name", "both", busybox_image,
                   "sleep", "30", check=True)
        engine.cli("network", "connect", "othernet", "both", check=True)
        info = json.loads(engine.cli("inspect", "both").stdout)[0]
        assert set(info["NetworkSettings"]["Networks"]) == {"appnet", "othernet"}
        r = engine.cli("network", "rm", "othernet")
        assert r.returncode != 0 and "active endpoints" in r.stderr
        engine.cli("network", "disconnect", "othernet", "both", check=True)
        engine.cli("network", "disconnect", "othernet", "db", check=True)
    finally:
        engine.cli("rm", "-f", "db", "stranger", "both")
        engine.cli("network", "rm", "appnet", "othernet")
    assert "appnet" not in engine.cli("network", "ls").stdout


def test_network_bad_input(engine):
    r = engine.cli("network", "create", "--subnet", "10.0.0.0/33", "bad1")
    assert r.returncode != 0 and "invalid subnet" in r.stderr
    sub = free_subnet("10.246")
    engine.cli("network", "create", "--subnet", sub, "--ip-range", sub, "good", check=True)
    try:
        r = engine.cli("network", "create", "--subnet", sub, "bad2")
        assert r.returncode != 0 and "overlaps" in r.stderr
        r = engine.cli("network", "create", "good")
        assert r.returncode != 0 and "already exists" in r.stderr
        r = engine.cli("run", "--rm", "--network", "no-such-net", "busybox", "true")
        assert r.returncode == 125 and "network no-such-net not found" in r.stderr
        r = engine.cli("network", "rm", "bridge")
        assert r.returncode != 0 and "pre-defined" in r.stderr
        names = engine.cli("network", "ls").stdout
        assert "bad1" not in names and "bad2" not in names
    finally:
        engine.cli("network", "rm", "good")


def test_static_ip_and_internal_network(engine, busybox_image):
    sub = free_subnet("10.245")
    net = ipaddress.ip_network(sub)
    want = str(net.network_address + 10)
    engine.cli("network", "create", "--internal", "--subnet", sub, "inside", check=True)
    try:
        r = engine.cli("run", "--rm", "--network", "inside", "--ip", want, busybox_image,
                       "busybox", "ip", "-4", "-o", "addr", "show", "eth0")
        assert r.returncode == 0 and f"{want}/24" in r.stdout
        r = engine.cli("run", "--rm", "--network", "inside", busybox_image, "busybox", "ip", "route")
        assert "default" not in r.stdout
    finally:
        engine.cli("network", "rm", "inside")


@pytest.fixture
def other_host(engine):
    """A namespace joined to the host by a veth pair: a second machine for the test."""
    sub = ipaddress.ip_network(free_subnet("10.244"))
    host_ip, peer_ip = str(sub.network_address + 1), str(sub.network_address + 2)
    ns = f"bto{engine.config.bridge_name[2:]}"[:12]
    veth = f"vo{engine.config.bridge_name[2:]}"[:12]
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", ns)
    try:
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "addr", "add", f"{host_ip}/24", "dev", veth)
        run("ip", "link", "set", veth, "up")
        run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{peer_ip}/24", "dev", "eth0")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, host_ip
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_published_port_reachable_from_another_host(engine, busybox_image, other_host):
    ns, host_ip = other_host
    engine.cli("run", "-d", "-p", "18082:80", "--name", "pub", busybox_image, *HTTPD, check=True)
    try:
        http_get("http://127.0.0.1:18082/hosts")
        r = subprocess.run(["ip", "netns", "exec", ns, "busybox", "wget", "-q", "-O", "-",
                            f"http://{host_ip}:18082/hosts"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        # Hairpin: a container reaches a published port through the host's address.
        r = engine.cli("run", "--rm", busybox_image, "wget", "-q", "-O", "-",
                       f"http://{host_ip}:18082/hosts")
        assert r.returncode == 0, r.stderr
    finally:
        engine.cli("rm", "-f", "pub")


def test_network_service_kill_keeps_containers_connected(engine, busybox_image):
    engine.cli("run", "-d", "-p", "18083:80", "--name", "survivor", busybox_image, *HTTPD,
               check=True)
    try:
        http_get("http://127.0.0.1:18083/hosts")
        before = nft_table(engine)
        engine.kill_service("network")
        engine.wait_serving("network")
        assert "survivor" in http_get("http://127.0.0.1:18083/hosts")
        assert nft_table(engine) == before
        assert "0.0.0.0:18083->80/tcp" in engine.cli("ps", check=True).stdout
    finally:
        engine.cli("rm", "-f", "survivor")


def test_cycles_leave_no_veths_leases_or_rules(engine, busybox_image):
    def census():
        links = subprocess.run(["ip", "-o", "link", "show", "master", engine.config.bridge_name],
                               capture_output=True, text=True).stdout
        return (links.count("\n"), nft_table(engine).count("dnat"),
                len(json.loads(engine.cli("network", "inspect", "bridge", check=True).stdout)[0]["Containers"]))
    before = census()
    for i in range(20):
        engine.cli("create", "-p", f"{18100 + i}:80", "--name", f"cyc{i}", busybox_image, "true",
                   check=True)
        engine.cli("rm", f"cyc{i}", check=True)
    # Removed veths' host ends go shortly after the reply: give them a moment.
    deadline = time.monotonic() + 10
    while census() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert census() == before
