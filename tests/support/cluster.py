"""A cluster on one machine: etcd and N berth nodes, each node a network namespace of its own.

    with Cluster(3) as cluster:            # etcd + berthd x3, underlay bridge, namespaces
        a, b = cluster.nodes[0], cluster.nodes[1]
        a.cli("network", "create", "-d", "overlay", "web")
        cluster.kill(b); cluster.revive(b)  # SIGKILL b's engine (its containers keep running)

Layout (all names and the subnet are this cluster's own, removed by `close`,
also after a failure):

    host netns:  veth bc<tag>h 10.<x>.<y>.1/24   etcd listening there (own ports, own data dir)
                   |
    netns bc<tag>w (the wire):  bridge bc<tag>, ports bc<tag>hw and bc<tag>v<i>
                   |
    netns bc<tag>n<i>:  eth0 10.<x>.<y>.<10+i>/24, lo; berthd --cluster-advertise that address

The wire is a namespace of its own so that frames between nodes skip netfilter, as they do on
a real switch: where br_netfilter is built in or loaded, every bridge of a namespace whose
`net.bridge.bridge-nf-call-iptables` is 1 (the default, and the host's here) hands its frames to
that namespace's conntrack and chains; a bridge's own `nf_call_iptables 0` can only add to the
sysctl, never take away. The wire's sysctls are 0 and concern only the wire.

Each node's engine has its own roots, bridge and nftables table (tests/support/engine.py);
the VXLAN tunnels between nodes run over the underlay bridge and nowhere else.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

from services.common.config import Config
from tests.support.engine import PYTHON, Engine, EngineError


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.224.0.0/12 that no route of the host touches."""
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                         text=True).stdout
    taken = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word.startswith("local") or word.startswith("broadcast"):
            word = line.split()[1]
        try:
            taken.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    pool = list(ipaddress.ip_network("10.224.0.0/12").subnets(new_prefix=24))
    random.shuffle(pool)
    for net in pool:
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise RuntimeError("no free /24 for the cluster's underlay")


class Node(Engine):
    """One berth engine in its own network namespace, member of the cluster."""

    def __init__(self, cluster: Cluster, index: int):
        # What a node needs to run containers on overlays (no build, no CRI: less to start).
        super().__init__(services=("image", "network", "volume", "container", "gateway"))
        self.cluster = cluster
        self.index = index
        self.name = f"node{index + 1}"
        self.netns = f"{cluster.tag}n{index + 1}"
        self.address = str(cluster.subnet.network_address + 10 + index)

    @property
    def config(self) -> Config:
        base = super().config
        return Config(run_root=base.run_root, data_root=base.data_root, bridge_name=base.bridge_name,
                      nft_table=base.nft_table, dns_upstreams=base.dns_upstreams,
                      cluster_store=self.cluster.store_url, node_name=self.name,
                      cluster_advertise=self.address, cluster_ttl=self.cluster.ttl)

    def start(self, argv: list[str] | None = None) -> Node:
        # nsenter, not `ip netns exec`: that one also remounts /sys, hiding the cgroup tree runc needs.
        return super().start(argv or ["nsenter", f"--net=/run/netns/{self.netns}", PYTHON, "-m",
                                      "services.berthd", "--log-format", "json"])

    def kill(self) -> None:
        """SIGKILL berthd and its services at once (a crash of the node's engine); the containers'
        monitors live on, as on a host whose engine died."""
        assert self.proc is not None
        pids = list(self.service_pids().values()) + [self.proc.pid]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.terminate()

    def exec_in_netns(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", *args], capture_output=True,
                              text=True, timeout=timeout)


