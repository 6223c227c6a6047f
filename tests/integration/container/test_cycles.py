"""Run/remove in a loop leaves exactly what was there before; also times each step."""

from __future__ import annotations

import statistics
import time

from berth.container.v1 import container_pb2 as pb
from tests.integration.container.conftest import (cgroup_dirs, conmon_pids, mounts_under, new_id)

CYCLES = 50


def _count(roots, ids):
    # Scoped to this test's roots and ids: other engines may run on this machine meanwhile.
    return mounts_under(roots.base), cgroup_dirs(ids), len(conmon_pids(roots.data_root))


async def test_fifty_run_rm_cycles_leave_nothing_behind(client, roots):
    ids: set[str] = set()
    before = _count(roots, ids)
    rows = len((await client.ListContainers(pb.ListContainersRequest())).containers)
    times: dict[str, list[float]] = {"create": [], "start": [], "wait": [], "delete": [], "total": []}
    for i in range(CYCLES):
        id = new_id()
        ids.add(id)
        spec = roots.spec("/bin/true")
        t0 = time.perf_counter()
        await client.CreateContainer(pb.CreateContainerRequest(id=id, name=f"cycle{i}", spec=spec))
        t1 = time.perf_counter()
        await client.StartContainer(pb.StartContainerRequest(id=id))
        t2 = time.perf_counter()
        assert (await client.WaitContainer(pb.WaitContainerRequest(id=id))).exit_code == 0
        t3 = time.perf_counter()
        await client.RemoveContainer(pb.RemoveContainerRequest(id=id))
        t4 = time.perf_counter()
        for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            v and times[k].append(v * 1000)
    after = _count(roots, ids)
    assert after == before
    assert len((await client.ListContainers(pb.ListContainersRequest())).containers) == rows
    summary = ", ".join(f"{k} {statistics.median(v):.1f}ms" for k, v in times.items())
    print(f"\nmedian over {CYCLES} cycles of /bin/true: {summary}")
