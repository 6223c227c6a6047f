"""The CLI's own gRPC transport against a real grpcio server: unary, server
and client streams, big messages through flow control, and error statuses."""

from __future__ import annotations

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
        total = sum(len(chunk.data) for chunk in request_iterator)
        return engine_pb2.LoadImagesResponse(images=[engine_pb2.ImageInfo(id=str(total), size=total)])

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


def test_big_response(stub):
    data = b"".join(c.data for c in stub.SaveImages(engine_pb2.SaveImagesRequest()))
    assert len(data) == BIG


def test_unreachable_daemon_is_unavailable():
    stub = transport.Stub(transport.Channel("unix:///tmp/bt-no-such.sock"),
                          engine_pb2.DESCRIPTOR.services_by_name["EngineService"])
    with pytest.raises(transport.RpcError) as err:
        stub.GetVersion(engine_pb2.GetVersionRequest())
    assert err.value.code() == transport.StatusCode.UNAVAILABLE
