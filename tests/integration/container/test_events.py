"""The task event stream: one order (seq) committed to the service's own log, replay from a
seq, and the same history across restarts and SIGKILLs of the service."""

from __future__ import annotations

import asyncio
import os
import select
import sqlite3

import pytest

from berth.container.v1 import container_pb2 as pb
from berth.types.v1 import mount_pb2
from services.common import errors
from tests.integration.container.conftest import ServiceProcess, conmon_pids, new_id, run

T = pb.TaskEvent


async def take(client, n: int, after_seq: int | None = None, timeout: float = 15.0) -> list[pb.TaskEvent]:
    """The first n events of Events(after_seq), waiting for each as it comes."""
    req = pb.SubscribeTaskEventsRequest() if after_seq is None else pb.SubscribeTaskEventsRequest(
        after_seq=after_seq)
    stream = client.SubscribeTaskEvents(req)
    try:
        return [(await asyncio.wait_for(anext(stream), timeout)).event for _ in range(n)]
    finally:
        await stream.aclose()


async def history(client, marker: int, count: int = 1) -> list[pb.TaskEvent]:
    """The log from its first event through the count-th event of type `marker`: the test
    commits such a marker last, so the read knows where the log ends."""
    out: list[pb.TaskEvent] = []
    stream = client.SubscribeTaskEvents(pb.SubscribeTaskEventsRequest(after_seq=0))
    try:
        while count:
            out.append((await asyncio.wait_for(anext(stream), 15)).event)
            count -= out[-1].type == marker
        return out
    finally:
        await stream.aclose()


def by_container(events, cid):
    return [(e.type, e.exit_code) for e in events if e.container_id == cid]


def read_pid(roots, cid: str, name: str) -> int:
    with open(os.path.join(roots.data_root, "container", "bundles", cid, name)) as f:
        return int(f.read())


def touch_in(roots, cid: str, path: str) -> None:
    """Makes a file inside a running container, seen through its process's root."""
    open(f"/proc/{read_pid(roots, cid, 'pidfile')}/root{path}", "w").close()


