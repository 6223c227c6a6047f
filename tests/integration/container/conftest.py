"""Fixtures for the container service's kernel tests: a real service process on tmp roots,
busybox overlay rootfs, and a sweep that proves nothing is left behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from berth.container.v1 import container_pb2 as pb
from berth.container.v1 import container_pb2_grpc
from berth.types.v1 import mount_pb2
from berth.types.v1 import stdio_pb2
from services.common import rpc
from services.common.config import Config
from tests.support.rootfs import busybox_available, make_busybox_rootfs

if not (busybox_available() and shutil.which("runc") and shutil.which("conmon")):
    pytest.skip("needs busybox-static, runc and conmon", allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


class ServiceProcess:
    """`python -m services.container` on its own run and data roots."""

    def __init__(self, run_root: str, data_root: str):
        self.config = Config(run_root=run_root, data_root=data_root,
                             log_format="json")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        env = {**os.environ, **self.config.env()}
        self.log = open(os.path.join(self.config.data_root, "service.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.container"], cwd=REPO, env=env,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        sock = self.config.socket_path("container")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if os.path.exists(sock) and self.proc.poll() is None:
                try:
                    import socket
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(sock)
                    s.close()
                    return self
                except OSError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}: {self.read_log()}")
            time.sleep(0.02)
        raise RuntimeError("service did not come up")

    def read_log(self) -> str:
        with open(os.path.join(self.config.data_root, "service.log")) as f:
            return f.read()[-4000:]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        os.unlink(self.config.socket_path("container"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def client(self) -> rpc.Client:
        return rpc.connect(self.config, "container", container_pb2_grpc.ContainerServiceStub)


def sweep(run_root: str, data_root: str) -> None:
    """Removes whatever a failed test left: conmon, runc state, cgroups, mounts."""
    runc_root = os.path.join(run_root, "runc")
    bundles = os.path.join(data_root, "container", "bundles")
    ids = os.listdir(bundles) if os.path.isdir(bundles) else []
    for pid in conmon_pids(data_root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for id in ids:
        subprocess.run(["runc", "--root", runc_root, "delete", "--force", id], capture_output=True)
        rootfs = os.path.join(bundles, id, "rootfs")
        while os.path.ismount(rootfs):
            subprocess.run(["umount", "-l", rootfs], check=False)


def conmon_pids(data_root: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"conmon") and any(data_root.encode() in a for a in cmd):
            out.append(int(entry))
    return out


def mounts_under(path: str) -> int:
    with open("/proc/self/mountinfo") as f:
        return sum(1 for line in f if line.split()[4].startswith(path))


def cgroup_dirs(ids=None) -> int:
    """Container cgroups under /berth, of `ids` only when given (other engineers' engines
    on this machine use /berth too)."""
    total = 0
    for ctrl in os.listdir("/sys/fs/cgroup"):
        d = os.path.join("/sys/fs/cgroup", ctrl, "berth")
        if os.path.isdir(d):
            total += sum(1 for e in os.scandir(d) if e.is_dir() and (ids is None or e.name in ids))
    return total


@pytest.fixture(scope="session")
def lower():
    with tempfile.TemporaryDirectory(prefix="/tmp/bc-lower-") as root:
        make_busybox_rootfs(root)
        with open(os.path.join(root, "noexec"), "w") as f:
            f.write("#!/bin/sh\necho hi\n")
        os.chmod(os.path.join(root, "noexec"), 0o644)
        yield root


class Roots:
    def __init__(self, base: str, lower: str):
        self.base = base
        self.lower = lower
        self.run_root = os.path.join(base, "r")
        self.data_root = os.path.join(base, "d")
        os.makedirs(self.run_root)
        os.makedirs(self.data_root)

    def rootfs(self) -> list[mount_pb2.Mount]:
        """A fresh overlay on the busybox lower dir, as the image service would give it."""
        layer = os.path.join(self.base, "layers", uuid.uuid4().hex[:12])
        os.makedirs(os.path.join(layer, "upper"))
        os.makedirs(os.path.join(layer, "work"))
        return [mount_pb2.Mount(type="overlay", source="overlay", options=[
            f"lowerdir={self.lower}", f"upperdir={layer}/upper", f"workdir={layer}/work"])]

    def spec(self, *args: str, **kw) -> pb.Spec:
        return pb.Spec(rootfs=self.rootfs(), process=pb.Process(args=list(args), cwd="/",
                       env=["PATH=/bin"]), **kw)


@pytest.fixture
def roots(lower):
    base = tempfile.mkdtemp(prefix="/tmp/bc-")
    r = Roots(base, lower)
    try:
        yield r
    finally:
        sweep(r.run_root, r.data_root)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def service(roots):
    svc = ServiceProcess(roots.run_root, roots.data_root).start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
async def client(service):
    c = service.client()
    try:
        yield c
    finally:
        await c.channel.close()


def new_id() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def run(client, roots, *args, name=None, **kw):
    """Create + start; returns the id."""
    id = new_id()
    await client.CreateContainer(
        pb.CreateContainerRequest(id=id, name=name or f"t{id[:10]}", spec=roots.spec(*args, **kw)))
    await client.StartContainer(pb.StartContainerRequest(id=id))
    return id


async def logs(client, id, **kw) -> list[stdio_pb2.OutputChunk]:
    return [e.chunk async for e in client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, tail=-1, **kw))]
