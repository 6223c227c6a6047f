"""A throwaway Docker engine, for the benches' side-by-side columns.

    with throwaway_dockerd() as dockerd:     # None when docker/dockerd is not installed
        if dockerd:
            dockerd.cli("import", tar, "berth-bench-busybox:latest")
            subprocess.run(["docker", "ps"], env=dockerd.env)

It is Debian's dockerd on roots of its own under /tmp (data, exec, pid file, a unix socket
there), with no bridge and no iptables rules, so it shares nothing with the host's networking
or with another engine; `stop` removes its containers, stops it and deletes the roots. The
docker CLI reaches it with `-H dockerd.host` or the environment `dockerd.env`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time


class PrivateDockerd:
    """dockerd on its own roots; `start` waits until it answers, `stop` leaves nothing behind."""

    def __init__(self):
        self.root = ""
        self.proc: subprocess.Popen | None = None

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
        with open(os.path.join(self.root, "dockerd.log"), "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "--data-root", f"{self.root}/data", "--exec-root", f"{self.root}/exec",
                 "--pidfile", f"{self.root}/dockerd.pid", "-H", self.host, "--bridge", "none",
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
        if self.root:
            # Its overlay mounts go with it; whatever is left under the roots is plain files.
            subprocess.run(["umount", "-R", "-l", self.root], capture_output=True)
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = ""


@contextlib.contextmanager
def throwaway_dockerd():
    """A started PrivateDockerd, stopped at the end; None when it is not installed or would not
    start (the benches then print their docker column empty, saying why)."""
    if not PrivateDockerd.installed():
        yield None
        return
    dockerd = PrivateDockerd()
    try:
        dockerd.start()
    except RuntimeError:
        yield None
        return
    try:
        yield dockerd
    finally:
        dockerd.stop()
