"""The CLI's own gRPC transport against a real grpcio server: unary, server
and client streams, big messages through flow control, and error statuses."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from concurrent import futures

import grpc
import pytest

from berth.engine.v1 import engine_pb2, engine_pb2_grpc
from berth.types.v1 import stdio_pb2
from berth_cli import transport

BIG = 5 * 1024 * 1024 + 17


class FakeEngine(engine_pb2_grpc.EngineServiceServicer):
    def GetVersion(self, request, context):
        return engine_pb2.GetVersionResponse(version="test", api_version="1.0")

    def InspectContainer(self, request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, f"No such container: {request.id} (ü 100%)")

    def GetContainerLogs(self, request, context):
        for i in range(request.tail):
            yield engine_pb2.GetContainerLogsResponse(chunk=stdio_pb2.OutputChunk(
                stream=stdio_pb2.OUTPUT_STREAM_STDOUT, data=f"line {i}\n".encode()))
        if request.follow:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "ended on purpose")

    def LoadImages(self, request_iterator, context):
        digest, total = hashlib.sha256(), 0
        for chunk in request_iterator:
            digest.update(chunk.data)
            total += len(chunk.data)
        return engine_pb2.LoadImagesResponse(images=[engine_pb2.ImageInfo(id=digest.hexdigest(), size=total)])

    def SaveImages(self, request, context):
        yield engine_pb2.SaveImagesResponse(data=b"x" * BIG)


@pytest.fixture(scope="module")
def stub():
    tmp = tempfile.mkdtemp(prefix="/tmp/bt-tr-")
    path = os.path.join(tmp, "s.sock")
    server = grpc.server(futures.ThreadPoolExecutor(4), options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
    engine_pb2_grpc.add_EngineServiceServicer_to_server(FakeEngine(), server)
    server.add_insecure_port(f"unix://{path}")
    server.start()
    channel = transport.Channel(f"unix://{path}")
    yield transport.Stub(channel, engine_pb2.DESCRIPTOR.services_by_name["EngineService"])
    server.stop(0)
    shutil.rmtree(tmp, ignore_errors=True)


def test_unary(stub):
    assert stub.GetVersion(engine_pb2.GetVersionRequest()).version == "test"


def test_error_status_and_message(stub):
    with pytest.raises(transport.RpcError) as err:
        stub.InspectContainer(engine_pb2.InspectContainerRequest(id="nope"))
    assert err.value.code() == transport.StatusCode.NOT_FOUND
    assert err.value.details() == "No such container: nope (ü 100%)"


def test_server_stream_then_error(stub):
    got = []
    with pytest.raises(transport.RpcError) as err:
        for chunk in (reply.chunk for reply in stub.GetContainerLogs(
            engine_pb2.GetContainerLogsRequest(tail=3, follow=True))):
            got.append(chunk.data)
    assert got == [b"line 0\n", b"line 1\n", b"line 2\n"]
    assert err.value.code() == transport.StatusCode.FAILED_PRECONDITION


def test_client_stream_of_many_megabytes(stub):
    chunks = (engine_pb2.LoadImagesRequest(data=os.urandom(1 << 20)) for _ in range(40))
    reply = stub.LoadImages(chunks)
    assert reply.images[0].size == 40 << 20


def test_messages_in_pieces_and_file_ranges_arrive_byte_for_byte(stub, tmp_path):
    """archives.BytesMessage pieces and transport.FileRange pieces (sent with sendfile),
    cut into frames wherever the windows fall, make the very bytes of the messages."""
    from berth_cli.archives import BytesMessage
    content = os.urandom(3 * (1 << 20) + 12345)
    path = tmp_path / "data"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        ranges = [(0, 1 << 20), (1 << 20, 5), (0, 0), ((1 << 20) + 5, len(content) - (1 << 20) - 5)]
        pieces = [transport.FileRange(fd, offset, size) for offset, size in ranges] + [b"tail", b""]
        reply = stub.LoadImages(BytesMessage(1, piece) for piece in pieces)
    finally:
        os.close(fd)
    expected = content[:1 << 20] + content[1 << 20:(1 << 20) + 5] + content[(1 << 20) + 5:] + b"tail"
    assert reply.images[0].size == len(expected)
    assert reply.images[0].id == hashlib.sha256(expected).hexdigest()


def test_a_file_range_past_the_files_end_is_an_error_not_a_hang(stub, tmp_path):
    from berth_cli.archives import BytesMessage
    path = tmp_path / "short"
    path.write_bytes(b"x" * 100_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="became shorter"):
            stub.LoadImages(iter([BytesMessage(1, transport.FileRange(fd, 0, 200_000))]))
    finally:
        os.close(fd)
    # The connection went with the call: the next call has a new one.
    assert stub.GetVersion(engine_pb2.GetVersionRequest()).version == "test"


def test_big_response(stub):
    data = b"".join(c.data for c in stub.SaveImages(engine_pb2.SaveImagesRequest()))
    assert len(data) == BIG


def test_unreachable_daemon_is_unavailable():
    stub = transport.Stub(transport.Channel("unix:///tmp/bt-no-such.sock"),
                          engine_pb2.DESCRIPTOR.services_by_name["EngineService"])
    with pytest.raises(transport.RpcError) as err:
        stub.GetVersion(engine_pb2.GetVersionRequest())
    assert err.value.code() == transport.StatusCode.UNAVAILABLE


class _Trickle:
    """A socket that hands out what it holds a few bytes at a time, in a fixed pattern of
    sizes, so frames and messages end in every possible place across reads."""

    def __init__(self, data: bytes, sizes=(1, 7, 9, 4096, 70_000, 3, 300_000)):
        self.data, self.pos, self.sizes, self.i = data, 0, sizes, 0

    def _n(self, limit: int) -> int:
        n = min(limit, self.sizes[self.i % len(self.sizes)], len(self.data) - self.pos)
        self.i += 1
        return n

    def recv(self, limit: int) -> bytes:
        n = self._n(limit)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def recv_into(self, view) -> int:
        n = self._n(len(view))
        view[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

    def sendall(self, data) -> None:
        pass


def test_frames_and_messages_split_anywhere_arrive_whole():
    """Large frames read straight into their buffer, messages across frames, an empty
    message and small frames between them: every message comes out byte for byte."""
    messages = [os.urandom(300_000), b"", os.urandom(5), os.urandom(1 << 20), b"tail"]
    body = b"".join(b"\0" + len(m).to_bytes(4, "big") + m for m in messages)
    # Cut into DATA frames of awkward sizes (one far above FILL, some tiny).
    frames, pos = b"", 0
    for size in (100_000, 3, 250_000, 9, 900_000, 90_000):
        piece = body[pos:pos + size]
        pos += len(piece)
        frames += transport._frame(transport.DATA, 0, 1, piece)
    frames += transport._frame(transport.DATA, 0, 1, body[pos:])
    assert pos < len(body)
    channel = transport.Channel("unix:/nowhere")
    channel._sock = _Trickle(frames)
    stream = channel._streams[1] = transport._Stream(transport.DEFAULT_WINDOW)
    while channel._sock.pos < len(frames):
        got = channel._read()
        assert got
        with channel._lock:
            channel._take(got)
    assert channel._fill is None and not channel._in
    assert [b"".join(m) if type(m) is tuple else bytes(m) for m in stream.messages] == messages


class _Slow(engine_pb2_grpc.EngineServiceServicer):
    def SaveImages(self, request, context):
        for i in range(24):
            yield engine_pb2.SaveImagesResponse(data=bytes([i]) * (1 << 20) + os.urandom(i))


def test_a_reader_that_stalls_loses_nothing():
    """The server writes far more than the windows hold while the reader sleeps: it waits
    for the reader (flow control), and every byte then arrives in order."""
    import time
    tmp = tempfile.mkdtemp(prefix="/tmp/bt-tr-")
    path = os.path.join(tmp, "s.sock")
    server = grpc.server(futures.ThreadPoolExecutor(2), options=[("grpc.max_send_message_length", 64 << 20)])
    engine_pb2_grpc.add_EngineServiceServicer_to_server(_Slow(), server)
    server.add_insecure_port(f"unix://{path}")
    server.start()
    try:
        stub = transport.Stub(transport.Channel(f"unix://{path}"),
                              engine_pb2.DESCRIPTOR.services_by_name["EngineService"])
        replies = iter(stub.SaveImages(engine_pb2.SaveImagesRequest()))
        first = next(replies)
        time.sleep(2)  # the server fills every window meanwhile
        got = [first.data] + [r.data for r in replies]
        assert len(got) == 24
        for i, data in enumerate(got):
            assert len(data) == (1 << 20) + i and data[:1 << 20] == bytes([i]) * (1 << 20)
    finally:
        server.stop(0)
        shutil.rmtree(tmp, ignore_errors=True)
