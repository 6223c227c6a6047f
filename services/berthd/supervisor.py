"""The supervisor: berth's services as child processes, started in order, restarted when they die.

Why separate processes rather than one daemon: a crash, a leak or a stuck
event loop in one service (say, an image unpack) cannot take the others down;
each can be restarted, upgraded, traced and limited on its own; and the same
process can run on another host unchanged (see deploy/systemd/), which is how
the services will be spread later. Containers do not depend on any of them:
conmon daemonizes, so containers are never berthd's children and survive the
restart of any service or of berthd itself.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import Config

log = structlog.get_logger(__name__)

PR_SET_PDEATHSIG = 1
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
    ServiceSpec("gateway", requires=("image", "network", "volume", "container")),
)


class Supervisor:
    def __init__(self, config: Config, names: list[str]):
        self.config = config
        self.specs = [s for s in REGISTRY if s.name in names]
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.ready = {s.name: asyncio.Event() for s in self.specs}
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        os.makedirs(self.config.run_root, mode=0o700, exist_ok=True)
        os.makedirs(self.config.data_root, mode=0o700, exist_ok=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info("berthd_starting", services=[s.name for s in self.specs],
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
            proc = await self._spawn(spec.name)
            started = time.monotonic()
            ready = asyncio.create_task(self._wait_ready(spec.name, proc))
            code = await proc.wait()
            ready.cancel()
            if time.monotonic() - started > BACKOFF_RESET_AFTER:
                backoff = BACKOFF_FIRST
            log.warning("service_died", service=spec.name, pid=proc.pid,
                        exit=_describe(code), restart_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _spawn(self, name: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{name}",
            env={**os.environ, **self.config.env()},
            stdin=asyncio.subprocess.DEVNULL,
            # Own process group: a Ctrl-C on berthd's terminal must not reach
            # the services before berthd stops them in order.
            process_group=0,
            # If berthd is killed, its services go too rather than linger and
            # fight a new berthd for the sockets. Containers are unaffected.
            preexec_fn=_die_with_parent,
        )
        self.procs[name] = proc
        log.info("service_spawned", service=name, pid=proc.pid)
        return proc

    async def _wait_ready(self, name: str, proc: asyncio.subprocess.Process) -> None:
        started = time.monotonic()
        warned = False
        async with grpc.aio.insecure_channel(self.config.address(name)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while proc.returncode is None:
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        log.info("service_ready", service=name, pid=proc.pid,
                                 seconds=round(time.monotonic() - started, 2))
                        self.ready[name].set()
                        return
                except grpc.aio.AioRpcError:
                    pass
                if not warned and time.monotonic() - started > READY_WARN_AFTER:
                    log.warning("service_not_ready", service=name, pid=proc.pid,
                                seconds=READY_WARN_AFTER)
                    warned = True
                await asyncio.sleep(0.05)

    async def _stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.returncode is not None:
            return
        # Only the service's own pid: its process group is itself, and
        # containers (under conmon) are never in it.
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("service_kill", service=name, pid=proc.pid,
                        reason=f"still running {STOP_TIMEOUT:g}s after SIGTERM")
            proc.kill()
            await proc.wait()
        log.info("service_stopped", service=name, exit=_describe(proc.returncode))


def _describe(code: int | None) -> str:
    if code is None:
        return "running"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
