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
    # labels: every one must hold (compose's `logs` filters on its project and service labels)
    ({"label": ["com.docker.compose.project=app"]}, True),
    ({"label": ["com.docker.compose.project"]}, True),
    ({"label": ["com.docker.compose.project=app", "tier=db"]}, False),
    ({"label": ["com.docker.compose.project=other"]}, False),
    ({"scope": ["local"]}, True),
    ({"scope": ["swarm"]}, False),
    ({"daemon": ["abc"]}, False),
    # by actor id or name prefix, whatever the type (dockerd's fuzzy name match)
    ({"network": ["we"]}, True),
    ({"volume": ["vol"]}, False),
    ({"service": ["web"]}, True),
    ({"secret": ["s1"]}, False),
])
def test_matches(filters, want):
    assert matches(_event(name="web", image="busybox", **{"com.docker.compose.project": "app"}),
                   filters) is want


def test_network_and_volume_filters_match_their_resources():
    assert matches(_event("network", "connect", "n" * 64, name="app_default", container="c1"),
                   {"network": ["app_default"], "type": ["network"]})
    assert matches(_event("volume", "create", "data", driver="local"), {"volume": ["data"]})
    assert not matches(_event("volume", "create", "data", driver="local"), {"volume": ["logs"]})


def test_unknown_filters():
    assert unknown_filters({"type": [], "colour": [], "label": [], "network": [], "scope": []}) == ["colour"]


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
