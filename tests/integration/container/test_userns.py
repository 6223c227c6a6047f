"""User namespaces (docker's userns-remap): container root is an unprivileged host uid."""

import asyncio
import os
import shutil
import tempfile

import pytest

from berth.container.v1 import container_pb2 as pb
from berth.types.v1 import mount_pb2
from services.common.errors import InvalidArgument
from tests.integration.container.conftest import ServiceProcess, new_id, run
from tests.integration.container.test_events import read_pid

BASE = 300000


@pytest.fixture
def remapped(roots):
    """A container service remapping root onto BASE.. (its own subordinate id files)."""
    ids = tempfile.mkdtemp(prefix="/tmp/bc-ids-")
    for name in ("subuid", "subgid"):
        with open(os.path.join(ids, name), "w") as f:
            f.write(f"root:{BASE}:65536\n")
    svc = ServiceProcess(roots.run_root, roots.data_root)
    svc.config = svc.config.__class__(**{**svc.config.__dict__, "userns_remap": "root",
                                         "subuid_file": f"{ids}/subuid", "subgid_file": f"{ids}/subgid"})
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(ids, ignore_errors=True)


async def test_root_inside_is_an_unprivileged_uid_outside(roots, remapped, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root only\n")
    os.chmod(secret, 0o600)
    client = remapped.client()
    try:
        cid = await run(client, roots, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; "
                        "touch /new && echo wrote-rootfs; cat /etc/passwd >/dev/null && echo read-layer; "
                        "cat /secret || echo denied; sleep 1000",
                        mounts=[mount_pb2.Mount(type="bind", source=str(secret), target="/secret",
                                                options=["rbind", "ro", "rro"])])
        c = (await client.GetContainer(pb.GetContainerRequest(id=cid))).container
        assert c.spec.userns.mode == "remap"
        assert [(m.container_id, m.host_id, m.size) for m in c.spec.userns.uid_mappings] == [(0, BASE, 65536)]
        # The host's view of the process: uid BASE, not 0.
        pid = read_pid(roots, cid, "pidfile")
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == [str(BASE)] * 4
        # Its output is all there once the last probe answered (then it only sleeps).
        out = b""
        async for e in client.GetContainerLogs(pb.GetContainerLogsRequest(id=cid, tail=-1, follow=True)):
            out += e.chunk.data
            if b"denied" in out or b"root only" in out:
                break
        await client.KillContainer(pb.KillContainerRequest(id=cid, signal="KILL"))
        await client.WaitContainer(pb.WaitContainerRequest(id=cid))
        text = b"".join([e.chunk.data async for e in client.GetContainerLogs(
            pb.GetContainerLogsRequest(id=cid, tail=-1))]).decode()
        lines = [line.split() for line in text.splitlines()]
        assert lines[0] == ["0", str(BASE), "65536"] and lines[1] == ["0", str(BASE), "65536"]
        # Root inside, writing its rootfs, reading the image's files, but not a host file
        # that is root's on the host (binds are not idmapped).
        assert [line for line in lines[2:] if line[0] != "cat:"] == [
            ["0"], ["wrote-rootfs"], ["read-layer"], ["denied"]], text
        assert "root only" not in text
        await client.RemoveContainer(pb.RemoveContainerRequest(id=cid))
    finally:
        await client.channel.close()


async def test_userns_host_opts_out_and_the_unknown_is_refused(roots, remapped):
    client = remapped.client()
    try:
        cid = await run(client, roots, "sleep", "1000", userns=pb.UserNamespace(mode="host"))
        c = (await client.GetContainer(pb.GetContainerRequest(id=cid))).container
        assert c.spec.userns.mode == "host" and not c.spec.userns.uid_mappings
        with open(f"/proc/{read_pid(roots, cid, 'pidfile')}/status") as f:
            assert next(line for line in f if line.startswith("Uid:")).split()[1] == "0"
        await client.RemoveContainer(pb.RemoveContainerRequest(id=cid, force=True))
        with pytest.raises(InvalidArgument, match='--userns.*"keep-id"'):
            await client.CreateContainer(pb.CreateContainerRequest(
                id=new_id(), name="bad", spec=roots.spec("true", userns=pb.UserNamespace(mode="keep-id"))))
        # A remapped root cannot be given the host (dockerd's rule): --userns host can.
        with pytest.raises(InvalidArgument, match="privileged mode is incompatible with user namespaces"):
            await client.CreateContainer(pb.CreateContainerRequest(
                id=new_id(), name="priv", spec=roots.spec("true", security=pb.Security(privileged=True))))
        assert (await client.ListContainers(pb.ListContainersRequest())).containers == []
    finally:
        await client.channel.close()


async def test_an_idmapped_volume_keeps_its_owners(roots, remapped, tmp_path):
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "mine").write_text("host root's\n")
    client = remapped.client()
    try:
        cid = await run(client, roots, "sh", "-c", "stat -c %u /data/mine; echo x > /data/made; sleep 1000",
                        mounts=[mount_pb2.Mount(type="bind", source=str(volume), target="/data",
                                                options=["rbind", "rw", "rprivate", "idmap"])])
        pid = read_pid(roots, cid, "pidfile")
        made = volume / "made"
        for _ in range(1200):  # up to a minute on a loaded machine
            if made.exists():
                break
            await asyncio.sleep(0.05)
        # Written by the container's root: owned by root on disk, as without remapping.
        assert os.stat(made).st_uid == 0
        assert os.path.exists(f"/proc/{pid}")
        await client.RemoveContainer(pb.RemoveContainerRequest(id=cid, force=True))
        # The bundle went without touching the volume.
        assert sorted(os.listdir(volume)) == ["made", "mine"]
    finally:
        await client.channel.close()
