"""A throwaway Docker engine, for the benches' side-by-side columns.

    with throwaway_dockerd() as dockerd:     # None when docker/dockerd is not installed
        if dockerd:
            dockerd.cli("import", tar, "berth-bench-busybox:latest")
            subprocess.run(["docker", "ps"], env=dockerd.env)

It is Debian's dockerd on roots of its own under /tmp (data, exec, pid file, a unix socket
there), with a Linux bridge of its own (made here on a private subnet no route uses, as a
default docker has its docker0, so that its containers get a veth and an address as berth's
do on its default bridge) and no iptables rules, so it shares nothing with the host's
networking or with another engine; `stop` removes its containers, stops it, deletes the bridge
and the roots. `PrivateDockerd(bridge=False)` gives the old `--bridge none` (containers without
a network). The docker CLI reaches it with `-H dockerd.host` or the environment `dockerd.env`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import tempfile
import time


class PrivateDockerd:
    """dockerd on its own roots; `start` waits until it answers, `stop` leaves nothing behind."""

    def __init__(self, bridge: bool = True):
        self.root = ""
        self.proc: subprocess.Popen | None = None
        self.with_bridge = bridge
        # Its bridge's name and gateway address (with prefix) once made; "" without one.
        self.bridge = ""
        self.bridge_address = ""

    @staticmethod
    def binary() -> str | None:
        found = shutil.which("dockerd")
        if found is None and os.path.exists("/usr/sbin/dockerd"):
            found = "/usr/sbin/dockerd"
        return found if shutil.which("docker") is not None else None

    @classmethod
    def installed(cls) -> bool:
        return cls.binary() is not None

    @property
    def host(self) -> str:
        return f"unix://{self.root}/docker.sock"

    @property
    def env(self) -> dict[str, str]:
        """The environment for a docker CLI that talks to this dockerd."""
        env = {**os.environ, "DOCKER_HOST": self.host}
        env.pop("DOCKER_CONTEXT", None)
        return env

    def cli(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, **kwargs)

    def start(self, timeout: float = 90.0) -> PrivateDockerd:
        binary = self.binary()
        if binary is None:
            raise RuntimeError("dockerd is not installed")
        self.root = tempfile.mkdtemp(prefix="/tmp/bt-dockerd-")
        bridge = ["--bridge", "none"]
        if self.with_bridge:
            try:
                self._make_bridge()
            except (RuntimeError, subprocess.CalledProcessError):
                self.stop()
                raise RuntimeError("could not make dockerd's bridge") from None
            bridge = ["--bridge", self.bridge]
        with open(os.path.join(self.root, "dockerd.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--data-root", f"{self.root}/data", "--exec-root", f"{self.root}/exec",
                 "--pidfile", f"{self.root}/dockerd.pid", "-H", self.host, *bridge,
                 "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--userland-proxy=false"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"dockerd exited {self.proc.returncode}")
            if self.cli("info").returncode == 0:
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("dockerd did not answer in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.cli("ps", "-aq", text=True).stdout.split()
            if ids:
                self.cli("rm", "-f", "-v", *ids)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            self.bridge = ""
        if self.root:
            # Its overlay mounts go with it; whatever is left under the roots is plain files.
            subprocess.run(["umount", "-R", "-l", self.root], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = ""

    def _make_bridge(self) -> None:
        """A bridge named after the roots, up, its address the first of a /24 that overlaps no
        route here (dockerd takes the subnet from the bridge's address, as with docker0)."""
        self.bridge = "btd" + os.path.basename(self.root).removeprefix("bt-dockerd-")[:12]
        routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                                text=True, check=True).stdout.split("\n")
        used = []
        for line in routes:
            dest = line.split(" ", 2)[1] if line.startswith(("local ", "broadcast ")) else line.split(" ", 1)[0]
            try:
                used.append(ipaddress.ip_network(dest, strict=False))
            except ValueError:
                continue   # "default", blank
        for third in range(0, 256):
            subnet = ipaddress.ip_network(f"10.213.{third}.0/24")
            if not any(subnet.overlaps(u) for u in used):
                break
        else:
            raise RuntimeError("no free subnet for dockerd's bridge")
        self.bridge_address = f"{subnet.network_address + 1}/{subnet.prefixlen}"
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], capture_output=True, check=True)
        subprocess.run(["ip", "addr", "add", self.bridge_address, "dev", self.bridge], capture_output=True,
                       check=True)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], capture_output=True, check=True)


@contextlib.contextmanager
def throwaway_dockerd(bridge: bool = True):
    """A started PrivateDockerd, stopped at the end; None when it is not installed or would not
    start (the benches then print their docker column empty, saying why)."""
    if not PrivateDockerd.installed():
        yield None
        return
    dockerd = PrivateDockerd(bridge=bridge)
    try:
        dockerd.start()
    except RuntimeError:
        yield None
        return
    try:
        yield dockerd
    finally:
        dockerd.stop()
