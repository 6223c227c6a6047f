"""The supervisor: berth's services as child processes, started in order, restarted when they die.

Why separate processes rather than one daemon: a crash, a leak or a stuck
event loop in one service (say, an image unpack) cannot take the others down;
each can be restarted, upgraded, traced and limited on its own; and the same
process can run on another host unchanged (see deploy/systemd/), which is how
the services will be spread later. Containers do not depend on any of them:
conmon daemonizes, so containers are never berthd's children and survive the
restart of any service or of berthd itself.

Why fork rather than exec: five Python processes that each import grpc,
protobuf, OpenTelemetry and the generated code cost ~165 MB of PSS; forked
from one parent that imported all of it once (and froze it out of the garbage
collector's reach) they share those pages and cost ~100 MB. That is only
correct while the parent has never started gRPC's core (no channel, no
server) and has one thread, so berthd never talks gRPC itself: the health
checks run in short-lived forked probes, and the parent checks that it is
still single-threaded before every fork (else it falls back to exec).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import structlog

from services.common.config import Config

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
STOP_TIMEOUT = 10.0
READY_WARN_AFTER = 30.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
# A service that ran this long before dying starts again from the first back-off.
BACKOFF_RESET_AFTER = 60.0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    # Services that must answer health SERVING before this one starts.
    requires: tuple[str, ...] = ()


# In start order; stopped in the reverse order.
REGISTRY = (
    ServiceSpec("image"),
    ServiceSpec("network"),
    ServiceSpec("volume"),
    ServiceSpec("container", requires=("image", "network", "volume")),
    # Like buildkitd beside containerd: runs RUN steps through the container service.
    ServiceSpec("build", requires=("image", "network", "container")),
    ServiceSpec("gateway", requires=("image", "network", "volume", "container", "build")),
    # The Kubernetes CRI: a second edge over the same node services, beside the gateway.
    ServiceSpec("cri", requires=("image", "network", "container")),
)


class Child:
    """A forked or spawned process, awaited through a pidfd (no watcher threads)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._fd = os.pidfd_open(pid)
        self._done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(self._fd, self._reap)

    def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._fd)
        os.close(self._fd)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._done.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._done)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._fd, sig)


