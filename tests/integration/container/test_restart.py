"""The service can die at any moment (kill -9) without taking containers with it."""

from __future__ import annotations

import asyncio
import os
import signal

from berth.container.v1 import container_pb2 as pb
from tests.integration.container.conftest import (ServiceProcess, cgroup_dirs, conmon_pids, logs,
                                                  mounts_under, run)



async def wait_gone(pid: int, timeout: float = 60.0) -> None:
    """Until process `pid` has exited (gone, or a zombie nobody reaped yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except (FileNotFoundError, ProcessLookupError):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} still runs after {timeout} s")

async def test_sigkill_and_restart_reconciles_running_and_exited_containers(roots, service):
    client = service.client()
    a = await run(client, roots, "sh", "-c", "echo a-up; while true; do sleep 0.1; done", name="a")
    # b exits once the test says so (a file appearing in its rootfs): while the service is down.
    b = await run(client, roots, "sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; echo b-done; exit 5",
                  name="b")
    c = await run(client, roots, "sleep", "1000", name="c")
    await client.channel.close()
    bundles = os.path.join(roots.data_root, "container", "bundles")
    b_conmon, c_conmon = (int(open(os.path.join(bundles, x, "conmon.pid")).read()) for x in (b, c))

    service.kill9()
    assert len(conmon_pids(roots.data_root)) == 3
    # While the service is down: b exits on its own, c loses its monitor and runs on.
    open(os.path.join(bundles, b, "rootfs", "go"), "w").close()
    os.kill(c_conmon, signal.SIGKILL)
    for pid in (b_conmon, c_conmon):
        await wait_gone(pid)

    restarted = ServiceProcess(roots.run_root, roots.data_root).start()
    client = restarted.client()
    try:
        got = {x.name: x for x in (await client.ListContainers(pb.ListContainersRequest())).containers}
        assert got["/a"].status == pb.STATUS_RUNNING and got["/a"].pid > 0
        assert (got["/b"].status, got["/b"].exit_code) == (pb.STATUS_STOPPED, 5)
        # Running still, as it is: the process, not its monitor, says (test_monitor_death).
        c_pid = int(open(os.path.join(roots.data_root, "container", "bundles", c, "pidfile")).read())
        assert (got["/c"].status, got["/c"].pid) == (pb.STATUS_RUNNING, c_pid)
        assert [e.data for e in await logs(client, a)] == [b"a-up\n"]
        assert [e.data for e in await logs(client, b)] == [b"b-done\n"]

        # The reattached container is watched again: stop returns on its exit.
        stopped = (await client.StopContainer(pb.StopContainerRequest(id="a", timeout_seconds=5))).container
        assert stopped.status == pb.STATUS_STOPPED and stopped.exit_code in (137, 143)
        assert (await client.WaitContainer(pb.WaitContainerRequest(id=a))).exit_code == stopped.exit_code
        for id in (a, b, c):
            await client.RemoveContainer(pb.RemoveContainerRequest(id=id, force=True))
        assert (await client.ListContainers(pb.ListContainersRequest())).containers == []
        assert conmon_pids(roots.data_root) == []
        assert mounts_under(roots.data_root) == 0
        assert cgroup_dirs({a, b, c}) == 0
        assert os.listdir(os.path.join(roots.run_root, "runc")) == []
    finally:
        await client.channel.close()
        restarted.stop()


async def test_start_again_across_sigkills_of_the_service(roots, service):
    """A stopped container is started again by a new service process, and a run begun
    by one service process is reattached by the next."""
    client = service.client()
    id = await run(client, roots, "sh", "-c",
                   "echo x >> /runs; echo run $(wc -l < /runs); [ $(wc -l < /runs) -gt 1 ] && sleep 1000; exit 3",
                   name="twice")
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 3
    created = ((await client.GetContainer(pb.GetContainerRequest(id=id))).container).created_at
    await client.channel.close()
    service.kill9()

    second = ServiceProcess(roots.run_root, roots.data_root).start()
    third = None
    client = second.client()
    try:
        c = (await client.StartContainer(pb.StartContainerRequest(id="twice"))).container
        assert c.status == pb.STATUS_RUNNING and c.created_at == created
        await client.channel.close()
        second.kill9()
        third = ServiceProcess(roots.run_root, roots.data_root).start()
        client = third.client()
        got = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
        assert (got.status, got.pid) == (pb.STATUS_RUNNING, c.pid)
        assert not got.HasField("finished_at")
        stopped = (await client.StopContainer(pb.StopContainerRequest(id=id, timeout_seconds=0))).container
        assert stopped.status == pb.STATUS_STOPPED and stopped.exit_code == 137
        assert [e.data for e in await logs(client, id)] == [b"run 1\n", b"run 2\n"]
        await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
        assert conmon_pids(roots.data_root) == [] and mounts_under(roots.data_root) == 0
        assert cgroup_dirs({id}) == 0
    finally:
        await client.channel.close()
        second.stop()
        if third is not None:
            third.stop()


async def test_run_begun_just_before_a_crash_is_found_running(roots, service):
    """The row keeps the last exit until the new conmon runs: a crash right after conmon
    started (simulated by writing the old exit back) must not hide the new run."""
    import sqlite3
    client = service.client()
    id = await run(client, roots, "sh", "-c", "echo hi; sleep 1000", name="racer")
    await client.StopContainer(pb.StopContainerRequest(id=id, timeout_seconds=0))
    await client.StartContainer(pb.StartContainerRequest(id=id))
    await client.channel.close()
    service.kill9()
    db = sqlite3.connect(os.path.join(roots.data_root, "container", "containers.db"))
    with db:
        db.execute("UPDATE containers SET exit_code = 137, finished_at = 1 WHERE id = ?", (id,))
    db.close()

    restarted = ServiceProcess(roots.run_root, roots.data_root).start()
    client = restarted.client()
    try:
        got = (await client.GetContainer(pb.GetContainerRequest(id=id))).container
        assert got.status == pb.STATUS_RUNNING and not got.HasField("finished_at")
        stopped = (await client.StopContainer(pb.StopContainerRequest(id=id, timeout_seconds=0))).container
        assert stopped.status == pb.STATUS_STOPPED and stopped.finished_at.seconds > 1
        await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
        assert conmon_pids(roots.data_root) == []
    finally:
        await client.channel.close()
        restarted.stop()


async def test_a_removed_bundle_is_gone_at_once_and_its_files_once_deleted(roots, service):
    """RemoveContainer renames the bundle into trash/ and deletes it after the reply; what
    a SIGKILL left in trash/ is deleted at the next start."""
    client = service.client()
    cid = await run(client, roots, "true", name="gone")
    assert (await client.WaitContainer(pb.WaitContainerRequest(id=cid))).exit_code == 0
    container = os.path.join(roots.data_root, "container")
    await client.RemoveContainer(pb.RemoveContainerRequest(id=cid))
    assert not os.path.exists(os.path.join(container, "bundles", cid))
    await client.channel.close()
    service.kill9()
    # As a SIGKILL between the rename and the delete leaves it.
    left = os.path.join(container, "trash", "left")
    os.makedirs(os.path.join(left, "rootfs"))
    open(os.path.join(left, "config.json"), "w").close()

    restarted = ServiceProcess(roots.run_root, roots.data_root).start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while os.listdir(os.path.join(container, "trash")) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert os.listdir(os.path.join(container, "trash")) == []
    finally:
        restarted.stop()
