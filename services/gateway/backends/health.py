"""Healthchecks: a command run in the container now and then, and the status it earns.

The check comes from the image's Healthcheck, overridden field by field by the
container's `--health-*` flags (`--no-healthcheck`, i.e. test ["NONE"], turns it
off). While a container runs, one monitor task per container probes it:

    start ──► "starting" ──probe ok──► "healthy" ──retries failures in a row──► "unhealthy"
               │ probes every start_interval while the start period lasts and it is
               │ still starting; failures then do not count (Docker 25 semantics)
               └─ afterwards (or once healthy) every interval

Each status change is published as a `health_status: <status>` event; the last
five probes are kept for inspect (State.Health.Log). The state is saved in the
gateway store's container record at each change of status (not at every probe: a
commit is a disk flush), so inspect shows it after a gateway restart too; a
container that starts again starts "starting" again.

Probes run as execs in the container through the container service (`run_probe`,
the exec backend's run_exec), so the gateway never enters a container itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from services.common import errors

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
KEEP_RESULTS = 5
# Docker keeps at most this much of a probe's output.
MAX_OUTPUT = 4096

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"

# (container id, argv, timeout seconds) -> (exit code, output). Raises TimeoutError on timeout.
ProbeRunner = Callable[[str, list[str], float], Awaitable[tuple[int, str]]]


@dataclass(frozen=True)
class Settings:
    argv: tuple[str, ...]
    interval: float
    timeout: float
    retries: int
    start_period: float
    start_interval: float


def _seconds(ns: int, default: float) -> float:
    return ns / 1e9 if ns > 0 else default


def settings(image_check, container_check) -> Settings | None:
    """The effective healthcheck, docker's merge: the container's fields win where set.

    Both arguments are HealthConfig-like messages (test, interval, ... in ns) or None.
    """
    def pick(name: str):
        for source in (container_check, image_check):
            if source is not None and getattr(source, name):
                return getattr(source, name)
        return 0

    test = list(pick("test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", " ".join(test[1:])]
    elif test[0] == "CMD":
        argv = test[1:]
    else:
        # An image config may give a bare command: docker treats it as a shell command.
        argv = ["/bin/sh", "-c", " ".join(test)]
    if not argv:
        return None
    return Settings(
        argv=tuple(argv), interval=_seconds(pick("interval"), DEFAULT_INTERVAL),
        timeout=_seconds(pick("timeout"), DEFAULT_TIMEOUT),
        retries=pick("retries") or DEFAULT_RETRIES,
        start_period=_seconds(pick("start_period"), 0.0),
        start_interval=_seconds(pick("start_interval"), DEFAULT_START_INTERVAL))


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


@dataclass
class State:
    status: str = STARTING
    failing_streak: int = 0
    log: deque = field(default_factory=lambda: deque(maxlen=KEEP_RESULTS))

    def to_pb(self) -> engine_pb2.Health:
        return engine_pb2.Health(status=self.status, failing_streak=self.failing_streak, log=[
            engine_pb2.HealthLog(start=_ts(s), end=_ts(e), exit_code=code, output=out)
            for s, e, code, out in self.log])

    def to_json(self) -> str:
        return json.dumps({"status": self.status, "failing_streak": self.failing_streak,
                           "log": [list(entry) for entry in self.log]})

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        state = cls(status=data["status"], failing_streak=data["failing_streak"])
        state.log.extend(tuple(entry) for entry in data["log"])
        return state


class Monitors:
    """One probing task per running container that has a healthcheck.

    `run_probe` runs a probe (the exec backend), `publish(cid, status)` announces a change,
    `spawn` runs a task the gateway owns; `container`, `store` and `image_configs` are what
    `watch` needs to find a container's effective check.
    """

    def __init__(self, run_probe: ProbeRunner, publish: Callable[[str, str], None],
                 spawn: Callable[[Awaitable], asyncio.Task], container=None, store=None,
                 image_configs=None):
        self._run_probe = run_probe
        self._publish = publish     # (container id, new status)
        self._spawn = spawn
        self._container = container
        self._store = store
        self._image_configs = image_configs
        self._states: dict[str, State] = {}
        self._tasks: dict[str, asyncio.Task] = {}

    def state(self, cid: str, record=None) -> engine_pb2.Health | None:
        """`record` is the container's store record when the caller has read it already."""
        s = self._states.get(cid)
        if s is None and self._store is not None:
            record = record if record is not None else self._store.get(cid)
            if record is not None and record.health:
                s = State.from_json(record.health)
        return s.to_pb() if s is not None else None

    def watching(self, cid: str) -> bool:
        return cid in self._tasks

    def start(self, cid: str, check: Settings | None) -> None:
        """The container started: probe it afresh (a previous monitor is replaced)."""
        self.stop(cid, forget=True)
        if check is None:
            return
        self._states[cid] = State()
        self._save(cid, self._states[cid])
        self._tasks[cid] = self._spawn(self._monitor(cid, check, self._states[cid]))

    def stop(self, cid: str, forget: bool = False) -> None:
        """The container exited (the last status stays for inspect) or was removed (forget)."""
        task = self._tasks.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if forget:
            self._states.pop(cid, None)

    def _save(self, cid: str, state: State) -> None:
        if self._store is None:
            return
        record = self._store.get(cid)
        if record is not None:
            self._store.put(record.replace(health=state.to_json()))

    async def watch(self, cid: str) -> None:
        """Start probing a container that just started (or was found running at engine start)."""
        try:
            c = (await self._container.GetContainer(container_pb2.GetContainerRequest(id=cid))).container
        except errors.BerthError:
            return
        record = self._store.get(cid)
        if c.status != container_pb2.STATUS_RUNNING or record is None:
            return
        image_check = None
        try:
            _, image_config = await self._image_configs.resolve(record.image_id)
            if image_config.HasField("healthcheck"):
                image_check = image_config.healthcheck
        except errors.BerthError:
            pass  # image removed by force: only the container's own check is left
        mine = record.config.healthcheck if record.config.HasField("healthcheck") else None
        self.start(cid, settings(image_check, mine))

    async def _monitor(self, cid: str, check: Settings, state: State) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            in_start_period = loop.time() - started < check.start_period
            # The start interval only while still "starting" in the start period (as
            # docker): once healthy it is probed at the interval.
            quick = in_start_period and state.status == STARTING
            await asyncio.sleep(check.start_interval if quick else check.interval)
            in_start_period = loop.time() - started < check.start_period
            code, output, begin, end = await self._probe(cid, check)
            state.log.append((begin, end, code, output))
            before = state.status
            if code == 0:
                state.failing_streak = 0
                state.status = HEALTHY
            elif not in_start_period:
                state.failing_streak += 1
                if state.failing_streak >= check.retries:
                    state.status = UNHEALTHY
            if state.status != before:
                self._save(cid, state)
                log.info("container_health_changed", container_id=cid, status=state.status,
                         failing_streak=state.failing_streak)
                self._publish(cid, state.status)

    async def _probe(self, cid: str, check: Settings) -> tuple[int, str, float, float]:
        begin = time.time()
        try:
            code, output = await asyncio.wait_for(
                self._run_probe(cid, list(check.argv), check.timeout), check.timeout)
        except (TimeoutError, asyncio.TimeoutError):
            code, output = -1, f"Health check exceeded timeout ({check.timeout:g}s)"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a probe that cannot run is a failed probe
            code, output = -1, str(getattr(exc, "message", exc))
        return code, output[:MAX_OUTPUT], begin, time.time()


def exec_available() -> bool:
    """Whether the container service's contract has an exec to run probes with."""
    methods = container_pb2.DESCRIPTOR.services_by_name["ContainerService"].methods_by_name
    return "ExecProcess" in methods
