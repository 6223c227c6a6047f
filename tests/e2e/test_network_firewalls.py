"""berth beside another firewall: the iptables FORWARD policy DROP (as dockerd or ufw set it).

A whole engine runs in a throwaway network namespace (its "host"), joined by a veth pair to a
second one ("another machine", with a web server for egress). Only those namespaces' firewalls
change; the real host's is never touched. The kernel forwards a packet only when every base
chain on the forward hook accepts it: berth's own table accepting its bridges is not enough
(checked first, below), so berth keeps accept rules for its bridges in iptables' FORWARD chain,
puts them back when another tool reloads that chain, and removes them with its networks.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from tests.support.engine import PYTHON, Engine
from tests.support.rootfs import busybox_available, make_busybox_rootfs, rootfs_tar_bytes

IPTABLES = shutil.which("iptables-nft")
pytestmark = pytest.mark.skipif(IPTABLES is None, reason="iptables-nft is not installed")
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/etc"]


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


def free_subnet() -> ipaddress.IPv4Network:
    routes = sh("ip", "-4", "route").stdout
    used = [ipaddress.ip_network(line.split()[0], strict=False) for line in routes.splitlines()
            if line and line.split()[0][0].isdigit()]
    for third in range(0, 250, 4):
        net = ipaddress.ip_network(f"10.242.{third}.0/30")
        if not any(net.overlaps(u) for u in used):
            return net
    pytest.skip("no free test subnet")


@pytest.fixture
def hosts():
    """(engine's namespace, other machine's namespace, engine side address, other side address)."""
    tag = uuid.uuid4().hex[:6]
    engine_ns, other_ns = f"btfw{tag}", f"btfo{tag}"
    net = free_subnet()
    here, there = str(net.network_address + 1), str(net.network_address + 2)
    try:
        sh("ip", "netns", "add", engine_ns)
        sh("ip", "netns", "add", other_ns)
        sh("ip", "-n", engine_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", other_ns)
        for ns, address in ((engine_ns, here), (other_ns, there)):
            sh("ip", "-n", ns, "addr", "add", f"{address}/30", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", engine_ns, "route", "add", "default", "via", there)
        # What dockerd does on a host that had forwarding off, and ufw by default.
        sh("ip", "netns", "exec", engine_ns, IPTABLES, "-P", "FORWARD", "DROP")
        yield engine_ns, other_ns, here, there
    finally:
        sh("ip", "netns", "del", engine_ns, check=False)
        sh("ip", "netns", "del", other_ns, check=False)


@pytest.fixture
def engine_in(hosts):
    if not busybox_available():
        pytest.skip("busybox-static is not installed")
    eng = Engine()
    # nsenter, not `ip netns exec`: that one would also remount /sys for berthd.
    eng.start(["nsenter", f"--net=/run/netns/{hosts[0]}", PYTHON, "-m", "services.berthd"])
    try:
        with tempfile.TemporaryDirectory(prefix="/tmp/bt-rootfs-") as root:
            tar = rootfs_tar_bytes(make_busybox_rootfs(root))
        eng.cli("import", "-", "busybox:latest", "-c", 'CMD ["sh"]', input=tar, check=True)
        yield eng
    finally:
        eng.stop()


def in_ns(ns: str, *args: str) -> subprocess.CompletedProcess:
    return sh("ip", "netns", "exec", ns, *args, check=False)


def forward_rules(ns: str) -> str:
    return in_ns(ns, IPTABLES, "-S", "FORWARD").stdout


def wget(engine, container: str, url: str, limit: int = 30) -> subprocess.CompletedProcess:
    # busybox's wget has no working timeout: the shell bounds it.
    return engine.cli("exec", container, "sh", "-c",
                      f"wget -q -O - {url} & p=$!; (sleep {limit}; kill $p) >/dev/null 2>&1 & wait $p")


def test_traffic_keeps_working_with_forward_policy_drop(hosts, engine_in):
    engine_ns, other_ns, here, there = hosts
    eng = engine_in
    server = subprocess.Popen(["ip", "netns", "exec", other_ns, sys.executable, "-m", "http.server",
                               "--bind", there, "8089", "--directory", os.path.dirname(__file__)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eng.cli("network", "create", "fwnet", check=True)
        bridge = [line.split()[1] for line in in_ns(engine_ns, "ip", "-o", "link", "show", "type",
                                                    "bridge").stdout.splitlines()
                  if line.split()[1].startswith("br-")][0].rstrip(":")
        assert f"-i {bridge} " in forward_rules(engine_ns)
        eng.cli("run", "-d", "--network", "fwnet", "--name", "web", "-p", "18090:80",
                "busybox:latest", *HTTPD, check=True)
        eng.cli("run", "-d", "--network", "fwnet", "--name", "client", "busybox:latest",
                "sleep", "300", check=True)

        def all_paths_work() -> None:
            # Same network (bridged traffic passes the FORWARD chain once br_netfilter is loaded).
            r = wget(eng, "client", "http://web/hosts")
            assert r.returncode == 0 and "web" in r.stdout, r.stderr
            # Published port, from another machine.
            deadline = time.monotonic() + 30
            while True:
                r = in_ns(other_ns, "busybox", "wget", "-q", "-O", "-", f"http://{here}:18090/hosts")
                if r.returncode == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.returncode == 0 and "web" in r.stdout, r.stderr
            # Egress, masqueraded out of the engine's machine.
            r = wget(eng, "client", f"http://{there}:8089/{os.path.basename(__file__)}")
            assert r.returncode == 0 and "FORWARD" in r.stdout, r.stderr

        all_paths_work()
        # Another tool reloads its rules (ufw reload, iptables-restore, dockerd start).
        in_ns(engine_ns, IPTABLES, "-F", "FORWARD")
        assert bridge not in forward_rules(engine_ns)
        deadline = time.monotonic() + 30
        while f"-i {bridge} " not in forward_rules(engine_ns) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"-i {bridge} " in forward_rules(engine_ns)
        all_paths_work()

        # Why the rules must be in the other tool's chain: a drop in any base chain wins over
        # berth's accept (a chain of a table berth does not know, so nothing puts it right).
        sh("ip", "netns", "exec", engine_ns, "nft", "add table ip bt_other; add chain ip bt_other "
           "forward { type filter hook forward priority 10; policy drop; }")
        r = wget(eng, "client", "http://web/hosts", limit=3)
        assert r.returncode != 0 and "web" not in r.stdout
        sh("ip", "netns", "exec", engine_ns, "nft", "delete table ip bt_other")

        eng.cli("rm", "-f", "web", "client", check=True)
        eng.cli("network", "rm", "fwnet", check=True)
        assert bridge not in forward_rules(engine_ns)
    finally:
        server.kill()
        server.wait()
