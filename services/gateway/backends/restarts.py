"""Restart policies: starting a container again after it exited, as docker's restart manager does.

Driven by the container service's exit events (services.gateway.backends.task_events
calls `on_exit`, in stream order, replayed exits after a gateway restart included),
and at engine start by `reconcile`. The policy lives in the container's config;
what the policy has done (restart count, whether the user stopped the container)
lives in the gateway store's container record, so it survives any restart of the engine.

    exit ──► should_restart? ──► wait (100 ms, 200 ms, ... 1 min) ──► start
                                  ▲ back to 100 ms once a run lasted 10 s

A restart is a Start of the stopped container: the container service runs a
new task for the same record, so the writable layer, network endpoint, log
(every run's output) and Created time are the container's own throughout.

`stop`, `kill` and `rm` end the policy: a pending restart is cancelled and
`manually_stopped` recorded. At engine start docker's rule holds: `always`
containers are started whatever happened, `unless-stopped` ones only when the
user did not stop them, `on-failure` ones when their last exit was a failure
with retries left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from services.common import errors

log = structlog.get_logger(__name__)

POLICIES = ("no", "on-failure", "always", "unless-stopped")
FIRST_DELAY = 0.1
MAX_DELAY = 60.0
# A run this long proves the container healthy again: the back-off starts over.
GOOD_RUN = 10.0


def parse(text: str) -> engine_pb2.RestartPolicy:
    """`--restart` as docker spells it: "no", "always", "unless-stopped", "on-failure[:N]"."""
    name, colon, count = text.partition(":")
    policy = engine_pb2.RestartPolicy(name=name)
    if colon:
        try:
            policy.maximum_retry_count = int(count)
        except ValueError:
            raise errors.InvalidArgument(f"invalid restart policy format: maximum retry count must be an integer") from None
    validate(policy)
    return policy


def validate(policy: engine_pb2.RestartPolicy, auto_remove: bool = False) -> None:
    name = policy.name or "no"
    if name not in POLICIES:
        raise errors.InvalidArgument(f"invalid restart policy '{name}'")
    if policy.maximum_retry_count < 0:
        raise errors.InvalidArgument("invalid restart policy: maximum retry count can't be negative")
    if policy.maximum_retry_count and name != "on-failure":
        raise errors.InvalidArgument(
            f"invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if auto_remove and name != "no":
        raise errors.InvalidArgument("conflicting options: cannot specify both --restart and --rm")


def should_restart(policy: engine_pb2.RestartPolicy, exit_code: int, manually_stopped: bool,
                   restart_count: int, engine_start: bool = False) -> bool:
    name = policy.name or "no"
    if name == "always":
        return engine_start or not manually_stopped
    if manually_stopped:
        return False
    if name == "unless-stopped":
        return True
    if name == "on-failure":
        limit = policy.maximum_retry_count
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False


def next_delay(previous: float, ran_for: float) -> float:
    if ran_for >= GOOD_RUN or previous <= 0:
        return FIRST_DELAY
    return min(previous * 2, MAX_DELAY)


class Restarts:
    """The restart manager of one gateway.

    `container` is the container service client, `store` the GatewayStore, `start(cid)`
    starts a stopped container again as a policy restart (the containers backend), `busy(cid)`
    says a container is being removed or is left to --rm, `spawn` runs a task the gateway owns.
    """

    def __init__(self, container, store, start: Callable[[str], Awaitable[None]],
                 busy: Callable[[str], bool], spawn: Callable[[Awaitable], asyncio.Task]):
        self._container = container
        self._store = store
        self._start = start
        self._busy = busy
        self._spawn = spawn
        self._delays: dict[str, float] = {}
        self._pending: dict[str, asyncio.Task] = {}
        # Stopped by the user in this run: an exit arriving now must not restart them.
        self._stopped: set[str] = set()
        self._engine_started = False

    def restarting(self, cid: str) -> bool:
        return cid in self._pending

    # -- what the user did ----------------------------------------------------------

    def user_stopped(self, cid: str) -> None:
        """stop/kill: cancel a pending restart and remember it across engine restarts."""
        self._stopped.add(cid)
        self._cancel(cid)
        record = self._store.get(cid)
        if (record is not None and (record.config.restart_policy.name or "no") != "no"
                and not record.manually_stopped):
            self._store.put(record.replace(manually_stopped=True))

    def user_started(self, cid: str) -> None:
        """start/restart by the user: the policy applies again, counting from zero."""
        self._stopped.discard(cid)
        self._cancel(cid)
        self._delays.pop(cid, None)
        record = self._store.get(cid)
        if record is not None and (record.manually_stopped or record.restart_count):
            self._store.put(record.replace(manually_stopped=False, restart_count=0))

    def removed(self, cid: str) -> None:
        self._cancel(cid)
        self._stopped.discard(cid)
        self._delays.pop(cid, None)

    def _cancel(self, cid: str) -> None:
        task = self._pending.pop(cid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # -- what the containers did ----------------------------------------------------

    async def on_exit(self, cid: str) -> None:
        if cid in self._stopped or cid in self._pending:
            return
        try:
            c = (await self._container.GetContainer(container_pb2.GetContainerRequest(id=cid))).container
        except errors.BerthError:
            return
        self._consider(c, engine_start=False)

    def reconcile(self, containers: list[container_pb2.Container]) -> None:
        """After (re)connecting to the container service: exits missed meanwhile, and at
        engine start docker's start-up rule."""
        engine_start, self._engine_started = not self._engine_started, True
        for c in containers:
            if c.status == container_pb2.STATUS_STOPPED and c.id not in self._stopped:
                self._consider(c, engine_start)

    def _consider(self, c: container_pb2.Container, engine_start: bool) -> None:
        if c.id in self._pending or self._busy(c.id):
            return
        if c.status != container_pb2.STATUS_STOPPED:
            return
        record = self._store.get(c.id)
        if record is None:
            return
        policy = record.config.restart_policy
        if not should_restart(policy, c.exit_code, record.manually_stopped, record.restart_count,
                              engine_start):
            return
        ran_for = 0.0
        if c.HasField("started_at") and c.HasField("finished_at"):
            ran_for = (c.finished_at.ToNanoseconds() - c.started_at.ToNanoseconds()) / 1e9
        delay = next_delay(self._delays.get(c.id, 0.0), ran_for)
        self._delays[c.id] = delay
        log.info("container_restart_scheduled", container_id=c.id, policy=policy.name,
                 delay=delay, restart_count=record.restart_count)
        self._pending[c.id] = self._spawn(self._restart_later(c.id, delay))

    async def _restart_later(self, cid: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            if cid in self._stopped or self._busy(cid):
                return
            record = self._store.get(cid)
            if record is None:
                return
            c = (await self._container.GetContainer(container_pb2.GetContainerRequest(id=cid))).container
            if c.status != container_pb2.STATUS_STOPPED:
                return
            record = record.replace(restart_count=record.restart_count + 1)
            self._store.put(record)
            # The container counts as restarting until its start was announced.
            self._pending.pop(cid, None)
            await self._start(cid)
            log.info("container_restarted", container_id=cid, restart_count=record.restart_count)
        except asyncio.CancelledError:
            raise
        except errors.NotFound:
            pass  # removed meanwhile
        except errors.BerthError as exc:
            log.warning("container_restart_failed", container_id=cid, error=exc.message)
        finally:
            if self._pending.get(cid) is asyncio.current_task():
                del self._pending[cid]
