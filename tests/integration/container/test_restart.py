"""The service can die at any moment (kill -9) without taking containers with it."""

from __future__ import annotations

import asyncio
import os
import signal

from berth.container.v1 import container_pb2 as pb
from tests.integration.container.conftest import (ServiceProcess, cgroup_dirs, conmon_pids, logs,
                                                  mounts_under, run)


async def test_sigkill_and_restart_reconciles_running_and_exited_containers(roots, service):
    client = service.client()
    a = await run(client, roots, "sh", "-c", "echo a-up; while true; do sleep 0.1; done", name="a")
    b = await run(client, roots, "sh", "-c", "sleep 0.5; echo b-done; exit 5", name="b")
    c = await run(client, roots, "sleep", "1000", name="c")
    await client.channel.close()
    c_conmon = int(open(os.path.join(roots.data_root, "container", "bundles", c, "conmon.pid")).read())

    service.kill9()
    assert len(conmon_pids(roots.data_root)) == 3
    # While the service is down: b exits on its own, c loses its monitor.
    os.kill(c_conmon, signal.SIGKILL)
    await asyncio.sleep(1.0)

    restarted = ServiceProcess(roots.run_root, roots.data_root).start()
    client = restarted.client()
    try:
        got = {x.name: x for x in (await client.List(pb.ListRequest())).containers}
        assert got["/a"].status == pb.STATUS_RUNNING and got["/a"].pid > 0
        assert (got["/b"].status, got["/b"].exit_code) == (pb.STATUS_STOPPED, 5)
        assert (got["/c"].status, got["/c"].exit_code) == (pb.STATUS_STOPPED, 255)
        assert "conmon" in got["/c"].note
        assert [e.data for e in await logs(client, a)] == [b"a-up\n"]
        assert [e.data for e in await logs(client, b)] == [b"b-done\n"]

        # The reattached container is watched again: stop returns on its exit.
        stopped = await client.Stop(pb.StopRequest(id="a", timeout_seconds=5))
        assert stopped.status == pb.STATUS_STOPPED and stopped.exit_code in (137, 143)
        assert (await client.Wait(pb.WaitRequest(id=a))).exit_code == stopped.exit_code
        for id in (a, b, c):
            await client.Delete(pb.DeleteRequest(id=id, force=True))
        assert (await client.List(pb.ListRequest())).containers == []
        assert conmon_pids(roots.data_root) == []
        assert mounts_under(roots.data_root) == 0
        assert cgroup_dirs({a, b, c}) == 0
        assert os.listdir(os.path.join(roots.run_root, "runc")) == []
    finally:
        await client.channel.close()
        restarted.stop()
