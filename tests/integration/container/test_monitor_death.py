"""A container whose monitor (conmon) is SIGKILLed: still running, and acted on directly."""

import os
import signal

from berth.container.v1 import container_pb2 as pb
from tests.integration.container.conftest import ServiceProcess, run
from tests.integration.container.test_events import read_pid, take, touch_in, wait_gone

S = pb.Status


async def kill_monitor(roots, cid) -> int:
    """SIGKILLs the container's conmon and waits until it is gone; returns the process's pid."""
    conmon = read_pid(roots, cid, "conmon.pid")
    os.kill(conmon, signal.SIGKILL)
    wait_gone(conmon)
    return read_pid(roots, cid, "pidfile")


async def get(client, cid) -> pb.Container:
    return (await client.GetContainer(pb.GetContainerRequest(id=cid))).container


async def test_monitor_death_is_running_still_and_the_real_exit_is_recorded(roots, client):
    cid = await run(client, roots, "sh", "-c", "while [ ! -e /go ]; do sleep 0.05; done; exit 7")
    seen = await take(client, 2, after_seq=0)
    pid = await kill_monitor(roots, cid)
    # Asked after conmon's death was noticed: the container is not reported exited.
    c = await get(client, cid)
    assert (c.status, c.pid) == (S.STATUS_RUNNING, pid)
    os.kill(pid, 0)

    touch_in(roots, cid, "/go")
    [exit_event] = await take(client, 1, after_seq=seen[-1].seq)
    # The process's own exit status, read from its pidfd (Linux >= 6.15).
    assert exit_event.exit_code == 7
    c = await get(client, cid)
    assert (c.status, c.exit_code) == (S.STATUS_STOPPED, 7)
    await client.RemoveContainer(pb.RemoveContainerRequest(id=cid))


async def test_stop_and_rm_act_on_the_process_itself(roots, client):
    stopped = await run(client, roots, "sleep", "1000")
    removed = await run(client, roots, "sleep", "1000")
    pids = [await kill_monitor(roots, cid) for cid in (stopped, removed)]
    for cid in (stopped, removed):
        assert (await get(client, cid)).status == S.STATUS_RUNNING

    c = (await client.StopContainer(pb.StopContainerRequest(id=stopped, timeout_seconds=1))).container
    # As pid 1 of its namespace sleep ignores SIGTERM: stop's SIGKILL, sent to the
    # process itself, ended it.
    assert (c.status, c.exit_code) == (S.STATUS_STOPPED, 137)
    await client.RemoveContainer(pb.RemoveContainerRequest(id=removed, force=True))
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}/cgroup") or "berth" not in open(f"/proc/{pid}/cgroup").read()
    await client.RemoveContainer(pb.RemoveContainerRequest(id=stopped))


async def test_a_restarted_service_finds_the_orphan_running(roots, service):
    client = service.client()
    cid = await run(client, roots, "sleep", "1000")
    await client.channel.close()
    service.kill9()
    pid = await kill_monitor(roots, cid)

    restarted = ServiceProcess(roots.run_root, roots.data_root).start()
    client = restarted.client()
    try:
        c = await get(client, cid)
        assert (c.status, c.pid) == (S.STATUS_RUNNING, pid)
        await client.KillContainer(pb.KillContainerRequest(id=cid, signal="KILL"))
        exit = await client.WaitContainer(pb.WaitContainerRequest(id=cid))
        # Not this service's child any more: its status is known once init reaped it
        # (systemd does; a pid 1 that reaps nothing leaves a zombie and no status).
        reaped = not os.path.exists(f"/proc/{pid}")
        assert exit.exit_code == (137 if reaped else 255)
        await client.RemoveContainer(pb.RemoveContainerRequest(id=cid))
    finally:
        await client.channel.close()
        restarted.stop()
