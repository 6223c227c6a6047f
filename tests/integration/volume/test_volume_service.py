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
    created = vol.CreateVolume(pb.CreateVolumeRequest(name="data", labels={"app": "web"}))
    assert created.name == "data" and created.driver == "local"
    assert created.mountpoint == os.path.join(volumes_dir(vol_engine), "data", "_data")
    assert os.path.isdir(created.mountpoint)
    assert created.labels == {"app": "web"} and created.created_at.seconds > 0
    assert created.mount.type == "bind" and created.mount.source == created.mountpoint
    assert stat.S_IMODE(os.stat(volumes_dir(vol_engine)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(created.mountpoint)).st_mode) == 0o700

    assert vol.GetVolume(pb.GetVolumeRequest(name="data")) == created
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
    first = vol.CreateVolume(pb.CreateVolumeRequest(name="same", labels={"v": "1"}))
    again = vol.CreateVolume(pb.CreateVolumeRequest(name="same", labels={"v": "2"}))
    assert again == first and again.labels == {"v": "1"}


def test_empty_name_is_generated(vol):
    created = vol.CreateVolume(pb.CreateVolumeRequest())
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
        created = stub.CreateVolume(pb.CreateVolumeRequest(name="durable"))
        with open(os.path.join(created.mountpoint, "f"), "w") as f:
            f.write("still here")
        eng.restart()
        stub = pb_grpc.VolumeServiceStub(eng.channel("volume"))
        assert stub.GetVolume(pb.GetVolumeRequest(name="durable")) == created
        with open(os.path.join(created.mountpoint, "f")) as f:
            assert f.read() == "still here"
    finally:
        eng.stop()
