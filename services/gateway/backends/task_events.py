"""TaskEvents: the container service's ordered task events, made into docker's events.

The container service commits every task event to its own log with a `seq`
(strictly increasing) and replays what a reader missed (`Events(after_seq)`).
This follower is the only source of docker's start, die, oom, exec_start and
exec_die, so they come in the order the node committed them: a process that
exits at once still has its START before its EXIT, and no bookkeeping of
early exits is needed.

    container service ──TaskEvent(seq)──► handle ──► EventLog.publish_batch(derived,
                                                         cursor=("container", seq))   one transaction
                                                  └─► reactions: health, --rm, restart policy

The cursor (the last seq handled) is written in the same transaction as the
events derived from it, so after a crash or SIGKILL of the gateway each task
event is handled exactly once: replayed from after the cursor, never twice.
Reactions run after the commit; one that a crash cut short is caught by the
listing `reconcile` every (re)connect makes (stopped --rm containers are
removed, restart policies applied). When the position was pruned from the
node's retention (FAILED_PRECONDITION), the follower starts over from live
events and reconciles by listing.

Callers that must not answer before an event was published (start waits for
"start", stop for "die") take a `mark(id)` before their call and `wait` on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from berth.container.v1 import container_pb2
from services.common import errors

log = structlog.get_logger(__name__)

STREAM = "container"
# Reconnect delay for the container service's event stream, growing to the cap.
RETRY = (0.1, 5.0)
# How long a caller waits for its event to come through; only an outage of the
# stream makes it last that long, and then the caller goes on without it.
WAIT_SECONDS = 10.0

_T = container_pb2.TaskEvent


@dataclass(frozen=True)
class Mark:
    starts: int
    exits: int


@dataclass(frozen=True)
class ExecInfo:
    """What the exec backend knows of an exec: the command for events, and whether it is the
    engine's own (a healthcheck probe: no events)."""

    container_id: str
    cmd: str
    quiet: bool


