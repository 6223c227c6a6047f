"""Two hosts on one machine: a gateway node and a services node, each in its own network
namespace with its own roots, joined by a veth pair on a subnet of their own.

    pair = RemotePair().start()     # node B: image, network, volume, container, build on TCP + mTLS
                                    # node A: a gateway driving them over that link
    pair.gateway.cli("run", ...)    # the CLI on A's gateway socket (unix sockets cross namespaces)
    pair.stop()                     # both engines, their containers, the namespaces, the certificates

The two are as far apart as two hosts on a LAN: no shared network (loopback included),
no shared roots; only the certificates, made by `berthd certs` for B's address, are
given to both.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile

from pyroute2 import IPRoute, netns

from services.common import tls
from tests.support.engine import PYTHON, Engine

NODE_SERVICES = ("image", "network", "volume", "container", "build")
FIRST_PORT = 7401
# The gateway's own listeners on A's address: its gRPC Engine API and the Docker API.
GATEWAY_PORT, DOCKER_PORT = 7400, 2376


class RemotePair:
    def __init__(self):
        tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        self.ns_a, self.ns_b = f"brm-a-{tag}", f"brm-b-{tag}"
        self.veth_a, self.veth_b = f"rma{tag}", f"rmb{tag}"
        # A /30 of its own in 10.213.0.0/16, so pairs started at once do not collide.
        base = random.randrange(1, 16383) * 4
        self.ip_a = f"10.213.{base // 256}.{base % 256 + 1}"
        self.ip_b = f"10.213.{base // 256}.{base % 256 + 2}"
        self.tls_dir = ""
        self.node: Engine | None = None
        self.gateway: Engine | None = None

    @property
    def addresses(self) -> dict[str, str]:
        return {s: f"{self.ip_b}:{FIRST_PORT + i}" for i, s in enumerate(NODE_SERVICES)}

    @property
    def gateway_address(self) -> str:
        return f"{self.ip_a}:{GATEWAY_PORT}"

    @property
    def docker_address(self) -> str:
        return f"{self.ip_a}:{DOCKER_PORT}"

    def in_node(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command in B's namespace (a client on the node's host, reaching A over the link)."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.ns_b}", *argv], capture_output=True,
                              text=True, timeout=timeout)

    def start(self) -> RemotePair:
        try:
            self._link()
            self.tls_dir = tempfile.mkdtemp(prefix="/tmp/bt-tls-")
            tls.issue(self.tls_dir, [*NODE_SERVICES, "gateway", "client"], [self.ip_b, self.ip_a])
            env = {"BERTH_TLS_DIR": self.tls_dir,
                   **{f"BERTH_{s.upper()}_ADDRESS": a for s, a in self.addresses.items()},
                   "BERTH_GATEWAY_ADDRESS": self.gateway_address, "BERTH_DOCKER_TCP": self.docker_address}
            self.node = self._engine(self.ns_b, NODE_SERVICES, env)
            self.gateway = self._engine(self.ns_a, ("gateway",), env)
        except BaseException:
            self.stop()
            raise
        return self

    def _engine(self, ns: str, services: tuple[str, ...], env: dict[str, str]) -> Engine:
        engine = Engine(services=services)
        engine.env = env
        engine.root = tempfile.mkdtemp(prefix="/tmp/bt-")
        config = engine.config
        # nsenter --net rather than `ip netns exec`, which also remounts /sys in a mount
        # namespace of its own and so hides the cgroup mounts runc needs.
        engine.start(["nsenter", f"--net=/run/netns/{ns}", PYTHON, "-m", "services.berthd", "--run-root", config.run_root,
                      "--data-root", config.data_root, "--log-format", "json", "--services", ",".join(services)])
        return engine

    def _link(self) -> None:
        netns.create(self.ns_a)
        netns.create(self.ns_b)
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.veth_a, kind="veth", peer=self.veth_b)
            for ifname, ns in ((self.veth_a, self.ns_a), (self.veth_b, self.ns_b)):
                ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], net_ns_fd=ns)
        for ns, ifname, ip in ((self.ns_a, self.veth_a, self.ip_a), (self.ns_b, self.veth_b, self.ip_b)):
            with IPRoute(netns=ns) as ipr:
                index = ipr.link_lookup(ifname=ifname)[0]
                ipr.addr("add", index=index, address=ip, prefixlen=30)
                ipr.link("set", index=index, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def stop(self) -> None:
        # The gateway first: it removes the containers through the node's services.
        for engine in (self.gateway, self.node):
            if engine is not None:
                engine.stop()
        self.gateway = self.node = None
        for ns in (self.ns_a, self.ns_b):
            if ns in netns.listnetns():
                netns.remove(ns)
        if self.tls_dir:
            shutil.rmtree(self.tls_dir, ignore_errors=True)
            self.tls_dir = ""
