"""A real berthd on throwaway roots, driven the way a user drives it.

    engine = Engine().start()        # berthd + services on /tmp/bt-XXXX
    engine.cli("ps", "-a")           # the berth CLI against its gateway
    engine.kill_service("network")   # SIGKILL; berthd restarts it
    engine.stop()                    # stops berthd, removes every trace

Roots are short paths under /tmp because unix socket paths are limited to
108 bytes. `stop` leaves nothing behind even when a test failed halfway:
containers are force-removed, mounts under the roots are lazily unmounted,
the roots are deleted.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import shlex
import signal
import subprocess
import sys
import tempfile
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import SERVICES, Config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
if not os.path.exists(PYTHON):
    PYTHON = sys.executable
MNT_DETACH = 2


class EngineError(RuntimeError):
    pass


class Engine:
    def __init__(self, services: tuple[str, ...] = SERVICES, start_timeout: float = 60.0):
        self.services = tuple(s for s in SERVICES if s in services)
        self.start_timeout = start_timeout
        # Where the engine's DNS resolver forwards unknown names (nothing listens on port 9).
        self.dns_upstreams = "127.0.0.1:9"
        self.root = ""
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._channels: dict[str, grpc.Channel] = {}
        # More environment for berthd (its config: BERTH_USERNS_REMAP, ...).
        self.env: dict[str, str] = {}

    # -- paths -------------------------------------------------------------

    @property
    def config(self) -> Config:
        # Bridge, nftables table and DNS upstream of this engine only, so engines
        # running at once never share kernel objects and tests send no DNS off-host.
        tag = os.path.basename(self.root).removeprefix("bt-")
        return Config(run_root=os.path.join(self.root, "run"),
                      data_root=os.path.join(self.root, "data"),
                      bridge_name=f"bt{tag}"[:15], nft_table=f"bt_{tag}",
                      dns_upstreams=self.dns_upstreams)

    def socket(self, service: str) -> str:
        return self.config.socket_path(service)

    @property
    def gateway_socket(self) -> str:
        return self.socket("gateway")

    @property
    def docker_socket(self) -> str:
        """The gateway's Docker Engine API (for the docker CLI: DOCKER_HOST=unix://<this>)."""
        return os.path.join(self.config.run_root, "docker.sock")

    @property
    def log_path(self) -> str:
        return os.path.join(self.root, "berthd.log")

    def log_text(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- lifecycle ---------------------------------------------------------

    def start(self, argv: list[str] | None = None) -> Engine:
        """Start berthd; `argv` starts it with that command line (run in the repo),
        which then gets all of this engine's config from the environment."""
        if not self.root:
            self.root = tempfile.mkdtemp(prefix="/tmp/bt-")
        self._log = open(self.log_path, "ab")
        env = self.config.env()
        if argv is None:
            argv = [PYTHON, "-m", "services.berthd", "--run-root", self.config.run_root,
                    "--data-root", self.config.data_root, "--log-format", "json",
                    "--services", ",".join(self.services)]
            env = {k: v for k, v in env.items() if k.startswith(("BERTH_BRIDGE", "BERTH_NFT", "BERTH_DNS"))}
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, **env, **self.env},
            # A Ctrl-C on pytest must not reach berthd before stop() does.
            start_new_session=True,
        )
        last = "gateway" if "gateway" in self.services else self.services[-1]
        try:
            self.wait_serving(last, self.start_timeout)
        except EngineError:
            self.stop()
            raise
        return self

    def wait_serving(self, service: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise EngineError(f"berthd exited with {self.proc.returncode}:\n{self._tail()}")
            if self.health(service) == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.05)
        raise EngineError(f"{service} not SERVING after {timeout:g}s; berthd log:\n{self._tail()}")

    def health(self, service: str, name: str = "") -> int | None:
        """The health status of `service`, or None when it does not answer."""
        if not os.path.exists(self.socket(service)):
            return None
        try:
            with grpc.insecure_channel(f"unix://{self.socket(service)}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=name), timeout=1)
                return reply.status
        except grpc.RpcError:
            return None

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM berthd and wait; containers are left alone. Returns its exit code."""
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def restart(self) -> Engine:
        """Stop berthd and start it again on the same roots; containers keep running."""
        self.terminate()
        return self.start()

    def stop(self) -> None:
        """Stop berthd and remove everything it made: containers, mounts, roots."""
        if not self.root:
            return
        try:
            self._remove_containers()
        finally:
            self.terminate()
            self._kill_leftovers()
            self._remove_network_leftovers()
            _unmount_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = ""

    def _remove_network_leftovers(self) -> None:
        """This engine's bridges (from the network service's store) and nftables table."""
        import sqlite3
        db = os.path.join(self.config.state_dir("network"), "network.db")
        bridges = {self.config.bridge_name}
        if os.path.exists(db):
            try:
                with sqlite3.connect(db) as conn:
                    for (options,) in conn.execute("SELECT options FROM networks"):
                        import json
                        bridge = json.loads(options).get("bridge")
                        if bridge:
                            bridges.add(bridge)
            except sqlite3.Error:
                pass
        for bridge in bridges:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", self.config.nft_table], capture_output=True)
        # The accept rules the network service keeps in iptables' FORWARD chains, when the host
        # has one (dockerd, ufw): the default bridge's stay after its last network went.
        tag = f"berth:{self.config.nft_table} "
        for tool in ("iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"):
            names = "/proc/net/ip6_tables_names" if tool.startswith("ip6") else "/proc/net/ip_tables_names"
            if tool.endswith("legacy") and not os.path.exists(names):
                continue   # listing would load the legacy tables into the kernel
            try:
                listed = subprocess.run([tool, "-w", "-S", "FORWARD"], capture_output=True, text=True)
            except FileNotFoundError:
                continue
            for line in listed.stdout.splitlines():
                if tag in line and line.startswith("-A FORWARD "):
                    subprocess.run([tool, "-w", "-D", "FORWARD", *shlex.split(line)[2:]],
                                   capture_output=True)

    def _remove_containers(self) -> None:
        if self.proc is None or "gateway" not in self.services:
            return
        if self.health("gateway") != health_pb2.HealthCheckResponse.SERVING:
            return
        try:
            from berth.engine.v1 import engine_pb2 as pb
            stub = self.engine_stub()
            listed = stub.ListContainers(pb.ListContainersRequest(all=True), timeout=10)
            for container in listed.containers:
                try:
                    stub.RemoveContainer(pb.RemoveContainerRequest(id=container.id, force=True),
                                         timeout=30)
                except grpc.RpcError:
                    pass
        except (grpc.RpcError, ImportError, AttributeError, ValueError):
            pass

    def _kill_leftovers(self) -> None:
        """Containers berth no longer lists: runc state and monitors under our roots."""
        for dirpath, _dirs, files in os.walk(self.root):
            if "state.json" in files:
                runc_root, container_id = os.path.split(dirpath)
                subprocess.run(["runc", "--root", runc_root, "delete", "--force", container_id],
                               capture_output=True, timeout=30)
        for pid in _pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if pid != os.getpid() and self.root.encode() in cmdline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -- talking to it -----------------------------------------------------

    def cli(self, *args: str, input: str | bytes | None = None, check: bool = False,
            timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [PYTHON, "-m", "berth_cli", "-H", f"unix://{self.gateway_socket}", *args],
            input=input, capture_output=True, text=not isinstance(input, bytes),
            timeout=timeout, cwd=REPO,
        )
        if check and result.returncode != 0:
            raise EngineError(f"berth {' '.join(args)} exited {result.returncode}:\n"
                              f"{result.stdout}\n{result.stderr}")
        return result

    def channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            self._channels[service] = grpc.insecure_channel(f"unix://{self.socket(service)}")
        return self._channels[service]

    def engine_stub(self):
        from berth.engine.v1 import engine_pb2_grpc
        return engine_pb2_grpc.EngineServiceStub(self.channel("gateway"))

    def pid_of(self, service: str) -> int:
        """The pid of berthd's child running `service` (forked: named berth-<service>)."""
        assert self.proc is not None, "berthd is not running"
        want = f"services.{service}".encode()
        for pid in _pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and (comm == f"berth-{service}"[:15] or want in argv):
                return pid
        raise EngineError(f"berthd has no {service} process")

    def service_pids(self) -> dict[str, int]:
        return {s: self.pid_of(s) for s in self.services}

    def kill_service(self, service: str, sig: int = signal.SIGKILL) -> int:
        pid = self.pid_of(service)
        os.kill(pid, sig)
        return pid

    def pss_kib(self) -> dict[str, int]:
        """Proportional set size of berthd and each service, in KiB."""
        assert self.proc is not None
        pids = {"berthd": self.proc.pid, **self.service_pids()}
        return {name: _pss(pid) for name, pid in pids.items()}

    def _tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def mounts_under(root: str) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def _unmount_under(root: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(3):  # stacked mounts need more than one pass
        points = mounts_under(root)
        if not points:
            return
        for point in points:
            libc.umount2(point.encode(), MNT_DETACH)