class TaskEvents:
    """`container` is the container service client, `store` the GatewayStore (cursor),
    `events` the EventLog, `attributes(cid)` the name/image attributes of a container's
    events, `on_start(cid)` / `on_exit(cid)` the containers backend's reactions,
    `exec_info(exec_id)` / `exec_ended(exec_id)` the exec backend's, `reconcile(containers)`
    what a listing is checked with after (re)connecting."""

    def __init__(self, container, store, events, attributes: Callable[[str], dict[str, str]],
                 on_start: Callable[[str], None], on_exit: Callable[[str], None],
                 exec_info: Callable[[str], ExecInfo | None], exec_ended: Callable[[str], None],
                 reconcile: Callable[[list[container_pb2.Container]], Awaitable[None]],
                 spawn: Callable[[Awaitable], asyncio.Task]):
        self._container = container
        self._store = store
        self._events = events
        self._attributes = attributes
        self._on_start = on_start
        self._on_exit = on_exit
        self._exec_info = exec_info
        self._exec_ended = exec_ended
        self._reconcile = reconcile
        self._spawn = spawn
        # Starts and exits handled per container (or exec) id in this run, for `wait`.
        self._counts: dict[str, list[int]] = {}
        self._changed = asyncio.Event()

    # -- waiting for one's own event ------------------------------------------------------

    def mark(self, id_: str) -> Mark:
        """Where `id_`'s starts and exits stand; from here until `forget` they are counted
        (an exec's are counted only then: one nobody waits on, a healthcheck's probe whose
        events come after its stream ended, leaves nothing behind)."""
        starts, exits = self._counts.setdefault(id_, [0, 0])
        return Mark(starts, exits)

    async def wait(self, id_: str, kind: str, mark: Mark, running_before: bool = True) -> None:
        """Until a start (kind "start") or an exit ("exit") of `id_` after `mark` was published.

        For "exit" with `running_before` false (the caller does not know it was running),
        an exit handled before the mark counts too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while True:
            starts, exits = self._counts.get(id_, (0, 0))
            if kind == "start" and starts > mark.starts:
                return
            if kind == "exit" and (exits > mark.exits or (not running_before and exits >= starts)):
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                log.warning("task_event_not_seen", id=id_, kind=kind)
                return

    def running(self, cid: str) -> None:
        """A listing found `cid` running: its exit is the next event to expect."""
        counts = self._counts.setdefault(cid, [0, 0])
        if counts[0] <= counts[1]:
            counts[0] = counts[1] + 1

    def _count(self, id_: str, index: int) -> None:
        self._counts.setdefault(id_, [0, 0])[index] += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def forget(self, id_: str) -> None:
        self._counts.pop(id_, None)

    # -- the stream -----------------------------------------------------------------------

    async def follow(self) -> None:
        """Runs for the gateway's life: reconnects with the cursor after any drop."""
        delay = RETRY[0]
        quiet = False
        while True:
            after = self._store.cursor(STREAM) if self._store is not None else None
            request = container_pb2.SubscribeTaskEventsRequest()
            if after is not None:
                request.after_seq = after
            stream = self._container.SubscribeTaskEvents(request)
            rescan = self._spawn(self._list_and_reconcile())
            try:
                async for event in (reply.event async for reply in stream):
                    delay, quiet = RETRY[0], False
                    self.handle(event)
            except errors.FailedPrecondition as exc:
                # The node pruned what we had not read (or its data root is new): what
                # happened meanwhile is found by listing; from here on, live events.
                log.warning("container_events_position_lost", after_seq=after, error=exc.message)
                if self._store is not None:
                    self._store.clear_cursor(STREAM)
            except errors.BerthError as exc:
                # Said once per outage, not once per retry.
                if not quiet:
                    log.info("container_events_disconnected", error=exc.message)
                quiet = True
            except Exception:  # noqa: BLE001 - the follower must outlive any one bad stream
                log.exception("container_events_failed")
            rescan.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY[1])

    async def _list_and_reconcile(self) -> None:
        try:
            response = await self._container.ListContainers(container_pb2.ListContainersRequest())
        except errors.BerthError:
            return
        for c in response.containers:
            if c.status in (container_pb2.STATUS_RUNNING, container_pb2.STATUS_PAUSED):
                self.running(c.id)
        await self._reconcile(list(response.containers))

    def handle(self, event: container_pb2.TaskEvent) -> None:
        """One task event: derive, commit with the cursor, then react."""
        derived = self._derive(event)
        if derived:
            # An event that derives nothing does not move the cursor: replayed after a
            # restart it derives nothing again, and a commit per create or delete is saved.
            self._events.publish_batch(derived, cursor=(STREAM, event.seq) if event.seq else None)
        cid, exec_id = event.container_id, event.exec_id
        if event.type == _T.TYPE_START:
            self._count(cid, 0)
            self._on_start(cid)
        elif event.type == _T.TYPE_EXIT:
            self._count(cid, 1)
            self._on_exit(cid)
        elif event.type == _T.TYPE_EXEC_START:
            if exec_id in self._counts:
                self._count(exec_id, 0)
        elif event.type == _T.TYPE_EXEC_EXIT:
            if exec_id in self._counts:
                self._count(exec_id, 1)
            self._exec_ended(exec_id)

    def _derive(self, event: container_pb2.TaskEvent) -> list[tuple[str, str, str, dict]]:
        """Docker's events for one task event (none for create, delete, pause, resume: the
        gateway publishes those itself, after its call succeeded)."""
        cid = event.container_id
        if event.type == _T.TYPE_START:
            return [("container", "start", cid, self._attributes(cid))]
        if event.type == _T.TYPE_EXIT:
            return [("container", "die", cid, {**self._attributes(cid), "exitCode": str(event.exit_code)})]
        if event.type == _T.TYPE_OOM:
            return [("container", "oom", cid, self._attributes(cid))]
        if event.type in (_T.TYPE_EXEC_START, _T.TYPE_EXEC_EXIT):
            info = self._exec_info(event.exec_id)
            if info is None or info.quiet:
                # A healthcheck probe (or an exec no one here made): no events, as docker.
                return []
            attributes = {**self._attributes(cid), "execID": event.exec_id}
            if event.type == _T.TYPE_EXEC_START:
                return [("container", f"exec_start: {info.cmd}", cid, attributes)]
            return [("container", "exec_die", cid, {**attributes, "exitCode": str(event.exit_code)})]
        return []
