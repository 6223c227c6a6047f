"""The volume service with the local driver, on real directories."""

from __future__ import annotations

import os
import stat

import grpc
import pytest

from berth.volume.v1 import volume_pb2 as pb
from berth.volume.v1 import volume_pb2_grpc as pb_grpc
from tests.support.engine import Engine


@pytest.fixture(scope="module")
def vol_engine():
    eng = Engine(services=("volume",)).start()
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture
def vol(vol_engine):
    stub = pb_grpc.VolumeServiceStub(vol_engine.channel("volume"))
    yield stub
    for volume in stub.ListVolumes(pb.ListVolumesRequest()).volumes:
        stub.RemoveVolume(pb.RemoveVolumeRequest(name=volume.name))


def volumes_dir(engine: Engine) -> str:
    return os.path.join(engine.config.state_dir("volume"), "volumes")


def test_create_get_list_remove(vol, vol_engine):
    created = vol.CreateVolume(pb.CreateVolumeRequest(name="data", labels={"app": "web"})).volume
    assert created.name == "data" and created.driver == "local"
    assert created.mountpoint == os.path.join(volumes_dir(vol_engine), "data", "_data")
    assert os.path.isdir(created.mountpoint)
    assert created.labels == {"app": "web"} and created.created_at.seconds > 0
    assert created.mount.type == "bind" and created.mount.source == created.mountpoint
    assert stat.S_IMODE(os.stat(volumes_dir(vol_engine)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(created.mountpoint)).st_mode) == 0o700

    assert vol.GetVolume(pb.GetVolumeRequest(name="data")).volume == created
    assert [v.name for v in vol.ListVolumes(pb.ListVolumesRequest()).volumes] == ["data"]

    with open(os.path.join(created.mountpoint, "file"), "w") as f:
        f.write("kept")
    vol.RemoveVolume(pb.RemoveVolumeRequest(name="data"))
    assert not os.path.exists(os.path.dirname(created.mountpoint))
    with pytest.raises(grpc.RpcError) as err:
        vol.GetVolume(pb.GetVolumeRequest(name="data"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "volume data not found"


def test_create_existing_returns_it_unchanged(vol):
    first = vol.CreateVolume(pb.CreateVolumeRequest(name="same", labels={"v": "1"})).volume
    again = vol.CreateVolume(pb.CreateVolumeRequest(name="same", labels={"v": "2"})).volume
    assert again == first and again.labels == {"v": "1"}


def test_empty_name_is_generated(vol):
    created = vol.CreateVolume(pb.CreateVolumeRequest()).volume
    assert len(created.name) == 64 and all(c in "0123456789abcdef" for c in created.name)
    assert os.path.isdir(created.mountpoint)


@pytest.mark.parametrize("name", ["a", "-lead", ".hidden", "has/slash", "..", "a..b",
                                  "../../etc", "sp ace", "x" * 0 + "\u00e9t\u00e9"])
def test_bad_names_are_rejected_and_nothing_is_created(vol, vol_engine, name):
    before = sorted(os.listdir(volumes_dir(vol_engine)))
    with pytest.raises(grpc.RpcError) as err:
        vol.CreateVolume(pb.CreateVolumeRequest(name=name))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid volume name" in err.value.details()
    assert sorted(os.listdir(volumes_dir(vol_engine))) == before
    assert not vol.ListVolumes(pb.ListVolumesRequest()).volumes


def test_remove_unknown_is_not_found(vol):
    with pytest.raises(grpc.RpcError) as err:
        vol.RemoveVolume(pb.RemoveVolumeRequest(name="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_restart_keeps_volumes_and_data():
    eng = Engine(services=("volume",)).start()
    try:
        stub = pb_grpc.VolumeServiceStub(eng.channel("volume"))
        created = stub.CreateVolume(pb.CreateVolumeRequest(name="durable")).volume
        with open(os.path.join(created.mountpoint, "f"), "w") as f:
            f.write("still here")
        eng.restart()
        stub = pb_grpc.VolumeServiceStub(eng.channel("volume"))
        assert stub.GetVolume(pb.GetVolumeRequest(name="durable")).volume == created
        with open(os.path.join(created.mountpoint, "f")) as f:
            assert f.read() == "still here"
    finally:
        eng.stop()


def _populate(stub, name: str, data: bytes) -> bool:
    def requests():
        yield pb.PopulateVolumeRequest(header=pb.PopulateVolumeHeader(name=name))
        for i in range(0, len(data), 1000):
            yield pb.PopulateVolumeRequest(chunk=data[i:i + 1000])
    return stub.PopulateVolume(requests()).populated


def _tar(members) -> bytes:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, mode, uid, payload in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, uid, uid
            if kind == tarfile.SYMTYPE:
                info.linkname = payload
                tar.addfile(info)
            else:
                info.size = len(payload or b"")
                tar.addfile(info, io.BytesIO(payload or b""))
    return buf.getvalue()


def test_refs_make_a_volume_in_use_until_released(vol):
    vol.CreateVolume(pb.CreateVolumeRequest(name="used"))
    vol.AcquireVolume(pb.AcquireVolumeRequest(name="used", ref="c1"))
    vol.AcquireVolume(pb.AcquireVolumeRequest(name="used", ref="c2"))
    vol.AcquireVolume(pb.AcquireVolumeRequest(name="used", ref="c2"))
    assert list(vol.GetVolume(pb.GetVolumeRequest(name="used")).volume.refs) == ["c1", "c2"]
    with pytest.raises(grpc.RpcError) as err:
        vol.RemoveVolume(pb.RemoveVolumeRequest(name="used"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "volume is in use - [c1, c2]" in err.value.details()
    assert not vol.PruneVolumes(pb.PruneVolumesRequest(all=True)).deleted
    assert [v.name for v in vol.ListVolumes(pb.ListVolumesRequest(ref="c1")).volumes] == ["used"]
    released = vol.ReleaseVolumes(pb.ReleaseVolumesRequest(ref="c1")).volumes
    assert [(v.name, list(v.refs)) for v in released] == [("used", ["c2"])]
    vol.ReleaseVolumes(pb.ReleaseVolumesRequest(ref="c2", names=["used"]))
    assert vol.PruneVolumes(pb.PruneVolumesRequest(all=True)).deleted == ["used"]


def test_prune_takes_anonymous_unless_all(vol):
    vol.CreateVolume(pb.CreateVolumeRequest(name="named"))
    anon = vol.CreateVolume(pb.CreateVolumeRequest(labels={"com.docker.volume.anonymous": ""})).volume
    assert list(vol.PruneVolumes(pb.PruneVolumesRequest()).deleted) == [anon.name]
    assert list(vol.PruneVolumes(pb.PruneVolumesRequest(labels={"x": ""})).deleted) == []
    assert list(vol.PruneVolumes(pb.PruneVolumesRequest(all=True)).deleted) == ["named"]


def test_populate_fills_only_an_empty_volume_keeping_modes(vol):
    import tarfile
    v = vol.CreateVolume(pb.CreateVolumeRequest(name="filled")).volume
    data = _tar([(".", tarfile.DIRTYPE, 0o750, 1000, None),
                 ("run", tarfile.DIRTYPE, 0o1777, 0, None),
                 ("bin", tarfile.REGTYPE, 0o4755, 0, b"x"),
                 ("link", tarfile.SYMTYPE, 0o777, 0, "/etc/passwd")])
    assert _populate(vol, "filled", data)
    assert stat.S_IMODE(os.stat(v.mountpoint).st_mode) == 0o750
    assert os.stat(v.mountpoint).st_uid == 1000
    assert stat.S_IMODE(os.stat(os.path.join(v.mountpoint, "run")).st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(os.path.join(v.mountpoint, "bin")).st_mode) == 0o4755
    assert os.readlink(os.path.join(v.mountpoint, "link")) == "/etc/passwd"
    assert not _populate(vol, "filled", _tar([("other", tarfile.REGTYPE, 0o644, 0, b"y")]))
    assert not os.path.exists(os.path.join(v.mountpoint, "other"))


def test_populate_refuses_members_outside_the_volume(vol, tmp_path):
    import tarfile
    vol.CreateVolume(pb.CreateVolumeRequest(name="hostile"))
    for members in ([("../escape", tarfile.REGTYPE, 0o644, 0, b"x")],
                    [("l", tarfile.SYMTYPE, 0o777, 0, str(tmp_path)),
                     ("l/escape", tarfile.REGTYPE, 0o644, 0, b"x")]):
        with pytest.raises(grpc.RpcError):
            _populate(vol, "hostile", _tar(members))
    assert os.listdir(tmp_path) == []


def test_tmpfs_volume_is_mounted_while_held_across_restarts():
    from tests.support.engine import mounts_under
    eng = Engine(services=("volume",)).start()
    try:
        stub = pb_grpc.VolumeServiceStub(eng.channel("volume"))
        v = stub.CreateVolume(
            pb.CreateVolumeRequest(name="tmp", options={"type": "tmpfs", "size": "1m"})).volume
        assert dict(v.options) == {"type": "tmpfs", "o": "size=1m", "device": "tmpfs"}
        assert v.mountpoint not in mounts_under(eng.root)
        stub.AcquireVolume(pb.AcquireVolumeRequest(name="tmp", ref="c"))
        assert v.mountpoint in mounts_under(eng.root)
        eng.kill_service("volume")
        eng.wait_serving("volume")
        stub = pb_grpc.VolumeServiceStub(eng.channel("volume"))
        assert v.mountpoint in mounts_under(eng.root)
        assert list(stub.GetVolume(pb.GetVolumeRequest(name="tmp")).volume.refs) == ["c"]
        stub.ReleaseVolumes(pb.ReleaseVolumesRequest(ref="c"))
        assert v.mountpoint not in mounts_under(eng.root)
        stub.RemoveVolume(pb.RemoveVolumeRequest(name="tmp"))
    finally:
        eng.stop()
