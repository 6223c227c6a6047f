"""The engine's event log: what happened, in order, kept in memory for `berth events`.

The gateway publishes an event only after the step it reports succeeded, so a
reader never sees a container "create" that was then rolled back. The log is
bounded: old events fall off the front, like dockerd's in-memory event buffer.

    log = EventLog()
    log.publish("container", "create", cid, {"name": "web", "image": "busybox"})
    async for event in log.subscribe(since=t0, until=None, filters={"type": ["container"]}):
        ...  # past events from t0 on, then new ones as they are published
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True)
class Event:
    """One thing that happened. `time` is seconds since the epoch (float, ns precision lost)."""

    type: str
    action: str
    actor_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time: float = 0.0
    # Position in the log; orders events published within the same clock tick.
    seq: int = 0


Filters = Mapping[str, Sequence[str]]

_KNOWN_FILTERS = ("type", "container", "event", "action", "image")


def unknown_filters(filters: Filters) -> list[str]:
    return sorted(k for k in filters if k not in _KNOWN_FILTERS)


def matches(event: Event, filters: Filters) -> bool:
    """Docker's rule: values of one key are OR-ed, different keys are AND-ed."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "type":
            ok = event.type in values
        elif key in ("event", "action"):
            # "exec_start: sh" style actions match on their first word too, as docker does.
            ok = event.action in values or event.action.split(":")[0] in values
        elif key == "container":
            ok = event.type == "container" and any(
                v == event.attributes.get("name") or (len(v) >= 1 and event.actor_id.startswith(v))
                for v in values)
        elif key == "image":
            image = event.attributes.get("image", "")
            ok = any(_same_image(v, image, event) for v in values)
        else:
            ok = False
        if not ok:
            return False
    return True


def _same_image(wanted: str, image: str, event: Event) -> bool:
    if event.type == "image":
        name = event.attributes.get("name", "")
        return (wanted in (name, event.actor_id) or event.actor_id.startswith(wanted)
                or event.actor_id.removeprefix("sha256:").startswith(wanted)
                or _strip_latest(name) == _strip_latest(wanted))
    return wanted == image or _strip_latest(wanted) == _strip_latest(image)


def _strip_latest(name: str) -> str:
    return name.removesuffix(":latest")


class EventLog:
    """Bounded, ordered, in-memory; many readers may follow it at once."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, clock=time.time):
        self._events: deque[Event] = deque(maxlen=capacity)
        self._seq = 0
        self._clock = clock
        # Replaced on every publish: waiting readers hold the old one, which is set.
        self._changed = asyncio.Event()

    def publish(self, type_: str, action: str, actor_id: str,
                attributes: Mapping[str, str] | None = None) -> Event:
        self._seq += 1
        event = Event(type_, action, actor_id, dict(attributes or {}), self._clock(), self._seq)
        self._events.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return event

    def snapshot(self) -> list[Event]:
        return list(self._events)

    async def subscribe(self, since: float | None = None, until: float | None = None,
                        filters: Filters | None = None, follow: bool = True) -> AsyncIterator[Event]:
        """Events from `since` on (none of the past without it), then new ones while following.

        Stops once `until` has passed; without `until`, follows until the reader goes away.
        """
        filters = filters or {}
        changed = self._changed
        last_seq = self._seq
        if since is not None:
            for event in list(self._events):
                if until is not None and event.time > until:
                    return
                if event.time >= since and matches(event, filters):
                    yield event
        if not follow or (until is not None and until <= self._clock()):
            return
        while True:
            timeout = None if until is None else max(0.0, until - self._clock())
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except TimeoutError:
                return
            changed = self._changed
            for event in list(self._events):
                if event.seq <= last_seq:
                    continue
                last_seq = event.seq
                if until is not None and event.time > until:
                    return
                if matches(event, filters):
                    yield event
