"""Gateway backend methods the Docker Engine API needs beyond what the berth CLI uses.

A mixin of Gateway (it uses the gateway's node clients and event log), kept in its
own module so the Docker-compatible surface is in one place:

    attach(ref, logs)           output while attached, then the exit (docker attach / run)
    wait_until(ref, condition)  docker's wait conditions: not-running, next-exit, removed
    prune_containers(filters)   remove every container that is not running
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence

from berth.container.v1 import container_pb2
from services.common import errors

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")


class CompatMixin:
    async def attach(self, ref: str, logs: bool) -> AsyncIterator[object]:
        """LogChunks, then the container's WaitResponse.

        A container that has not started yet is followed from its first byte, so an
        attach made before start (what `docker run` does) loses no output; on a running
        one, `logs` asks for what it printed so far as well.
        """
        c = await self._get(ref)
        if c.status == container_pb2.STATUS_STOPPED:
            raise errors.Conflict("You cannot attach to a stopped container, start it first")
        tail = -1 if logs or c.status == container_pb2.STATUS_CREATED else 0
        async for item in self._attach(c.id, tail=tail):
            yield item

    async def wait_until(self, ref: str, condition: str) -> container_pb2.WaitResponse:
        """Docker's `/wait`: the exit status once `condition` holds.

        "removed" also waits for the container to be deleted (by --rm or by a user),
        which is how `docker run --rm` knows the engine has cleaned up.
        """
        condition = condition or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise errors.InvalidArgument(f"invalid condition: {condition!r}")
        c = await self._get(ref)
        # Subscribed before anything can happen, replaying from now, so no event slips by.
        since = time.time()
        if c.status == container_pb2.STATUS_STOPPED and condition == "next-exit":
            await self._next_event(c.id, ("die",), since)
        status = await self._container.Wait(container_pb2.WaitRequest(id=c.id))
        if condition == "removed":
            try:
                await self._container.Get(container_pb2.GetRequest(id=c.id))
            except errors.NotFound:
                return status
            await self._next_event(c.id, ("destroy",), since)
        return status

    async def _next_event(self, cid: str, actions: Sequence[str], since: float) -> None:
        async for _ in self.events.subscribe(since=since, filters={
                "type": ["container"], "container": [cid], "event": list(actions)}):
            return

    async def prune_containers(self, filters: Mapping[str, Sequence[str]]) -> list[str]:
        """Remove every container that is not running; `label` and `until` narrow it."""
        unknown = sorted(set(filters) - {"label", "until"})
        if unknown:
            raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
        label = {"label": list(filters["label"])} if filters.get("label") else {}
        until = min((_seconds(u) for u in filters.get("until", ())), default=None)
        removed = []
        for info in await self.list(True, label):
            if info.state.running:
                continue
            if until is not None and info.created.seconds >= until:
                continue
            try:
                await self.remove(info.id, force=False)
            except errors.NotFound:
                continue
            removed.append(info.id)
        return removed


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise errors.InvalidArgument(f"invalid until value: {value!r}") from None
