"""Archive chunks as serialized messages (services.common.bulk, berth_docker.tarstream):
byte for byte what protobuf makes and reads, and tar read from pieces of any size."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile

import pytest

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth_docker import tarstream
from services.common import bulk, errors

SIZES = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, (1 << 20) + 3]


def _data(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


@pytest.mark.parametrize("n", SIZES)
def test_made_and_read_as_protobuf_makes_and_reads_them(n):
    data = _data(n)
    made = bulk.Raw.of(2, data[:n // 3], data[n // 3:])
    assert made.message == container_pb2.CopyToContainerRequest(chunk=data).SerializeToString() or n == 0
    assert container_pb2.CopyToContainerRequest.FromString(made.message).chunk == data
    assert bytes(made.data) == data
    for message, field in ((container_pb2.CopyToContainerRequest(chunk=data), 2),
                           (engine_pb2.CopyFromContainerResponse(data=data), 1),
                           (image_pb2.LoadImagesRequest(chunk=data), 1)):
        raw = message.SerializeToString()
        parsed = bulk.parse(raw, field)
        if n == 0 and field == 1:  # proto3 leaves an empty field out: nothing to view
            assert parsed is None
            continue
        assert parsed is not None and bytes(parsed.data) == data


def test_other_messages_are_parsed_as_messages():
    header = container_pb2.CopyToContainerRequest(header=container_pb2.CopyToContainerHeader(id="c", path="/x"))
    raw = header.SerializeToString()
    assert bulk.parse(raw, 2) is None
    # A bytes field followed by another field is not a lone chunk.
    assert tarstream.bytes_field(b"\x12\x01a\x08\x01", 2) is None
    assert tarstream.bytes_field(b"\x12\x05ab", 2) is None  # cut short
    deserialize = bulk.deserializer(2, container_pb2.CopyToContainerRequest.FromString)
    assert deserialize(raw) == header
    assert isinstance(deserialize(bulk.Raw.of(2, b"abc").message), bulk.Raw)
    serialize = bulk.serializer(lambda m: m.SerializeToString())
    assert serialize(bulk.Raw.of(2, b"abc")) == container_pb2.CopyToContainerRequest(chunk=b"abc").SerializeToString()
    assert serialize(header) == raw


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("piece", [1, 511, 512, 4096, 1 << 20])
def test_tar_read_from_pieces_lands_every_byte(piece, tmp_path):
    members = {"a": os.urandom(3000), "dir/b": b"", "c" * 150: os.urandom(70000)}
    raw = _tar(members)
    reader = tarstream.ForwardReader(memoryview(raw)[i:i + piece] for i in range(0, len(raw), piece))
    with tarfile.open(fileobj=reader, mode="r:") as tar:
        for m in tar:
            out = tmp_path / m.name.replace("/", "_")
            with open(out, "wb") as f:
                tarstream.write_member(tar.fileobj, m.offset_data, m.size, f.fileno())
            assert out.read_bytes() == members[m.name]
    reader.drain()


def test_a_member_cut_short_is_an_eof_error(tmp_path):
    raw = _tar({"a": os.urandom(5000)})[:512 + 1000]
    reader = tarstream.ForwardReader([raw])
    with tarfile.open(fileobj=reader, mode="r:") as tar:
        m = tar.next()
        with open(tmp_path / "a", "wb") as f, pytest.raises(EOFError):
            tarstream.write_member(tar.fileobj, m.offset_data, m.size, f.fileno())


def test_in_thread_hands_every_piece_over_and_names_an_upload_cut_short():
    async def upload(fail: bool):
        for i in range(20):
            yield bytes([i]) * 1000
        if fail:
            raise ConnectionResetError("gone")

    assert asyncio.run(bulk.in_thread(upload(False), lambda pieces: b"".join(pieces))) == \
        b"".join(bytes([i]) * 1000 for i in range(20))
    seen = []

    def work(pieces):
        try:
            for p in pieces:
                seen.append(p)
        except errors.InvalidArgument as exc:
            seen.append(exc)
            raise
    with pytest.raises(ConnectionResetError):
        asyncio.run(bulk.in_thread(upload(True), work))
    # The worker sees the pieces in order, then (at once, not after those still queued) the cut.
    assert isinstance(seen[-1], errors.InvalidArgument)
    assert seen[:-1] == [bytes([i]) * 1000 for i in range(len(seen) - 1)]


@pytest.mark.parametrize("size", SIZES)
def test_output_is_byte_for_byte_protobuf_s_exec_and_attach_output(size):
    from berth.types.v1 import stdio_pb2
    data = os.urandom(size)
    for stream in (stdio_pb2.OUTPUT_STREAM_UNSPECIFIED, stdio_pb2.OUTPUT_STREAM_STDOUT,
                   stdio_pb2.OUTPUT_STREAM_STDERR):
        chunk = stdio_pb2.OutputChunk(stream=stream, data=data)
        raw = bulk.output(2, stream, data)
        assert raw.message == container_pb2.ExecProcessResponse(output=chunk).SerializeToString()
        assert raw.message == container_pb2.AttachContainerResponse(output=chunk).SerializeToString()
        assert bytes(raw.data) == chunk.SerializeToString()
        assert container_pb2.ExecProcessResponse.FromString(raw.message).output == chunk
    with pytest.raises(ValueError):
        bulk.output(2, 200, b"x")
