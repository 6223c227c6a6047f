"""The event log: order, filters, since/until and following."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.events import Event, EventLog, matches, unknown_filters


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _event(type_="container", action="start", actor="abc123", **attrs):
    return Event(type_, action, actor, attrs)


@pytest.mark.parametrize("filters,want", [
    ({}, True),
    ({"type": ["container"]}, True),
    ({"type": ["image"]}, False),
    ({"type": ["image", "container"]}, True),
    ({"event": ["start"]}, True),
    ({"event": ["die", "stop"]}, False),
    ({"container": ["web"]}, True),
    ({"container": ["abc"]}, True),
    ({"container": ["other"]}, False),
    ({"image": ["busybox"]}, True),
    ({"image": ["busybox:latest"]}, True),
    ({"image": ["alpine"]}, False),
    ({"type": ["container"], "event": ["die"]}, False),
])
def test_matches(filters, want):
    assert matches(_event(name="web", image="busybox"), filters) is want


def test_unknown_filters():
    assert unknown_filters({"type": [], "colour": []}) == ["colour"]


async def test_since_until_and_bounded():
    clock = Clock()
    log = EventLog(capacity=3, clock=clock)
    for i in range(5):
        clock.now = 1000.0 + i
        log.publish("container", "create", f"c{i}")
    assert [e.actor_id for e in log.snapshot()] == ["c2", "c3", "c4"]
    got = [e.actor_id async for e in log.subscribe(since=1003.0, until=1010.0, follow=False)]
    assert got == ["c3", "c4"]
    got = [e.actor_id async for e in log.subscribe(since=0, until=1003.0, follow=True)]
    assert got == ["c2", "c3"]


async def test_follow_gets_new_events_in_order_and_stops_at_until():
    log = EventLog()
    got = []

    async def reader():
        async for e in log.subscribe(filters={"event": ["die"]}):
            got.append(e.actor_id)
            if len(got) == 2:
                return

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    log.publish("container", "start", "a")
    log.publish("container", "die", "a")
    log.publish("container", "die", "b")
    await asyncio.wait_for(task, 1)
    assert got == ["a", "b"]

    # until in the near future: the follow ends by itself.
    import time
    events = [e async for e in log.subscribe(until=time.time() + 0.05)]
    assert events == []
