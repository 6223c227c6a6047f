"""The follower of the container service's task events: docker's events derived in stream
order, each task event handled once across a gateway restart, a lost position reconciled."""

from __future__ import annotations

import asyncio

import pytest

from berth.container.v1 import container_pb2
from services.common import errors
from services.gateway.backends.task_events import ExecInfo, TaskEvents
from services.gateway.events import EventLog
from services.gateway.store import GatewayStore

T = container_pb2.TaskEvent


class FakeContainerService:
    """Events(after_seq) as the contract says: replay after the seq, then live; a position
    older than `pruned_before` fails with FailedPrecondition."""

    def __init__(self):
        self.log: list[container_pb2.TaskEvent] = []
        self.requests: list[container_pb2.SubscribeTaskEventsRequest] = []
        self.listed = 0
        self.pruned_before = 0
        self._changed = asyncio.Event()

    def add(self, type_, cid, **fields):
        self.log.append(T(type=type_, container_id=cid, seq=len(self.log) + 1, **fields))
        self._changed.set()
        self._changed = asyncio.Event()

    async def SubscribeTaskEvents(self, request):
        self.requests.append(request)
        if request.HasField("after_seq"):
            if request.after_seq < self.pruned_before:
                raise errors.FailedPrecondition("events after that seq were pruned")
            position = request.after_seq
        else:
            position = len(self.log)
        while True:
            while position < len(self.log):
                position += 1
                yield container_pb2.SubscribeTaskEventsResponse(event=self.log[position - 1])
            await self._changed.wait()

    async def ListContainers(self, request):
        self.listed += 1
        return container_pb2.ListContainersResponse()


class Follower:
    def __init__(self, node, store):
        self.events = EventLog(store)
        self.started, self.exited, self.reconciled = [], [], 0
        self.tasks: set[asyncio.Task] = set()

        async def reconcile(listed):
            self.reconciled += 1

        self.follower = TaskEvents(
            node, store, self.events, attributes=lambda cid: {"name": f"n-{cid}", "image": "busybox"},
            on_start=self.started.append, on_exit=self.exited.append,
            exec_info=lambda exec_id: {"e1": ExecInfo("c1", "ls", quiet=False),
                                       "probe": ExecInfo("c1", "true", quiet=True)}.get(exec_id),
            exec_ended=lambda exec_id: None, reconcile=reconcile, spawn=self.spawn)

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        return task

    def run(self):
        return self.spawn(self.follower.follow())

    async def close(self):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _until(predicate, timeout=2.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def store(tmp_path):
    s = GatewayStore(str(tmp_path / "gateway.db"))
    yield s
    s.close()


async def test_docker_events_in_stream_order_with_their_attributes(store):
    node = FakeContainerService()
    f = Follower(node, store)
    f.run()
    await _until(lambda: node.requests)
    node.add(T.TYPE_CREATE, "c1")
    node.add(T.TYPE_START, "c1")
    node.add(T.TYPE_EXEC_START, "c1", exec_id="e1")
    node.add(T.TYPE_EXEC_START, "c1", exec_id="probe")
    node.add(T.TYPE_EXEC_EXIT, "c1", exec_id="probe", exit_code=0)
    node.add(T.TYPE_EXEC_EXIT, "c1", exec_id="e1", exit_code=2)
    node.add(T.TYPE_OOM, "c1")
    node.add(T.TYPE_EXIT, "c1", exit_code=137)
    await _until(lambda: store.cursor("container") == 8)
    got = [(e.action, e.attributes.get("exitCode")) for e in f.events.snapshot()]
    assert got == [("start", None), ("exec_start: ls", None), ("exec_die", "2"), ("oom", None),
                   ("die", "137")]
    assert f.events.snapshot()[0].attributes["name"] == "n-c1"
    assert f.started == ["c1"] and f.exited == ["c1"]
    await f.close()


async def test_a_restarted_gateway_resumes_after_its_cursor_each_event_once(store):
    node = FakeContainerService()
    first = Follower(node, store)
    first.run()
    await _until(lambda: node.requests)
    node.add(T.TYPE_START, "c1")
    await _until(lambda: store.cursor("container") == 1)
    await first.close()  # the gateway goes away

    node.add(T.TYPE_EXIT, "c1", exit_code=0)  # while nobody follows
    node.add(T.TYPE_START, "c2")
    second = Follower(node, store)
    second.run()
    await _until(lambda: store.cursor("container") == 3)
    assert node.requests[-1].after_seq == 1
    actions = [(e.action, e.actor_id) for e in second.events.snapshot()]
    assert actions == [("start", "c1"), ("die", "c1"), ("start", "c2")]
    assert second.exited == ["c1"] and second.started == ["c2"]
    assert [e.seq for e in second.events.snapshot()] == [1, 2, 3]
    await second.close()


async def test_a_pruned_position_is_reconciled_by_listing_then_followed_live(store):
    node = FakeContainerService()
    for _ in range(5):
        node.add(T.TYPE_CREATE, "old")
    store.append_events([], cursor=("container", 1))
    node.pruned_before = 3
    f = Follower(node, store)
    f.run()
    await _until(lambda: len(node.requests) >= 2)
    assert node.requests[0].after_seq == 1
    assert not node.requests[1].HasField("after_seq")
    await _until(lambda: f.reconciled >= 1 and node.listed >= 1)
    node.add(T.TYPE_START, "new")
    await _until(lambda: f.started == ["new"])
    assert store.cursor("container") == 6
    await f.close()


async def test_waiting_for_ones_own_event(store):
    f = Follower(FakeContainerService(), store)
    mark = f.follower.mark("c1")
    waiter = asyncio.ensure_future(f.follower.wait("c1", "start", mark))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    f.follower.handle(T(type=T.TYPE_START, container_id="c1", seq=1))
    await asyncio.wait_for(waiter, 1)
    # An exit that came before the mark counts when the caller did not know it ran.
    f.follower.handle(T(type=T.TYPE_EXIT, container_id="c1", seq=2))
    await asyncio.wait_for(f.follower.wait("c1", "exit", f.follower.mark("c1"), running_before=False), 1)


async def test_an_execs_events_are_counted_between_its_mark_and_forget_only(store):
    f = Follower(FakeContainerService(), store)
    mark = f.follower.mark("e1")
    f.follower.handle(T(type=T.TYPE_EXEC_START, container_id="c1", exec_id="e1", seq=1))
    f.follower.handle(T(type=T.TYPE_EXEC_EXIT, container_id="c1", exec_id="e1", seq=2))
    await asyncio.wait_for(f.follower.wait("e1", "exit", mark), 1)
    f.follower.forget("e1")
    # A healthcheck's probe: its events come after its stream ended (or nobody waits on
    # them); they are handled, and leave no count behind.
    f.follower.handle(T(type=T.TYPE_EXEC_START, container_id="c1", exec_id="probe", seq=3))
    f.follower.handle(T(type=T.TYPE_EXEC_EXIT, container_id="c1", exec_id="probe", seq=4))
    f.follower.handle(T(type=T.TYPE_EXEC_EXIT, container_id="c1", exec_id="e1", seq=5))
    assert f.follower._counts == {}