class Cluster:
    def __init__(self, size: int, ttl: int = 4):
        self.size = size
        self.ttl = ttl
        self.tag = f"bc{random.randrange(16 ** 4):04x}"
        self.wire = f"{self.tag}w"
        self.subnet = free_subnet()
        self.gateway = str(self.subnet.network_address + 1)
        self.client_port = free_port()
        self.peer_port = free_port()
        self.root = ""
        self.etcd: subprocess.Popen | None = None
        self.nodes: list[Node] = []

    @property
    def store_url(self) -> str:
        return f"http://{self.gateway}:{self.client_port}"

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> Cluster:
        if not shutil.which("etcd"):
            raise EngineError("etcd is not installed (make deps installs etcd-server)")
        self.root = tempfile.mkdtemp(prefix=f"/tmp/{self.tag}-")
        # The underlay stands for the wire between hosts, in a namespace of its own (see the
        # module's doc): the host's netfilter never sees a tunnelled frame.
        _run("ip", "netns", "add", self.wire)
        for sysctl in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
            path = f"/proc/sys/net/bridge/{sysctl}"
            subprocess.run(["nsenter", f"--net=/run/netns/{self.wire}", "sh", "-c",
                            f"[ ! -e {path} ] || echo 0 > {path}"], check=True, capture_output=True)
        _run("ip", "-n", self.wire, "link", "add", self.tag, "type", "bridge")
        _run("ip", "-n", self.wire, "link", "set", self.tag, "up")
        _run("ip", "link", "add", f"{self.tag}h", "type", "veth", "peer", "name", f"{self.tag}hw",
             "netns", self.wire)
        _run("ip", "-n", self.wire, "link", "set", f"{self.tag}hw", "master", self.tag, "up")
        _run("ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", f"{self.tag}h")
        _run("ip", "link", "set", f"{self.tag}h", "up")
        self._start_etcd()
        self.nodes = [Node(self, i) for i in range(self.size)]
        for node in self.nodes:
            self._plumb(node)
        # At once: each start mostly waits on imports and its services' health.
        errors: list[BaseException] = []

        def start(node: Node) -> None:
            try:
                node.start()
            except BaseException as exc:  # noqa: BLE001 - raised below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return self

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._etcd_log = open(os.path.join(self.root, "etcd.log"), "ab")
        self.etcd = subprocess.Popen(
            ["etcd", "--name", self.tag, "--data-dir", os.path.join(self.root, "etcd"),
             "--listen-client-urls", f"{self.store_url},http://127.0.0.1:{self.client_port}",
             "--advertise-client-urls", self.store_url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"{self.tag}={peer}", "--initial-cluster-state", "new"],
            stdin=subprocess.DEVNULL, stdout=self._etcd_log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.etcd.poll() is not None:
                raise EngineError(f"etcd exited with {self.etcd.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.client_port}/health", timeout=1) as r:
                    if b"true" in r.read():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise EngineError("etcd did not become healthy in 30s")

    def _plumb(self, node: Node) -> None:
        host_end = f"{self.tag}v{node.index + 1}"
        _run("ip", "netns", "add", node.netns)
        _run("ip", "-n", self.wire, "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
             "netns", node.netns)
        _run("ip", "-n", self.wire, "link", "set", host_end, "master", self.tag, "up")
        _run("ip", "-n", node.netns, "addr", "add", f"{node.address}/{self.subnet.prefixlen}", "dev", "eth0")
        _run("ip", "-n", node.netns, "link", "set", "eth0", "up")
        _run("ip", "-n", node.netns, "link", "set", "lo", "up")

    def kill(self, node: Node) -> None:
        node.kill()

    def revive(self, node: Node) -> None:
        node.start()

    def close(self) -> None:
        for node in self.nodes:
            try:
                node.stop()
            except Exception:  # noqa: BLE001 - the rest is removed all the same
                pass
            # The overlay's devices live in the node's namespace: they go with it.
            subprocess.run(["ip", "netns", "del", node.netns], capture_output=True)
        if self.etcd is not None:
            self.etcd.kill()
            self.etcd.wait()
            self._etcd_log.close()
            self.etcd = None
        # The wire's bridge and node ports go with its namespace, the host's veth with its peer.
        subprocess.run(["ip", "netns", "del", self.wire], capture_output=True)
        subprocess.run(["ip", "link", "del", f"{self.tag}h"], capture_output=True)
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = ""
