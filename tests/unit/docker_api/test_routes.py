"""Route-level checks of the Docker API server against fake backends: versions, framing, the hijack."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import pytest
from aiohttp import web

from berth.engine.v1 import engine_pb2
from berth.types.v1 import stdio_pb2
from services.common import errors
from services.gateway.backends import Backends
from services.gateway.docker.hijack import frame
from services.gateway.docker.server import make_app

CID = "c" * 64


class FakeExecs:
    """Exec start as the gateway's stream sees it: start, stdin chunks, resizes, close_stdin."""

    def __init__(self):
        self.seen: list[str] = []

    async def inspect(self, exec_id):
        if exec_id != "e1":
            raise errors.NotFound(f"No such exec instance: {exec_id}")
        return engine_pb2.ExecInfo(id="e1", container_id=CID, cmd=["cat"], open_stdin=True)

    async def start(self, requests):
        async for req in requests:
            kind = req.WhichOneof("msg")
            self.seen.append(kind)
            if kind == "stdin":
                yield engine_pb2.StartExecResponse(
                    output=stdio_pb2.OutputChunk(stream=1, data=req.stdin.upper()))
            elif kind == "close_stdin":
                yield engine_pb2.StartExecResponse(exit_code=0)
                return


    async def attach(self, requests, next_run=False):
        """The container's stdio: attached at once, output only after start, as a real one."""
        first = await anext(aiter(requests))
        yield engine_pb2.AttachContainerResponse(attached=first.start.container)
        await self.containers.started.wait()
        yield engine_pb2.AttachContainerResponse(output=stdio_pb2.OutputChunk(stream=1, data=b"out\n"))
        yield engine_pb2.AttachContainerResponse(output=stdio_pb2.OutputChunk(stream=2, data=b"err\n"))
        yield engine_pb2.AttachContainerResponse(exit=engine_pb2.ExitStatus(exit_code=3))


class FakeSystem:
    def version(self):
        return engine_pb2.GetVersionResponse(version="0.1.0", os="linux", arch="x86_64", runtime="runc")


class FakeContainers:
    def __init__(self):
        self.started = asyncio.Event()

    async def inspect(self, ref):
        if ref not in ("web", CID):
            raise errors.NotFound(f"No such container: {ref}")
        return engine_pb2.ContainerInfo(id=CID, name="web", state=engine_pb2.ContainerState(status="created"))

    async def start(self, ref):
        self.started.set()

    async def logs(self, ref, follow, tail, since, until, chunked=False):
        # The container service's bulk mode: several records of one stream in one chunk.
        yield stdio_pb2.OutputChunk(stream=1, data=b"a\nhello\n")
        yield stdio_pb2.OutputChunk(stream=2, data=b"b\npartial")


