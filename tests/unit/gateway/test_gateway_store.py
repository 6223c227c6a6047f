"""The gateway store: records round-trip, the event log is bounded and ordered, the cursor
moves with the events derived from it, and an old data root's containers are imported."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from services.gateway import convert
from services.gateway.backends.containers import record_from_metadata
from services.gateway.events import EventLog
from services.gateway.store import SCHEMA_VERSION, TRIM_EVERY, ContainerRecord, GatewayStore


def _record(cid="a" * 64, **kw) -> ContainerRecord:
    cfg = engine_pb2.ContainerConfig(image="busybox", cmd=["sh"],
                                     restart_policy=engine_pb2.RestartPolicy(name="always"))
    return ContainerRecord(id=cid, name="web", image="busybox", image_id="sha256:" + "1" * 64,
                           config=cfg, network_mode="bridge", **kw)


@pytest.fixture
def store(tmp_path):
    s = GatewayStore(str(tmp_path / "gateway.db"))
    yield s
    s.close()


def test_record_round_trips_with_mounts_and_restart_state(store):
    point = engine_pb2.MountPoint(type="volume", name="v", destination="/data", rw=True)
    record = _record(mounts=(point,), auto_remove=False, stop_timeout=3, restart_count=2,
                     manually_stopped=True, health='{"status": "healthy"}')
    store.put(record)
    assert store.get(record.id) == record
    assert store.all() == [record]
    store.delete(record.id)
    assert store.get(record.id) is None


def test_schema_version_is_recorded_and_a_newer_file_is_refused(tmp_path):
    path = str(tmp_path / "gateway.db")
    GatewayStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        GatewayStore(path)


def test_event_log_survives_a_restart_with_its_seqs_and_bound(tmp_path):
    path = str(tmp_path / "gateway.db")
    store = GatewayStore(path)
    log = EventLog(store, capacity=3)
    for i in range(TRIM_EVERY + 2):
        log.publish("container", "create", f"c{i}", {"name": f"n{i}"})
    store.close()

    store = GatewayStore(path)
    again = EventLog(store, capacity=3)
    last = TRIM_EVERY + 2
    assert [e.seq for e in again.snapshot()] == [last - 2, last - 1, last]
    assert again.snapshot()[-1].actor_id == f"c{last - 1}"
    # Cut back to the bound at the last multiple of TRIM_EVERY, and growing since.
    assert len(store.events()) == 3 + 2
    assert again.publish("container", "start", "new").seq == last + 1
    store.close()


async def test_subscribe_after_seq_replays_what_followed_then_stops(store):
    log = EventLog(store)
    for i in range(4):
        log.publish("container", "create", f"c{i}")
    got = [e.actor_id async for e in log.subscribe(after_seq=2, follow=False)]
    assert got == ["c2", "c3"]


def test_cursor_moves_in_the_same_transaction_as_the_events(store):
    log = EventLog(store)
    log.publish_batch([("container", "start", "c", {})], cursor=("container", 7))
    assert store.cursor("container") == 7
    # A batch that fails half-way commits none of its events and does not move the cursor.
    with pytest.raises(TypeError):
        store.append_events([(0.0, "container", "die", "c", {}),
                             (0.0, "container", "oom", "c", {"x": object()})], cursor=("container", 8))
    assert store.cursor("container") == 7
    assert [e.action for e in store.events()] == ["start"]
    store.clear_cursor("container")
    assert store.cursor("container") is None


def test_exec_rows_go_with_their_container(store):
    store.put(_record())
    store.put_exec("e1", "a" * 64, "ls -l")
    assert store.get_exec("e1") == ("a" * 64, "ls -l")
    store.delete("a" * 64)
    assert store.get_exec("e1") is None


def test_container_made_before_the_store_is_imported_from_its_metadata():
    cfg = engine_pb2.ContainerConfig(image="busybox", auto_remove=True)
    meta = convert.Metadata("busybox", "sha256:" + "2" * 64, cfg, "bridge", True, 5,
                            restart_count=1, manually_stopped=True)
    c = container_pb2.Container(id="b" * 64, name="/old", metadata=meta.encode())
    record = record_from_metadata(c)
    assert (record.name, record.image, record.image_id, record.network_mode) == (
        "old", "busybox", "sha256:" + "2" * 64, "bridge")
    assert record.auto_remove and record.stop_timeout == 5
    assert record.restart_count == 1 and record.manually_stopped
    assert record.config == cfg


async def test_memory_keeps_the_newest_events_and_the_store_the_rest(store):
    from services.gateway.events import MEMORY_TAIL
    log = EventLog(store)
    total = MEMORY_TAIL + 50
    follower = log.subscribe()
    first = asyncio.ensure_future(anext(follower))
    await asyncio.sleep(0)
    for i in range(total):   # more than memory keeps before the follower runs again
        log.publish("container", "create", f"c{i}")
    assert len(log.snapshot()) == MEMORY_TAIL
    assert (await first).actor_id == "c0"
    # The follower fell behind the memory's tail: the rest comes from the store, in order.
    rest = [(await anext(follower)).actor_id for _ in range(total - 1)]
    assert rest == [f"c{i}" for i in range(1, total)]
    await follower.aclose()
    # A reader of the past gets every retained event, not only memory's.
    got = [e.actor_id async for e in log.subscribe(since=0, follow=False)]
    assert got == [f"c{i}" for i in range(total)]