class Supervisor:
    def __init__(self, config: Config, names: list[str], warm: bool = True):
        self.config = config
        self.specs = [s for s in REGISTRY if s.name in names]
        self.procs: dict[str, Child] = {}
        self.ready = {s.name: asyncio.Event() for s in self.specs}
        self.stopping = asyncio.Event()
        self.warm = warm and self._preload()

    def _preload(self) -> bool:
        """Import what the services import, once, so forked children share it."""
        try:
            import grpc  # noqa: F401
            from grpc_health.v1 import health_pb2_grpc  # noqa: F401
            for spec in self.specs:
                # The entry module imports all the service runs on (the
                # gateway's Docker API pulls in aiohttp); its `if __name__`
                # guard keeps the import from starting the service.
                importlib.import_module(f"services.{spec.name}.__main__")
        except Exception as exc:  # a broken service must not stop the others
            log.warning("preload_failed", error=str(exc),
                        consequence="services are started with exec")
            return False
        gc.collect()
        gc.freeze()
        return True

    async def run(self) -> int:
        os.makedirs(self.config.run_root, mode=0o700, exist_ok=True)
        os.makedirs(self.config.data_root, mode=0o700, exist_ok=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info("berthd_starting", services=[s.name for s in self.specs], warm_fork=self.warm,
                 run_root=self.config.run_root, data_root=self.config.data_root)
        runners = [asyncio.create_task(self._keep_running(s), name=s.name) for s in self.specs]
        await self.stopping.wait()
        log.info("berthd_stopping")
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        for spec in reversed(self.specs):
            await self._stop(spec.name)
        log.info("berthd_stopped")
        return 0

    async def _keep_running(self, spec: ServiceSpec) -> None:
        for dep in spec.requires:
            if dep in self.ready:
                await self.ready[dep].wait()
        backoff = BACKOFF_FIRST
        while True:
            proc = self._start(spec.name)
            started = time.monotonic()
            ready = asyncio.create_task(self._wait_ready(spec.name, proc))
            try:
                code = await proc.wait()
            finally:
                ready.cancel()
            if time.monotonic() - started > BACKOFF_RESET_AFTER:
                backoff = BACKOFF_FIRST
            log.warning("service_died", service=spec.name, pid=proc.pid,
                        exit=_describe(code), restart_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _start(self, name: str) -> Child:
        proc = self._run_child(_serve, name)
        self.procs[name] = proc
        log.info("service_spawned", service=name, pid=proc.pid)
        return proc

    def _run_child(self, target, name: str) -> Child:
        env = {**os.environ, **self.config.env()}
        if not (self.warm and threading.active_count() == 1):
            if self.warm:
                log.warning("warm_fork_disabled", reason="berthd is no longer single-threaded")
                self.warm = False
            return self._exec_child(target, name, env)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _become_child(env, "probe" if target is _probe else name)
                code = target(name, self.config)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        return Child(pid)

    def _exec_child(self, target, name: str, env: dict[str, str]) -> Child:
        argv = [sys.executable, "-m", f"services.{name}"] if target is _serve else \
            [sys.executable, "-m", "services.berthd.probe", self.config.local_address(name)]
        popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, process_group=0,
                                 preexec_fn=_die_with_parent)
        # The Popen object is dropped: Child reaps the pid itself.
        popen.returncode = 0
        return Child(popen.pid)

    async def _wait_ready(self, name: str, proc: Child) -> None:
        started = time.monotonic()
        warned = False
        while proc.returncode is None:
            probe = self._run_child(_probe, name)
            try:
                code = await probe.wait()
            except asyncio.CancelledError:
                probe.send_signal(signal.SIGKILL)
                await probe.wait()
                raise
            if code == 0:
                log.info("service_ready", service=name, pid=proc.pid,
                         seconds=round(time.monotonic() - started, 2))
                self.ready[name].set()
                return
            if not warned and time.monotonic() - started > READY_WARN_AFTER:
                log.warning("service_not_ready", service=name, pid=proc.pid,
                            seconds=READY_WARN_AFTER)
                warned = True

    async def _stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.returncode is not None:
            return
        # Only the service's own pid: containers (under conmon) are never its children.
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("service_kill", service=name, pid=proc.pid,
                        reason=f"still running {STOP_TIMEOUT:g}s after SIGTERM")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        log.info("service_stopped", service=name, exit=_describe(proc.returncode))


def _become_child(env: dict[str, str], title: str) -> None:
    """Undo what a forked child inherited from berthd's event loop and signals."""
    # Forked children keep berthd's argv; the name tells them apart in ps and top.
    _libc().prctl(PR_SET_NAME, f"berth-{title}".encode()[:15], 0, 0, 0)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop_policy(None)
    os.setpgid(0, 0)
    _die_with_parent()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.environ.clear()
    os.environ.update(env)
    # The preloaded objects stay frozen: a full collection in the child would
    # touch every one of them and copy the pages the fork shares.


def _serve(name: str, config: Config) -> int:
    # The preloaded entry module's `build`, called, rather than the module run
    # again as __main__ with runpy: that executes a second copy of a module
    # berthd already holds (runpy's RuntimeWarning) and shares none of it.
    from services.common.process import run_service
    run_service(name, importlib.import_module(f"services.{name}.__main__").build)
    return 0


def _probe(name: str, config: Config) -> int:
    from services.berthd.probe import check
    return check(config.local_address(name))


def _describe(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _die_with_parent() -> None:
    # If berthd is killed, its services go too rather than linger and fight a
    # new berthd for the sockets. Containers are unaffected.
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _libc():
    return ctypes.CDLL(None, use_errno=True)
