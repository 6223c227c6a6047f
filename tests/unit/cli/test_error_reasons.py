"""Errors cross the wire with a machine-readable reason: the services' error interceptor puts
berth's ErrorInfo in the status details, the gateway's clients and the CLI's transport read
it back, and the CLI decides by it (exit 126/127, pull a missing image), never by the text."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading

import grpc
import pytest

import berth_errors
from berth.engine.v1 import engine_pb2, engine_pb2_grpc
from berth_cli import transport
from berth_cli.errors import ENGINE_ERROR, command_status
from services.common import errors, rpc
from services.container.runtime import process_failure


class FailingEngine(engine_pb2_grpc.EngineServicer):
    """Raises what the request names, as domain code does; the interceptor does the rest."""

    async def InspectContainer(self, request, context):
        raise {"image": errors.NotFound("No such image: x:latest", resource=berth_errors.IMAGE),
               "container": errors.NotFound("No such container: x"),
               "conflict": errors.Conflict("in use")}[request.id]

    async def ContainerLogs(self, request, context):
        yield engine_pb2.LogChunk(data=b"one\n")
        raise process_failure('exec: "nosuch": executable file not found in $PATH')

    async def Version(self, request, context):
        raise RuntimeError("a bug")


@pytest.fixture(scope="module")
def server():
    tmp = tempfile.mkdtemp(prefix="/tmp/bt-er-")
    path = os.path.join(tmp, "s.sock")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def serve():
        srv = grpc.aio.server(interceptors=[rpc.ErrorInterceptor()])
        engine_pb2_grpc.add_EngineServicer_to_server(FailingEngine(), srv)
        srv.add_insecure_port(f"unix://{path}")
        await srv.start()
        started.set()
        await stop.wait()
        await srv.stop(0)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    yield loop, f"unix://{path}"
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    shutil.rmtree(tmp, ignore_errors=True)


def cli_stub(address):
    return transport.Stub(transport.Channel(address), engine_pb2.DESCRIPTOR.services_by_name["Engine"])


def test_the_cli_reads_the_reason_and_metadata(server):
    _, address = server
    stub = cli_stub(address)
    with pytest.raises(transport.RpcError) as image:
        stub.InspectContainer(engine_pb2.ContainerRef(id="image"))
    assert image.value.code() == transport.StatusCode.NOT_FOUND
    assert image.value.reason == "NOT_FOUND" and image.value.metadata == {"resource": "image"}
    assert image.value.is_missing(berth_errors.IMAGE)
    with pytest.raises(transport.RpcError) as container:
        stub.InspectContainer(engine_pb2.ContainerRef(id="container"))
    assert container.value.reason == "NOT_FOUND" and not container.value.is_missing(berth_errors.IMAGE)
    with pytest.raises(transport.RpcError) as conflict:
        stub.InspectContainer(engine_pb2.ContainerRef(id="conflict"))
    assert (conflict.value.code(), conflict.value.reason) == (transport.StatusCode.ABORTED, "CONFLICT")


def test_a_reason_after_streamed_messages(server):
    _, address = server
    got = []
    with pytest.raises(transport.RpcError) as err:
        for chunk in cli_stub(address).ContainerLogs(engine_pb2.ContainerLogsRequest()):
            got.append(chunk.data)
    assert got == [b"one\n"]
    assert err.value.reason == "INVALID_ARGUMENT" and command_status(err.value) == 127


def test_an_unexpected_error_has_no_reason(server):
    _, address = server
    with pytest.raises(transport.RpcError) as err:
        cli_stub(address).Version(engine_pb2.google_dot_protobuf_dot_empty__pb2.Empty())
    assert err.value.code() == transport.StatusCode.INTERNAL
    assert err.value.reason == "" and err.value.metadata == {} and command_status(err.value) == ENGINE_ERROR


def test_the_gateway_re_raises_the_same_kind_with_its_metadata(server):
    loop, address = server

    async def call():
        channel = grpc.aio.insecure_channel(address)
        try:
            client = rpc.Client(engine_pb2_grpc.EngineStub(channel), channel)
            with pytest.raises(errors.NotFound) as err:
                await client.InspectContainer(engine_pb2.ContainerRef(id="image"))
            return err.value
        finally:
            await channel.close()

    exc = asyncio.run_coroutine_threadsafe(call(), loop).result(10)
    assert exc.message == "No such image: x:latest" and exc.metadata == {"resource": "image"}


@pytest.mark.parametrize("message,code", [
    ('exec: "nosuch": executable file not found in $PATH', 127),
    ("exec: /etc/passwd: permission denied", 126),
    ("open /x: no such file or directory", 127),
    ("No such image: nosuch:latest", 125),
])
def test_exec_status(message, code):
    """runc's words are read once, where they arise (the container service); the CLI gets the
    cause as data over the wire."""
    exc = process_failure(message)
    details = berth_errors.status_details(exc, grpc.StatusCode.INVALID_ARGUMENT.value[0])
    err = transport.RpcError(transport.StatusCode.INVALID_ARGUMENT, message, details)
    assert command_status(err) == code


def test_details_from_another_domain_or_garbage_are_ignored():
    from google.rpc import error_details_pb2, status_pb2
    status = status_pb2.Status(code=5, message="x")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="NOT_FOUND", domain="example.com"))
    assert berth_errors.error_info(status.SerializeToString()) is None
    assert berth_errors.error_info(b"\xff\xff not a status") is None
    assert isinstance(berth_errors.from_status("NOT_FOUND", "gone", b"\xff"), berth_errors.NotFound)
