"""200 run/rm cycles leave nothing behind: mounts, cgroups, monitors, netns, rows."""

from __future__ import annotations

import glob
import os

import grpc
import pytest

from berth.container.v1 import container_pb2, container_pb2_grpc
from berth.engine.v1 import engine_pb2 as pb
from berth.image.v1 import image_pb2, image_pb2_grpc
from berth.network.v1 import network_pb2, network_pb2_grpc
from tests.support.engine import mounts_under

pytestmark = pytest.mark.slow
CYCLES = 200


def cgroups() -> set[str]:
    """Container cgroup directories on the machine (every engine's: compare by id)."""
    return {os.path.basename(p) for p in glob.glob("/sys/fs/cgroup/*/berth/*") if os.path.isdir(p)}


def census(engine) -> dict[str, int]:
    """Everything a container of this engine could leak, counted (cgroups apart:
    they are machine-wide, so the tests compare them by container id)."""
    root = engine.root
    conmons = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read()
        except OSError:
            continue
        if b"conmon" in argv.split(b"\0")[0] and root.encode() in argv:
            conmons += 1
    containers = container_pb2_grpc.ContainerServiceStub(engine.channel("container")).ListContainers(
        container_pb2.ListContainersRequest()).containers
    snapshots = image_pb2_grpc.ImageServiceStub(engine.channel("image")).ListSnapshots(
        image_pb2.ListSnapshotsRequest()).snapshots
    endpoints = network_pb2_grpc.NetworkServiceStub(engine.channel("network")).ListEndpoints(
        network_pb2.ListEndpointsRequest()).endpoints
    return {
        "mounts": len(mounts_under(root)),
        "conmon": conmons,
        "netns": len(os.listdir(os.path.join(engine.config.run_root, "netns")))
        if os.path.isdir(os.path.join(engine.config.run_root, "netns")) else 0,
        "runc_state": len(glob.glob(os.path.join(engine.config.run_root, "runc", "*"))),
        "container_rows": len(containers),
        "snapshot_rows": len(snapshots),
        "endpoint_rows": len(endpoints),
    }


def warm_up(stub, image) -> None:
    """One run first: the first namespace makes the netns dir a mount point, once."""
    list(stub.RunContainer(pb.RunContainerRequest(
        config=pb.ContainerConfig(image=image, cmd=["true"], auto_remove=True), attach=True)))


def test_run_rm_cycles_leave_nothing_behind(engine, busybox_image):
    stub = engine.engine_stub()
    warm_up(stub, busybox_image)
    before = census(engine)
    ids = set()
    for i in range(CYCLES):
        # Alternate foreground --rm runs and explicit create/start/wait/rm cycles.
        if i % 2:
            replies = list(stub.RunContainer(pb.RunContainerRequest(
                config=pb.ContainerConfig(image=busybox_image, cmd=["true"], auto_remove=True),
                attach=True)))
            assert replies[-1].exit.exit_code == 0
            ids.add(replies[0].id)
        else:
            created = stub.CreateContainer(pb.CreateContainerRequest(
                config=pb.ContainerConfig(image=busybox_image, cmd=["true"])))
            stub.StartContainer(pb.StartContainerRequest(id=created.id))
            assert stub.WaitContainer(pb.WaitContainerRequest(id=created.id)).exit_code == 0
            stub.RemoveContainer(pb.RemoveContainerRequest(id=created.id))
            ids.add(created.id)
    after = census(engine)
    assert after == before
    assert len(ids) == CYCLES
    assert not ids & cgroups()


def test_failed_runs_leave_nothing_behind(engine, busybox_image):
    stub = engine.engine_stub()
    warm_up(stub, busybox_image)
    before, cgroups_before = census(engine), cgroups()
    bad = [
        pb.ContainerConfig(image=busybox_image, cmd=["/no/such/binary"]),
        pb.ContainerConfig(image=busybox_image, cmd=["true"], name="bad/name"),
        pb.ContainerConfig(image="no-such-image:1", cmd=["true"]),
        pb.ContainerConfig(image="Busybox", cmd=["true"]),
        pb.ContainerConfig(image=busybox_image, cmd=["true"], network_mode="no-such-net"),
    ]
    codes = []
    for config in bad:
        with pytest.raises(grpc.RpcError) as err:
            list(engine.engine_stub().RunContainer(pb.RunContainerRequest(config=config, attach=True)))
        codes.append(err.value.code())
    assert codes[1:] == [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                         grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND]
    assert census(engine) == before
    # New cgroups of failed containers would be empty ones left behind.
    for name in cgroups() - cgroups_before:
        with open(f"/sys/fs/cgroup/pids/berth/{name}/cgroup.procs") as f:
            assert f.read().strip(), f"cgroup of failed container {name} left behind"