@pytest.fixture
async def server(tmp_path):
    execs = FakeExecs()
    execs.containers = FakeContainers()
    gw = Backends(containers=execs.containers, execs=execs, system=FakeSystem(), images=None,
                  networks=None, volumes=None, registry=None)
    runner = web.AppRunner(make_app(gw), handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    path = str(tmp_path / "d.sock")
    await web.UnixSite(runner, path).start()
    try:
        yield path, gw
    finally:
        await runner.cleanup()


async def _request(path: str, head: str, body: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(head.encode() + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def _split(response: bytes) -> tuple[str, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.decode(), body


def test_frame_header_is_stream_three_zeros_and_big_endian_length():
    assert frame(1, b"out1\n") == b"\x01\x00\x00\x00\x00\x00\x00\x05out1\n"
    assert struct.unpack(">BxxxI", frame(2, b"x" * 300)[:8]) == (2, 300)


async def test_ping_head_and_get_carry_the_api_version(server):
    path, _ = server
    for method in ("HEAD", "GET"):
        head, _ = _split(await _request(path, f"{method} /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"))
        assert head.startswith("HTTP/1.1 200")
        assert "Api-Version: 1.47" in head and "Docker-Experimental: false" in head


@pytest.mark.parametrize("version, status, word", [("1.40", 400, "too old"), ("1.99", 400, "too new"),
                                                   ("1.41", 200, None), ("1.47", 200, None)])
async def test_versions_outside_the_range_are_refused_with_dockers_message(server, version, status, word):
    path, _ = server
    head, body = _split(await _request(path, f"GET /v{version}/version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"))
    assert head.startswith(f"HTTP/1.1 {status}")
    if word:
        assert f"client version {version} is {word}" in json.loads(body)["message"]


async def test_unknown_container_is_a_404_json_message(server):
    path, _ = server
    head, body = _split(await _request(path, "GET /v1.47/containers/nope/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"))
    assert head.startswith("HTTP/1.1 404")
    assert "Content-Type: application/json\r\n" in head + "\r\n"
    assert json.loads(body) == {"message": "No such container: nope"}


async def test_logs_are_framed_per_line_per_stream_and_filtered(server):
    path, _ = server
    _, body = _split(await _request(
        path, "GET /v1.47/containers/web/logs?stdout=1&stderr=1 HTTP/1.0\r\nHost: d\r\n\r\n"))
    # A frame per line, as docker sends a frame per logged message (docker-py yields each).
    assert body == frame(1, b"a\n") + frame(1, b"hello\n") + frame(2, b"b\n") + frame(2, b"partial")
    _, body = _split(await _request(path, "GET /v1.47/containers/web/logs?stderr=1 HTTP/1.0\r\nHost: d\r\n\r\n"))
    assert body == frame(2, b"b\n") + frame(2, b"partial")


async def test_attach_upgrades_before_start_and_survives_the_clients_half_close(server):
    """The docker CLI attaches, half-closes at once (no stdin), then starts: output must still come."""
    path, gw = server
    sock = socket.socket(socket.AF_UNIX)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, path)
    await loop.sock_sendall(sock, b"POST /v1.47/containers/web/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                                  b"Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        received += await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert b"Upgrade: tcp" in head
    assert not gw.containers.started.is_set()
    sock.shutdown(socket.SHUT_WR)
    await gw.containers.start("web")
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
        if not chunk:
            break
        rest += chunk
    sock.close()
    assert rest == frame(1, b"out\n") + frame(2, b"err\n")


async def test_attach_to_unknown_container_is_a_plain_404(server):
    path, _ = server
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b"POST /containers/nope/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
                 b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 404")


async def test_not_yet_implemented_routes_answer_501(server):
    path, _ = server
    head, body = _split(await _request(path, "GET /v1.47/containers/web/attach/ws HTTP/1.1\r\nHost: d\r\n"
                                             "Connection: close\r\n\r\n"))
    assert head.startswith("HTTP/1.1 501")
    assert "not implemented" in json.loads(body)["message"]


async def test_exec_start_forwards_stdin_resize_and_the_half_close(server):
    """stdin after the 101 reaches the exec; a resize on another connection joins the same stream;
    the client's half-close becomes close_stdin; output comes back framed."""
    path, gw = server
    reader, writer = await asyncio.open_unix_connection(path)
    body = b'{"Detach":false,"Tty":false}'
    writer.write(b"POST /v1.47/exec/e1/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    writer.write(b"hello\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(14), 5) == frame(1, b"HELLO\n")
    resize, _ = _split(await _request(path, "POST /v1.47/exec/e1/resize?h=40&w=100 HTTP/1.1\r\nHost: d\r\n"
                                            "Connection: close\r\nContent-Length: 0\r\n\r\n"))
    assert resize.startswith("HTTP/1.1 200")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closes when the exec ends
    writer.close()
    assert gw.execs.seen == ["start", "stdin", "resize", "close_stdin"]


async def test_exec_start_of_unknown_exec_is_a_plain_404(server):
    path, _ = server
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b"POST /v1.47/exec/nope/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                 b"Content-Length: 2\r\n\r\n{}")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 404")
