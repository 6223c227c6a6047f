"""The CLI's archive chunks, serialized without protobuf, are the messages protobuf makes."""

import pytest

from berth.engine.v1 import engine_pb2
from berth_cli.archives import BytesMessage
from berth_cli.files import _ArchiveChunk


@pytest.mark.parametrize("n", [1, 127, 128, 16384, (1 << 20) + 1])
def test_chunks_are_protobufs_bytes(n):
    data = bytes(range(256)) * (n // 256) + b"q" * (n % 256)
    assert BytesMessage(1, data).SerializeToString() == engine_pb2.LoadImagesRequest(data=data).SerializeToString()
    assert BytesMessage(2, data).SerializeToString() == engine_pb2.CopyToContainerRequest(chunk=data).SerializeToString()
    raw = engine_pb2.CopyFromContainerResponse(data=data).SerializeToString()
    assert bytes(_ArchiveChunk.FromString(raw)) == data


def test_an_empty_or_other_response_reads_as_protobuf_does():
    assert bytes(_ArchiveChunk.FromString(b"")) == b""
    with_unknown = engine_pb2.CopyFromContainerResponse(data=b"ab").SerializeToString() + b"\x10\x01"
    assert bytes(_ArchiveChunk.FromString(with_unknown)) == b"ab"