def wait_gone(pid: int) -> None:
    """Waits for a process (a monitor, while the service is down) to exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return   # gone and reaped already (the service reaps its monitors at once)
    try:
        assert select.select([fd], [], [], 15)[0], f"process {pid} still runs"
    finally:
        os.close(fd)


async def test_instant_exit_is_announced_after_its_start(client, roots):
    ids = []
    for i in range(40):  # without the hold on exits, one in about 20 came out EXIT first
        # `true` exits as soon as runc start lets it run: the exit races the start reply.
        ids.append(await run(client, roots, "true", name=f"instant{i}"))
    for id in ids:
        assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 0
    events = await take(client, 3 * len(ids), after_seq=0)
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1
    for id in ids:
        assert by_container(events, id) == [(T.TYPE_CREATE, 0), (T.TYPE_START, 0), (T.TYPE_EXIT, 0)]
    for id in ids:
        await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_replay_after_a_seq_runs_into_live_without_gap_or_duplicate(client, roots):
    a = await run(client, roots, "sh", "-c", "exit 3", name="a")
    await client.WaitContainer(pb.WaitContainerRequest(id=a))
    first = await take(client, 3, after_seq=0)
    assert [e.type for e in first] == [T.TYPE_CREATE, T.TYPE_START, T.TYPE_EXIT]
    assert first[2].exit_code == 3

    stream = client.SubscribeTaskEvents(pb.SubscribeTaskEventsRequest(after_seq=first[0].seq))
    try:
        replayed = [(await asyncio.wait_for(anext(stream), 60)).event for _ in range(2)]
        assert [(e.seq, e.type) for e in replayed] == [(e.seq, e.type) for e in first[1:]]
        # Now live: a second container's events follow on the same stream.
        b = await run(client, roots, "sh", "-c", "exit 4", name="b")
        live = [(await asyncio.wait_for(anext(stream), 60)).event for _ in range(3)]
    finally:
        await stream.aclose()
    assert by_container(live, b) == [(T.TYPE_CREATE, 0), (T.TYPE_START, 0), (T.TYPE_EXIT, 4)]
    assert [e.seq for e in live] == list(range(first[2].seq + 1, first[2].seq + 4))

    # Without after_seq: live only, nothing of the past.
    stream = client.SubscribeTaskEvents(pb.SubscribeTaskEventsRequest())
    try:
        pending = asyncio.ensure_future(anext(stream))
        await client.RemoveContainer(pb.RemoveContainerRequest(id=a))
        got = (await asyncio.wait_for(pending, 60)).event
    finally:
        await stream.aclose()
    assert (got.type, got.container_id, got.seq) == (T.TYPE_DELETE, a, live[-1].seq + 1)
    await client.RemoveContainer(pb.RemoveContainerRequest(id=b))


async def test_exec_start_precedes_its_exit(client, roots):
    cid = await run(client, roots, "sleep", "1000", name="host")
    exec_ids = []
    for code in (0, 7, 0):
        exec_id = new_id()
        exec_ids.append(exec_id)

        async def requests():
            yield pb.ExecProcessRequest(start=pb.ExecStart(
                container_id=cid, exec_id=exec_id,
                process=pb.Process(args=["sh", "-c", f"exit {code}"])))
        replies = [r async for r in client.ExecProcess(requests())]
        assert replies[-1].exit_code == code
    events = [e for e in await take(client, 2 + 2 * len(exec_ids), after_seq=0)
              if e.type in (T.TYPE_EXEC_START, T.TYPE_EXEC_EXIT)]
    assert [(e.exec_id, e.type, e.exit_code) for e in events] == [
        (x, t, c) for x, c in zip(exec_ids, (0, 7, 0))
        for t, c in ((T.TYPE_EXEC_START, 0), (T.TYPE_EXEC_EXIT, c))]
    assert all(e.container_id == cid for e in events)
    await client.RemoveContainer(pb.RemoveContainerRequest(id=cid, force=True))


async def test_events_survive_sigkill_and_exits_while_down_are_committed_once(roots, service):
    client = service.client()
    spec = roots.spec("sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; exit 5")
    waiter = new_id()
    await client.CreateContainer(pb.CreateContainerRequest(id=waiter, name="waiter", spec=spec))
    await client.StartContainer(pb.StartContainerRequest(id=waiter))
    before = await take(client, 2, after_seq=0)
    await client.channel.close()

    service.kill9()
    # While the service is down the container exits on its own; conmon records it.
    touch_in(roots, waiter, "/go")
    wait_gone(read_pid(roots, waiter, "conmon.pid"))
    assert conmon_pids(roots.data_root) == []

    restarted = ServiceProcess(roots.run_root, roots.data_root).start()
    client = restarted.client()
    try:
        after = await take(client, 1, after_seq=before[-1].seq)
        assert [(e.type, e.container_id, e.exit_code) for e in after] == [(T.TYPE_EXIT, waiter, 5)]
        assert after[0].seq > before[-1].seq
    finally:
        await client.channel.close()
        restarted.stop()

    # Another restart finds the exit already committed: nothing new in the log.
    again = ServiceProcess(roots.run_root, roots.data_root).start()
    client = again.client()
    try:
        await client.RemoveContainer(pb.RemoveContainerRequest(id=waiter))
        log = await history(client, T.TYPE_DELETE)
        # The exit once, and new events go on from the old seq.
        assert [(e.seq, e.type) for e in log] == [(e.seq, e.type) for e in before + after] + [
            (after[0].seq + 1, T.TYPE_DELETE)]
    finally:
        await client.channel.close()
        again.stop()


async def test_exec_exit_while_down_is_committed_once(roots, service):
    client = service.client()
    cid = await run(client, roots, "sleep", "1000", name="host")
    exec_id = new_id()

    async def requests():
        yield pb.ExecProcessRequest(start=pb.ExecStart(
            container_id=cid, exec_id=exec_id, detach=True,
            process=pb.Process(args=["sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; exit 9"])))
    assert [r.WhichOneof("msg") async for r in client.ExecProcess(requests())] == ["started"]
    before = await take(client, 3, after_seq=0)
    assert before[-1].type == T.TYPE_EXEC_START
    await client.channel.close()

    service.kill9()
    # The exec runs in the container: its /go is the container's.
    touch_in(roots, cid, "/go")
    wait_gone(read_pid(roots, cid, f"exec/{exec_id}/conmon.pid"))

    for restart in (1, 2):
        svc = ServiceProcess(roots.run_root, roots.data_root).start()
        client = svc.client()
        try:
            await client.PauseContainer(pb.PauseContainerRequest(id=cid))
            await client.ResumeContainer(pb.ResumeContainerRequest(id=cid))
            log = await history(client, T.TYPE_PAUSE, count=restart)
        finally:
            await client.channel.close()
            svc.stop()
        # Committed by the first restart, not again by the second.
        assert [(e.type, e.exec_id, e.exit_code) for e in log[3:]] == [
            (T.TYPE_EXEC_EXIT, exec_id, 9), (T.TYPE_PAUSE, "", 0), (T.TYPE_RESUME, "", 0),
            (T.TYPE_PAUSE, "", 0)][:2 + 2 * (restart - 1)]

    svc = ServiceProcess(roots.run_root, roots.data_root).start()
    client = svc.client()
    try:
        await client.RemoveContainer(pb.RemoveContainerRequest(id=cid, force=True))
    finally:
        await client.channel.close()
        svc.stop()


async def test_pruned_position_and_old_data_root(roots, service):
    client = service.client()
    ids = [await run(client, roots, "true", name=f"p{i}") for i in range(2)]
    for id in ids:
        await client.WaitContainer(pb.WaitContainerRequest(id=id))
    await take(client, 6, after_seq=0)
    await client.channel.close()
    service.stop()

    # Pruning as retention does it: the oldest rows go, their seqs are never given again.
    db_path = os.path.join(roots.data_root, "container", "containers.db")
    db = sqlite3.connect(db_path)
    db.execute("DELETE FROM events WHERE seq <= 3")
    db.commit()
    db.close()
    svc = ServiceProcess(roots.run_root, roots.data_root).start()
    client = svc.client()
    try:
        with pytest.raises(errors.FailedPrecondition,
                           match="events after 1 were pruned; the oldest retained event is 4"):
            await take(client, 1, after_seq=1)
        with pytest.raises(errors.FailedPrecondition, match="ahead of the newest event 6"):
            await take(client, 1, after_seq=7)
        # Right at the edge of retention nothing was missed: it replays.
        assert [e.seq for e in await take(client, 3, after_seq=3)] == [4, 5, 6]
    finally:
        await client.channel.close()
        svc.stop()

    # A data root from before the event log: the tables are made on start, seq begins at 1.
    db = sqlite3.connect(db_path)
    db.execute("DROP TABLE events")
    db.execute("DROP TABLE execs")
    db.execute("DELETE FROM sqlite_sequence")
    db.commit()
    db.close()
    svc = ServiceProcess(roots.run_root, roots.data_root).start()
    client = svc.client()
    try:
        assert len((await client.ListContainers(pb.ListContainersRequest())).containers) == 2
        for id in ids:
            await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
        assert [(e.type, e.seq) for e in await take(client, 2, after_seq=0)] == [
            (T.TYPE_DELETE, 1), (T.TYPE_DELETE, 2)]
    finally:
        await client.channel.close()
        svc.stop()


async def test_bind_source_is_made_where_it_is_mounted(client, roots):
    missing = os.path.join(roots.base, "binds", "made", "here")
    spec = roots.spec("sh", "-c", "test -d /mnt/b && touch /mnt/b/seen",
                      mounts=[mount_pb2.Mount(type="bind", source=missing, target="/mnt/b",
                                              options=["rbind", "rw", "rprivate"], create_source=True)])
    id = new_id()
    await client.CreateContainer(pb.CreateContainerRequest(id=id, name="binder", spec=spec))
    assert os.path.isdir(missing) and oct(os.stat(missing).st_mode & 0o777) == "0o755"
    await client.StartContainer(pb.StartContainerRequest(id=id))
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 0
    assert os.path.exists(os.path.join(missing, "seen"))
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))

    # Through a symlink: the resolved path is the one mounted.
    link = os.path.join(roots.base, "binds", "link")
    os.symlink(missing, link)
    spec = roots.spec("test", "-e", "/mnt/b/seen",
                      mounts=[mount_pb2.Mount(type="bind", source=link, target="/mnt/b",
                                              options=["rbind", "ro", "rprivate"])])
    id = new_id()
    created = (
        await client.CreateContainer(pb.CreateContainerRequest(id=id, name="linked", spec=spec))).container
    assert [m.source for m in created.spec.mounts] == [missing]
    await client.StartContainer(pb.StartContainerRequest(id=id))
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 0
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_missing_bind_source_is_refused_and_changes_nothing(client, roots):
    missing = os.path.join(roots.base, "nope")
    spec = roots.spec("true", mounts=[mount_pb2.Mount(type="bind", source=missing, target="/x",
                                                      options=["rbind", "rw", "rprivate"])])
    with pytest.raises(errors.InvalidArgument) as exc:
        await client.CreateContainer(pb.CreateContainerRequest(id=new_id(), name="nobind", spec=spec))
    assert exc.value.message == f'invalid mount config for type "bind": bind source path does not exist: {missing}'
    assert not os.path.lexists(missing)
    assert (await client.ListContainers(pb.ListContainersRequest())).containers == []
    bundles = os.path.join(roots.data_root, "container", "bundles")
    assert not os.path.isdir(bundles) or os.listdir(bundles) == []
