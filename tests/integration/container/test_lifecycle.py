"""Container lifecycle against real runc, conmon and overlay mounts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest

from berth.container.v1 import container_pb2 as pb
from berth.types.v1 import stdio_pb2
from services.common import errors
from tests.integration.container.conftest import logs, new_id, run


async def test_echo_output_split_by_stream_and_exit_code(client, roots):
    id = await run(client, roots, "sh", "-c", "echo out; echo err >&2; printf partial; exit 3")
    w = await client.WaitContainer(pb.WaitContainerRequest(id=id))
    assert w.exit_code == 3 and not w.oom_killed
    entries = await logs(client, id)
    got = sorted((e.stream, e.data) for e in entries)
    assert got == [(stdio_pb2.OUTPUT_STREAM_STDOUT, b"out\n"), (stdio_pb2.OUTPUT_STREAM_STDOUT, b"partial"),
                   (stdio_pb2.OUTPUT_STREAM_STDERR, b"err\n")]
    only_err = await logs(client, id, stderr=True)
    assert [e.data for e in only_err] == [b"err\n"]
    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    assert c.status == pb.STATUS_STOPPED and c.exit_code == 3 and c.finished_at.seconds > 0
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
    with pytest.raises(errors.NotFound, match=f"No such container: {id}"):
        await client.GetContainer(pb.GetContainerRequest(id=id))


async def test_pid1_hostname_and_user_are_the_containers_own(client, roots):
    id = await run(client, roots, "sh", "-c", "echo $$; hostname; id -u; id -g; echo $HOME",
                   hostname="box1")
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 0
    assert [e.data for e in await logs(client, id)] == [b"1\n", b"box1\n", b"0\n", b"0\n", b"/root\n"]

    spec = roots.spec("sh", "-c", "id -u; id -g; echo $HOME")
    spec.process.user = "app"
    uid = new_id()
    await client.CreateContainer(pb.CreateContainerRequest(id=uid, name="u1", spec=spec))
    await client.StartContainer(pb.StartContainerRequest(id=uid))
    await client.WaitContainer(pb.WaitContainerRequest(id=uid))
    assert [e.data for e in await logs(client, uid)] == [b"1000\n", b"1000\n", b"/home/app\n"]


async def test_network_namespace_is_joined(client, roots):
    ns = f"bc-{os.getpid()}-{int(time.time() * 1000) % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        want = os.stat(f"/run/netns/{ns}").st_ino
        id = await run(client, roots, "ls", "-l", "/proc/self/ns/net", netns_path=f"/run/netns/{ns}")
        await client.WaitContainer(pb.WaitContainerRequest(id=id))
        out = b"".join(e.data for e in await logs(client, id))
        assert f"net:[{want}]".encode() in out
        await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
        # Empty netns_path shares the host's network.
        host = os.stat("/proc/self/ns/net").st_ino
        id = await run(client, roots, "ls", "-l", "/proc/self/ns/net")
        await client.WaitContainer(pb.WaitContainerRequest(id=id))
        out = b"".join(e.data for e in await logs(client, id))
        assert f"net:[{host}]".encode() in out
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


async def test_memory_limit_reports_oom(client, roots):
    events = client.SubscribeTaskEvents(pb.SubscribeTaskEventsRequest())
    seen: list[pb.TaskEvent] = []

    async def collect():
        async for ev in (reply.event async for reply in events):
            seen.append(ev)
    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.05)
    id = await run(client, roots, "sh", "-c",
                   'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo ${#x}',
                   resources=pb.Resources(memory_bytes=8 * 1024 * 1024))
    w = await client.WaitContainer(pb.WaitContainerRequest(id=id))
    assert (w.exit_code, w.oom_killed) == (137, True)
    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    assert c.oom_killed and c.exit_code == 137
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
    await asyncio.sleep(0.05)
    collector.cancel()
    types = [e.type for e in seen if e.container_id == id]
    assert types == [pb.TaskEvent.TYPE_CREATE, pb.TaskEvent.TYPE_START, pb.TaskEvent.TYPE_OOM,
                     pb.TaskEvent.TYPE_EXIT, pb.TaskEvent.TYPE_DELETE]


async def test_stop_kills_after_timeout_when_sigterm_is_ignored(client, roots):
    id = await run(client, roots, "sh", "-c", 'trap "" TERM; while true; do sleep 0.1; done')
    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    assert c.status == pb.STATUS_RUNNING and c.pid > 0
    t = time.monotonic()
    c = (await client.StopContainer(pb.StopContainerRequest(id=id, timeout_seconds=1))).container
    took = time.monotonic() - t
    assert c.status == pb.STATUS_STOPPED and c.exit_code == 137
    assert 0.9 < took < 5


async def test_stop_uses_the_spec_stop_signal(client, roots):
    id = await run(client, roots, "sh", "-c", 'trap "exit 7" USR2; while true; do sleep 0.1; done',
                   stop_signal="SIGUSR2")
    await asyncio.sleep(0.2)
    t = time.monotonic()
    c = (await client.StopContainer(pb.StopContainerRequest(id=id, timeout_seconds=10))).container
    assert c.exit_code == 7 and time.monotonic() - t < 3


@pytest.mark.parametrize("sig", ["USR1", "SIGUSR1", "10"])
async def test_kill_with_named_or_numbered_signal(client, roots, sig):
    id = await run(client, roots, "sh", "-c", 'trap "exit 42" USR1; while true; do sleep 0.1; done')
    await asyncio.sleep(0.2)
    await client.KillContainer(pb.KillContainerRequest(id=id, signal=sig))
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 42


async def test_rm_force_of_running_container_leaves_nothing(client, roots):
    from tests.integration.container.conftest import cgroup_dirs, conmon_pids, mounts_under
    id = await run(client, roots, "sleep", "1000", name="web")
    assert cgroup_dirs({id}) > 0
    with pytest.raises(errors.FailedPrecondition) as exc:
        await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
    assert exc.value.message == ('cannot remove container "/web": container is running: '
                                 "stop the container before removing or force remove")
    await client.RemoveContainer(pb.RemoveContainerRequest(id="/web", force=True))
    assert mounts_under(roots.data_root) == 0
    assert conmon_pids(roots.data_root) == []
    assert cgroup_dirs({id}) == 0
    assert os.listdir(os.path.join(roots.run_root, "runc")) == []
    assert os.listdir(os.path.join(roots.data_root, "container", "bundles")) == []
    assert (await client.ListContainers(pb.ListContainersRequest())).containers == []


async def test_bad_input_changes_nothing(client, roots):
    from tests.integration.container.conftest import mounts_under
    id = await run(client, roots, "sleep", "1000", name="web")
    before = (await client.ListContainers(pb.ListContainersRequest())).containers
    mounts = mounts_under(roots.data_root)

    with pytest.raises(errors.InvalidArgument) as exc:
        await client.CreateContainer(
            pb.CreateContainerRequest(id=new_id(), name="a/b", spec=roots.spec("true")))
    assert exc.value.message == 'Invalid container name ("a/b"), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed'
    with pytest.raises(errors.AlreadyExists) as exc:
        await client.CreateContainer(
            pb.CreateContainerRequest(id=new_id(), name="web", spec=roots.spec("true")))
    assert exc.value.message == (
        f'Conflict. The container name "/web" is already in use by container "{id}". '
        "You have to remove (or rename) that container to be able to reuse that name.")
    with pytest.raises(errors.InvalidArgument, match="no command specified"):
        await client.CreateContainer(pb.CreateContainerRequest(id=new_id(), name="x", spec=roots.spec()))
    with pytest.raises(errors.InvalidArgument, match="invalid container id"):
        await client.CreateContainer(pb.CreateContainerRequest(id="ABC", name="x", spec=roots.spec("true")))
    with pytest.raises(errors.NotFound, match="No such container: nosuch"):
        await client.GetContainer(pb.GetContainerRequest(id="nosuch"))
    with pytest.raises(errors.NotFound):
        await client.RemoveContainer(pb.RemoveContainerRequest(id="nosuch", force=True))
    with pytest.raises(errors.InvalidArgument, match="invalid signal: FOO"):
        await client.KillContainer(pb.KillContainerRequest(id=id, signal="FOO"))
    with pytest.raises(errors.InvalidArgument,
                       match="unable to find user nosuch"):
        spec = roots.spec("true")
        spec.process.user = "nosuch"
        await client.CreateContainer(pb.CreateContainerRequest(id=new_id(), name="u", spec=spec))

    after = (await client.ListContainers(pb.ListContainersRequest())).containers
    assert [c.id for c in after] == [c.id for c in before]
    assert after[0].status == pb.STATUS_RUNNING
    assert mounts_under(roots.data_root) == mounts
    for ref in (id, id[:12], "web", "/web"):
        assert ((await client.GetContainer(pb.GetContainerRequest(id=ref))).container).id == id
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id, force=True))


@pytest.mark.parametrize("args,text", [
    (["nosuch"], 'exec: "nosuch": executable file not found in $PATH'),
    (["/noexec"], "permission denied"),
])
async def test_unrunnable_command_reports_runc_text_and_undoes_everything(client, roots, args, text):
    from tests.integration.container.conftest import cgroup_dirs, conmon_pids, mounts_under
    id = new_id()
    with pytest.raises(errors.InvalidArgument) as exc:
        await client.CreateContainer(pb.CreateContainerRequest(id=id, name="bad", spec=roots.spec(*args)))
    assert text in exc.value.message
    assert (await client.ListContainers(pb.ListContainersRequest())).containers == []
    assert mounts_under(roots.data_root) == 0
    assert conmon_pids(roots.data_root) == []
    assert cgroup_dirs({id}) == 0
    assert os.listdir(os.path.join(roots.data_root, "container", "bundles")) == []


async def test_follow_streams_until_exit_without_losing_output(client, roots):
    id = new_id()
    await client.CreateContainer(pb.CreateContainerRequest(id=id, name="f", spec=roots.spec(
        "sh", "-c", "for i in $(seq 1 300); do echo line$i; done; sleep 0.3; echo last >&2; printf tail")))
    stream = client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, follow=True, tail=-1))
    await client.StartContainer(pb.StartContainerRequest(id=id))
    got = [e.chunk.data async for e in stream]
    assert got == [f"line{i}\n".encode() for i in range(1, 301)] + [b"last\n", b"tail"]
    tail = await logs(client, id)
    assert len(tail) == 302
    last2 = [e.chunk async for e in client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, tail=2))]
    assert [e.data for e in last2] == [b"last\n", b"tail"]


# Each run counts itself in its writable layer, says so and exits with its number.
COUNTING = "echo x >> /runs; n=$(wc -l < /runs); echo run $n; echo err $n >&2; exit $n"


async def test_start_of_stopped_container_runs_it_again_as_the_same_record(client, roots):
    from tests.integration.container.conftest import cgroup_dirs, conmon_pids, mounts_under
    id = new_id()
    created = (await client.CreateContainer(pb.CreateContainerRequest(
        id=id, name="again", labels={"a": "1"}, metadata=b'{"m": 1}',
        spec=roots.spec("sh", "-c", COUNTING)))).container
    seen: list[tuple[int, int]] = []

    async def collect():
        async for e in (
                reply.event async for reply in client.SubscribeTaskEvents(pb.SubscribeTaskEventsRequest())):
            if e.container_id == id:
                seen.append((e.type, e.exit_code))
    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.05)
    await client.StartContainer(pb.StartContainerRequest(id=id))
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 1
    first = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    assert first.status == pb.STATUS_STOPPED and first.exit_code == 1

    second = (await client.StartContainer(pb.StartContainerRequest(id="again"))).container
    assert second.id == id and second.started_at.ToNanoseconds() > first.finished_at.ToNanoseconds()
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 2
    after = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    assert (after.status, after.exit_code) == (pb.STATUS_STOPPED, 2)
    assert (after.name, dict(after.labels), after.metadata) == ("/again", {"a": "1"}, b'{"m": 1}')
    assert after.created_at == created.created_at and after.log_path == first.log_path
    assert after.started_at.ToNanoseconds() > first.started_at.ToNanoseconds()
    assert after.finished_at.ToNanoseconds() > first.finished_at.ToNanoseconds()
    # Both runs' output, in order, in the one log; the writable layer was kept.
    assert [e.data for e in await logs(client, id, stdout=True)] == [b"run 1\n", b"run 2\n"]
    assert [e.data for e in await logs(client, id, stderr=True)] == [b"err 1\n", b"err 2\n"]
    last = [e.chunk async for e in client.GetContainerLogs(
        pb.GetContainerLogsRequest(id=id, tail=1, stdout=True))]
    assert [e.data for e in last] == [b"run 2\n"]

    await asyncio.sleep(0.05)
    collector.cancel()
    T = pb.TaskEvent
    # A new task, not a new container: no create (nor delete) between the runs.
    assert seen == [(T.TYPE_START, 0), (T.TYPE_EXIT, 1), (T.TYPE_START, 0), (T.TYPE_EXIT, 2)]

    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
    assert conmon_pids(roots.data_root) == []
    assert mounts_under(roots.base) == 0 and cgroup_dirs({id}) == 0
    assert os.listdir(os.path.join(roots.run_root, "runc")) == []


async def test_stopped_then_started_container_is_watched_and_followed_again(client, roots):
    id = await run(client, roots, "sh", "-c", "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done")
    # Stopped once its trap is set ("up" comes after it): a PID 1 without a handler ignores TERM.
    first = client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, follow=True, tail=-1))
    assert (await anext(aiter(first))).chunk.data == b"up\n"
    await first.aclose()
    stopped = (await client.StopContainer(pb.StopContainerRequest(id=id, timeout_seconds=5))).container
    assert stopped.exit_code == 0
    with pytest.raises(errors.FailedPrecondition, match="is not running"):
        await client.KillContainer(pb.KillContainerRequest(id=id, signal="TERM"))

    again = (await client.StartContainer(pb.StartContainerRequest(id=id))).container
    assert again.status == pb.STATUS_RUNNING and again.pid > 0 and again.pid != stopped.pid
    assert not again.HasField("finished_at") and again.exit_code == 0
    with pytest.raises(errors.FailedPrecondition, match="already running"):
        await client.StartContainer(pb.StartContainerRequest(id=id))
    # Follow sees the earlier run, then this one, and ends at this run's exit.
    stream = client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, follow=True, tail=-1))
    got = []
    async for e in stream:
        got.append(e.chunk.data)
        if len(got) == 3:  # this run's "up" is in: kill it, follow must end
            await client.KillContainer(pb.KillContainerRequest(id=id, signal="9"))
    assert got == [b"up\n", b"bye\n", b"up\n"]
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 137
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))


async def test_runs_appending_to_the_log_keep_it_within_max_size_times_max_file(client, roots):
    from services.container import logfiles
    from tests.integration.container.test_logs import file_contents
    cap, files = 256 * 1024, 2
    # About 430 KB of records a run: each run passes max-size.
    id = await run(client, roots, "sh", "-c",
                   "n=$(cat /n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /n; "
                   "yes 0123456789012345678901234567890123456789 | head -n 5000; echo end $n",
                   log_config=pb.LogConfig(driver="json-file",
                                           options={"max-size": "256k", "max-file": str(files)}))
    for n in (1, 2, 3):
        await client.WaitContainer(pb.WaitContainerRequest(id=id))
        c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
        # max-file counts the live file; a file is rotated only once past max-size (it
        # passes it by what is written before the check sees it).
        rotated = logfiles.segments(c.log_path)
        assert len(rotated) <= files - 1 and all(os.path.getsize(p) >= cap for _, p in rotated)
        assert c.log_size == logfiles.total_size(c.log_path)
        kept = await logs(client, id)
        assert kept[-1].data == f"end {n}\n".encode()
        assert b"".join(e.data for e in kept) == file_contents(c.log_path)[0]
        if n < 3:
            await client.StartContainer(pb.StartContainerRequest(id=id))


async def test_log_rotation_keeps_the_newest_and_follow_sees_everything(client, roots):
    from services.container import logfiles
    from tests.integration.container.test_logs import file_contents
    id = new_id()
    await client.CreateContainer(pb.CreateContainerRequest(id=id, name="big", spec=roots.spec(
        "sh", "-c", "yes 0123456789012345678901234567890123456789 | head -n 100000; echo last",
        log_config=pb.LogConfig(driver="json-file", options={"max-size": "1m", "max-file": "100"}))))
    stream = client.GetContainerLogs(pb.GetContainerLogsRequest(id=id, follow=True, tail=-1))
    await client.StartContainer(pb.StartContainerRequest(id=id))
    got = [e.chunk.data async for e in stream]
    c = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
    want = [b"0123456789012345678901234567890123456789\n"] * 100000 + [b"last\n"]
    # The files hold every byte (nothing is pruned at this max-file) ...
    assert file_contents(c.log_path)[0] == b"".join(want)
    # ... and rotation never cuts a follower short: it sees all of it (while max-file
    # keeps the files it has not read yet: a follower slower than pruning misses those).
    assert got == want
    # It was rotated while written (how often depends on how far the writer outruns the
    # checks: a file passes max-size by what is written before the rotation is seen).
    rotated = logfiles.segments(c.log_path)
    assert rotated and all(os.path.getsize(p) >= 1 << 20 for _, p in rotated)

    id2 = await run(client, roots, "sh", "-c",
                    "yes 0123456789012345678901234567890123456789 | head -n 100000; echo last",
                    log_config=pb.LogConfig(driver="json-file", options={"max-size": "128k", "max-file": "2"}))
    await client.WaitContainer(pb.WaitContainerRequest(id=id2))
    c = (await client.GetContainer(pb.GetContainerRequest(id=id2))).container
    assert len(logfiles.segments(c.log_path)) == 1
    # Only the newest part is kept: older output was rotated away (max-file 2).
    kept = await logs(client, id2)
    assert kept[-1].data == b"last\n" and len(kept) < 100000


async def test_created_but_never_started_container_is_removed_cleanly(client, roots):
    from tests.integration.container.conftest import cgroup_dirs, conmon_pids, mounts_under
    id = new_id()
    c = (await client.CreateContainer(pb.CreateContainerRequest(
        id=id, name="idle", labels={"a": "1"}, spec=roots.spec("sleep", "1000"), metadata=b"{}"))).container
    assert c.status == pb.STATUS_CREATED and c.pid > 0 and c.metadata == b"{}"
    assert [x.id for x in (
        await client.ListContainers(pb.ListContainersRequest(labels={"a": "1"}))).containers] == [id]
    assert (await client.ListContainers(pb.ListContainersRequest(labels={"a": "2"}))).containers == []
    await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
    assert conmon_pids(roots.data_root) == []
    assert mounts_under(roots.base) == 0 and cgroup_dirs({id}) == 0
    assert os.listdir(os.path.join(roots.run_root, "runc")) == []
