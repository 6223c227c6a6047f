"""The image service over gRPC: a real `python -m services.image` on a tmp unix socket."""

import os
import signal
import subprocess
import sys
import time

import grpc
import pytest
from berth.image.v1 import image_pb2, image_pb2_grpc

from services.common import rpc
from services.common.config import Config
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.support import images as ti


@pytest.fixture
def image_process(tmp_path):
    config = Config(run_root=str(tmp_path / "run"), data_root=str(tmp_path / "data"))
    env = {**os.environ, **config.env(), "BERTH_LOG_FORMAT": "json"}
    proc = subprocess.Popen([sys.executable, "-m", "services.image"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(config.socket_path("image")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"image service did not start: {proc.stderr.read().decode()}")
            time.sleep(0.05)
        yield config
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


async def test_load_get_snapshot_save_over_grpc(image_process):
    client = rpc.connect(image_process, "image", image_pb2_grpc.ImageServiceStub)
    try:
        data = ti.busybox_docker_archive(cmd=["echo", "hi"])

        async def requests():
            for i in range(0, len(data), 256 * 1024):
                yield image_pb2.LoadImagesRequest(chunk=data[i:i + 256 * 1024])
        loaded = await client.LoadImages(requests())
        [img] = loaded.images
        assert list(img.repo_tags) == ["docker.io/library/busybox:latest"]
        got = (await client.GetImage(image_pb2.GetImageRequest(reference="busybox"))).image
        assert got.id == img.id and list(got.config.cmd) == ["echo", "hi"]

        with pytest.raises(NotFound, match="No such image: nope:latest"):
            await client.GetImage(image_pb2.GetImageRequest(reference="nope"))

        async def import_requests():
            yield image_pb2.ImportImageRequest(header=image_pb2.ImportHeader(
                reference="imp:1", config=image_pb2.ImageConfig(cmd=["sh"])))
            yield image_pb2.ImportImageRequest(chunk=ti.layer_bytes({"x": b"y"}))
        imported = (await client.ImportImage(import_requests())).image
        assert list(imported.repo_tags) == ["docker.io/library/imp:1"]

        async def bad_import():
            yield image_pb2.ImportImageRequest(chunk=b"no header")
        with pytest.raises(InvalidArgument, match="header"):
            await client.ImportImage(bad_import())

        prepared = await client.PrepareSnapshot(image_pb2.PrepareSnapshotRequest(
            key="abc123", image=img.id, labels={"berth.container": "abc123"}))
        assert prepared.image_id == img.id and prepared.mounts[0].type == "overlay"
        with pytest.raises(FailedPrecondition, match="in use by container abc123"):
            await client.RemoveImage(image_pb2.RemoveImageRequest(reference="busybox"))
        listed = await client.ListSnapshots(image_pb2.ListSnapshotsRequest())
        assert [s.key for s in listed.snapshots] == ["abc123"]
        await client.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key="abc123"))

        saved = b"".join(
            [r.chunk async for r in client.SaveImages(image_pb2.SaveImagesRequest(references=["busybox"]))])
        assert len(saved) > 1_000_000
        removed = await client.RemoveImage(image_pb2.RemoveImageRequest(reference="busybox"))
        assert list(removed.deleted) == [img.id]

        async def reload():
            yield image_pb2.LoadImagesRequest(chunk=saved)
        again = await client.LoadImages(reload())
        assert again.images[0].id == img.id
    finally:
        await client.channel.close()


async def test_a_corrupt_protobuf_is_invalid_argument(image_process):
    """Bytes that are no protobuf message, on a unary and on a client-streaming call."""
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, a length past the end
    async with grpc.aio.insecure_channel(image_process.address("image")) as channel:
        get = channel.unary_unary("/berth.image.v1.ImageService/GetImage")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await get(garbage)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf" in err.value.details()

        load = channel.stream_unary("/berth.image.v1.ImageService/LoadImages")

        async def chunks():
            yield garbage
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await load(chunks())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The service is still serving.
        client = rpc.connect(image_process, "image", image_pb2_grpc.ImageServiceStub)
        try:
            with pytest.raises(NotFound):
                await client.GetImage(image_pb2.GetImageRequest(reference="nope"))
        finally:
            await client.channel.close()
