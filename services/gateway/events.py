"""The engine's event log: what happened, in order, for `berth events` and docker's /events.

The gateway publishes an event only after the step it reports succeeded, so a
reader never sees a container "create" that was then rolled back. The log is
bounded: old events fall off the front, like dockerd's event buffer. With a
store (services.gateway.store) every event is committed there before readers
see it, so `since` and `after_seq` reach back across a gateway restart, and
only the newest MEMORY_TAIL of the retained events are kept in memory too.

    log = EventLog(store)
    log.publish("container", "create", cid, {"name": "web", "image": "busybox"})
    async for event in log.subscribe(since=t0, until=None, filters={"type": ["container"]}):
        ...  # past events from t0 on, then new ones as they are published
    log.publish_batch([("container", "die", cid, {...})], cursor=("container", task_seq))
        # the events and how far the upstream stream was handled, in one transaction
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_CAPACITY = 10_000
# With a store, only the newest events stay in memory too, for live followers: the rest of
# the retained log is read from the store when a reader asks for the past, so a long
# workload does not grow the gateway by the whole log (~1 KiB an event; dockerd keeps 256).
MEMORY_TAIL = 256


@dataclass(frozen=True)
class Event:
    """One thing that happened. `time` is seconds since the epoch (float, ns precision lost)."""

    type: str
    action: str
    actor_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time: float = 0.0
    # Position in the log (Engine Event.seq): strictly increasing, also across restarts
    # when the log has a store; orders events published within the same clock tick.
    seq: int = 0


Filters = Mapping[str, Sequence[str]]

# Every filter the Engine API documents for /events. node, service, secret, config and
# plugin events never happen on berth (no swarm, no plugins): such a filter matches nothing
# of their kind, and only what carries that name otherwise, as in dockerd.
_KNOWN_FILTERS = ("type", "container", "event", "action", "image", "label", "network", "volume",
                  "daemon", "scope", "node", "service", "secret", "config", "plugin")
# The filters that match an event by its actor's id or name prefix, whatever its type (dockerd's
# fuzzyMatchName: `--filter network=app` also matches a container named "app...").
_FUZZY_NAME = ("network", "volume", "node", "service", "secret", "config", "plugin")
# Every berth event is a local one (docker's "swarm" scope is for cluster events).
SCOPE = "local"


def unknown_filters(filters: Filters) -> list[str]:
    return sorted(k for k in filters if k not in _KNOWN_FILTERS)


def matches(event: Event, filters: Filters) -> bool:
    """Docker's rule: values of one key are OR-ed, different keys are AND-ed (labels AND-ed too)."""
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
        elif key == "label":
            ok = all(_has_label(event.attributes, v) for v in values)
        elif key == "scope":
            ok = SCOPE in values
        elif key == "daemon":
            ok = event.type == "daemon" and _fuzzy_name(event, values)
        elif key in _FUZZY_NAME:
            ok = _fuzzy_name(event, values)
        else:
            ok = False
        if not ok:
            return False
    return True


def _has_label(attributes: Mapping[str, str], wanted: str) -> bool:
    key, eq, value = wanted.partition("=")
    return key in attributes and (not eq or attributes[key] == value)


def _fuzzy_name(event: Event, values: Sequence[str]) -> bool:
    name = event.attributes.get("name", "")
    return any(event.actor_id.startswith(v) or (name and name.startswith(v)) for v in values)


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
    """Bounded, ordered; many readers may follow it at once. `store` is a GatewayStore or None
    (memory only)."""

    def __init__(self, store=None, capacity: int = DEFAULT_CAPACITY, clock=time.time):
        self._store = store
        self._capacity = capacity
        self._events: deque[Event] = deque(maxlen=capacity if store is None else min(capacity, MEMORY_TAIL))
        self._seq = 0
        self._clock = clock
        # Replaced on every publish: waiting readers hold the old one, which is set.
        self._changed = asyncio.Event()
        if store is not None:
            self._events.extend(_from_store(store.last_events(self._events.maxlen)))
            self._seq = self._events[-1].seq if self._events else 0

    def publish(self, type_: str, action: str, actor_id: str,
                attributes: Mapping[str, str] | None = None) -> Event:
        return self.publish_batch([(type_, action, actor_id, attributes)])[-1]

    def publish_batch(self, items: Sequence[tuple[str, str, str, Mapping[str, str] | None]],
                      cursor: tuple[str, int] | None = None) -> list[Event]:
        """Publishes `items` (type, action, actor id, attributes) in order, and with a store
        commits them together with `cursor` (stream, seq) first."""
        now = self._clock()
        rows = [(now, t, a, actor, dict(attrs or {})) for t, a, actor, attrs in items]
        if self._store is not None:
            seqs = self._store.append_events(rows, cursor=cursor, keep=self._capacity)
        else:
            seqs = list(range(self._seq + 1, self._seq + 1 + len(rows)))
        published = [Event(t, a, actor, attrs, when, seq)
                     for (when, t, a, actor, attrs), seq in zip(rows, seqs)]
        if published:
            self._events.extend(published)
            self._seq = published[-1].seq
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()
        return published

    @property
    def last_seq(self) -> int:
        return self._seq

    def snapshot(self) -> list[Event]:
        return list(self._events)

    async def subscribe(self, since: float | None = None, until: float | None = None,
                        filters: Filters | None = None, follow: bool = True,
                        after_seq: int | None = None) -> AsyncIterator[Event]:
        """Events from `since` on (none of the past without it), or every retained one with a
        seq after `after_seq`, then new ones while following.

        Stops once `until` has passed; without `until`, follows until the reader goes away.
        """
        filters = filters or {}
        changed = self._changed
        last_seq = self._seq
        if since is not None or after_seq is not None:
            for event in self._retained(after_seq or 0):
                if after_seq is not None and event.seq <= after_seq:
                    continue
                if until is not None and event.time > until:
                    return
                if (since is None or event.time >= since) and matches(event, filters):
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
            for event in self._after(last_seq):
                last_seq = event.seq
                if until is not None and event.time > until:
                    return
                if matches(event, filters):
                    yield event

    def _retained(self, after_seq: int) -> list[Event]:
        """The retained events with a seq above `after_seq`, oldest first."""
        if self._store is None:
            return [e for e in self._events if e.seq > after_seq]
        # Committed before it was published, so the store holds all the memory does.
        return [e for e in _from_store(self._store.events(after_seq)) if e.seq <= self._seq]

    def _after(self, seq: int) -> list[Event]:
        """The retained events with a seq above `seq`, oldest first: read from the newest end,
        so a follower woken by one event looks at that one, not at the whole retained log;
        from the store when more came meanwhile than memory keeps."""
        if self._store is not None and self._events and self._events[0].seq > seq + 1:
            return self._retained(seq)
        newer = []
        for event in reversed(self._events):
            if event.seq <= seq:
                break
            newer.append(event)
        newer.reverse()
        return newer


def _from_store(rows) -> list[Event]:
    return [Event(e.type, e.action, e.actor_id, e.attributes, e.time, e.seq) for e in rows]
