"""One ordered event stream across a SIGKILL of the gateway.

A client follows the Engine's events over gRPC and, whenever the stream drops,
reconnects with `after_seq` = the last Event.seq it handled. Meanwhile a loop of
`run -d` of short containers goes on, and the gateway is SIGKILLed in the middle
of it. So that some exits certainly happen with no gateway to see them, the gateway
is frozen (SIGSTOP) before the kill until the container service reports those
containers exited: their die can only come from the container service's replay.
After the gateway is back, the client must have seen every container's create,
start and die exactly once and in that order, with seqs that only ever increase.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import pytest

from berth.container.v1 import container_pb2, container_pb2_grpc
from berth.engine.v1 import engine_pb2 as pb
from tests.support.engine import Engine
from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes

pytestmark = pytest.mark.slow

RUNS = 12
KILL_AFTER = 6


class Follower(threading.Thread):
    """Engine events, resumed with after_seq after every drop of the stream."""

    def __init__(self, engine: Engine):
        super().__init__(daemon=True)
        self._engine = engine
        self.events: list[pb.Event] = []
        self.reconnects = 0
        self._stop = threading.Event()
        self._call = None
        self.changed = threading.Condition()

    def run(self) -> None:
        last_seq = None
        filters = {"type": pb.StringList(values=["container"])}
        while not self._stop.is_set():
            request = pb.SubscribeEventsRequest(filters=filters)
            if last_seq is None:
                request.since.GetCurrentTime()
            else:
                request.after_seq = last_seq
            stub = self._engine.engine_stub()
            try:
                self._call = stub.SubscribeEvents(request)
                for event in (reply.event for reply in self._call):
                    with self.changed:
                        self.events.append(event)
                        last_seq = event.seq
                        self.changed.notify_all()
            except grpc.RpcError:
                pass
            if self._stop.is_set():
                return
            self.reconnects += 1
            time.sleep(0.1)

    def wait_for(self, predicate, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.events), timeout)

    def stop(self) -> None:
        self._stop.set()
        if self._call is not None:
            self._call.cancel()


def _wait_exited(engine: Engine, cids: list[str]) -> None:
    """Asked of the container service itself: the gateway is frozen meanwhile."""
    node = container_pb2_grpc.ContainerServiceStub(engine.channel("container"))
    for cid in cids:
        node.WaitContainer(container_pb2.WaitContainerRequest(id=cid), timeout=30)


def _restarted(engine: Engine, old_pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if engine.pid_of("gateway") != old_pid:
                break
        except Exception:  # noqa: BLE001 - between the kill and the new process
            pass
        time.sleep(0.05)
    engine.wait_serving("gateway", 30)


def test_every_start_and_die_once_and_in_order_across_a_gateway_sigkill(fresh_engine, tmp_path):
    engine = fresh_engine
    tar = rootfs_tar_bytes(make_busybox_rootfs(str(tmp_path / "rootfs")))
    engine.cli("import", "-", "busybox:latest", "-c", 'CMD ["sh"]', input=tar, check=True)

    follower = Follower(engine)
    follower.start()
    # The follower is subscribed once it sees the first event of ours.
    engine.cli("run", "-d", "--name", "warmup", "busybox:latest", "true", check=True)
    assert follower.wait_for(lambda evs: any(e.action == "die" for e in evs), 30)

    ids = []
    try:
        for i in range(RUNS):
            # Some exit at once, some while the gateway is down.
            cmd = ["true"] if i % 2 else ["sleep", "0.5"]
            ids.append(engine.cli("run", "-d", "busybox:latest", *cmd, check=True).stdout.strip())
            if i == KILL_AFTER:
                pid = engine.pid_of("gateway")
                os.kill(pid, signal.SIGSTOP)
                _wait_exited(engine, ids[-2:])
                engine.kill_service("gateway")
                _restarted(engine, pid)
        for cid in ids:
            engine.cli("wait", cid, check=True)

        def all_died(events):
            died = {e.actor_id for e in events if e.action == "die"}
            return all(cid in died for cid in ids)
        assert follower.wait_for(all_died, 30), "not every die came through"
    finally:
        follower.stop()

    assert follower.reconnects >= 1, "the stream did not drop: the gateway was not killed"
    seqs = [e.seq for e in follower.events]
    assert seqs == sorted(set(seqs)), "an event came twice or out of order"
    for cid in ids:
        actions = [e.action for e in follower.events if e.actor_id == cid]
        assert actions == ["create", "start", "die"], (cid, actions)


def test_a_run_s_events_and_its_removal_survive_a_sigkill_right_after_it(fresh_engine, tmp_path):
    """The gateway commits events and a container's removal without an fsync: a SIGKILL
    the moment `run --rm` has answered loses neither (the commit is in the page cache;
    only a machine crash could take it, and the container service's stream gives the
    task events back then)."""
    engine = fresh_engine
    tar = rootfs_tar_bytes(make_busybox_rootfs(str(tmp_path / "rootfs")))
    engine.cli("import", "-", "busybox:latest", "-c", 'CMD ["sh"]', input=tar, check=True)
    stub = engine.engine_stub()
    start = time.time()
    replies = list(stub.RunContainer(pb.RunContainerRequest(
        config=pb.ContainerConfig(image="busybox:latest", cmd=["true"], auto_remove=True), attach=True)))
    cid = replies[0].id
    assert replies[-1].exit.exit_code == 0
    pid = engine.pid_of("gateway")
    engine.kill_service("gateway")
    _restarted(engine, pid)

    request = pb.SubscribeEventsRequest(filters={"container": pb.StringList(values=[cid])})
    request.since.FromSeconds(int(start) - 1)
    request.until.FromSeconds(int(time.time()) + 1)
    actions = [reply.event.action for reply in engine.engine_stub().SubscribeEvents(request, timeout=60)]
    assert actions == ["create", "start", "die", "destroy"], actions
    listed = engine.cli("ps", "-a", "-q", "--no-trunc", check=True).stdout.split()
    assert cid not in listed
