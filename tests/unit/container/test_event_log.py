"""The broker reads subscribers' events from the store's log: replay and live are one order."""

from __future__ import annotations

import asyncio

import pytest

from services.common import errors
from services.container import store as store_mod
from services.container.events import Broker
from services.container.model import Event, EventType
from services.container.store import ContainerStore


def commit(store, broker, n=1):
    for _ in range(n):
        broker.publish(store.append(Event(EventType.PAUSE, "c", 0.0)))


async def test_replay_then_live_has_no_gap_and_no_duplicate(tmp_path, monkeypatch):
    monkeypatch.setattr("services.container.events.PAGE", 3)
    store = ContainerStore(str(tmp_path / "c.db"))
    broker = Broker(store)
    commit(store, broker, 7)
    seen = []

    async def reader():
        async for e in broker.subscribe(after_seq=2):
            seen.append(e.seq)
            if e.seq == 4:
                # Commits while the replay is still paging.
                commit(store, broker, 2)
            if e.seq == 12:
                return
    task = asyncio.ensure_future(reader())
    while len(seen) < 7:
        await asyncio.sleep(0)
    commit(store, broker, 3)
    await asyncio.wait_for(task, 5)
    assert seen == list(range(3, 13))


async def test_live_only_starts_after_the_newest_event(tmp_path):
    store = ContainerStore(str(tmp_path / "c.db"))
    broker = Broker(store)
    commit(store, broker, 2)
    stream = broker.subscribe()
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    commit(store, broker)
    assert (await asyncio.wait_for(first, 5)).seq == 3
    await stream.aclose()


async def test_a_reader_overtaken_by_pruning_is_told(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "EVENT_RETENTION", 2)
    monkeypatch.setattr(store_mod, "PRUNE_EVERY", 1)
    monkeypatch.setattr("services.container.events.PAGE", 1)
    store = ContainerStore(str(tmp_path / "c.db"))
    broker = Broker(store)
    commit(store, broker)
    stream = broker.subscribe(after_seq=0)
    assert (await anext(stream)).seq == 1
    commit(store, broker, 5)
    with pytest.raises(errors.FailedPrecondition, match="events after 1 were pruned"):
        await anext(stream)
