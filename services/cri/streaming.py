"""The CRI streaming server: Exec, Attach and PortForward as the kubelet's clients stream them.

The CRI's Exec/Attach/PortForward answer a URL; the client (kubelet, crictl,
critest) then POSTs to it, upgrades the connection to SPDY/3.1 (spdy.py) and
opens one stream per channel: "error" (the final status, as JSON), "stdin",
"stdout", "stderr", "resize" (JSON terminal sizes) for exec and attach
(protocol v4.channel.k8s.io); a "data" and an "error" stream per forwarded
connection for port-forward (portforward.k8s.io). Each URL holds a random
single-use token that expires after a minute, as the kubelet's server does;
the server listens on the loopback only.

Exec runs through the container service's ExecProcess, attach through
AttachContainer; port-forward connects to the pod's address on the bridge
(or the loopback, for a pod on the host's network).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass

import structlog

from berth.container.v1 import container_pb2
from berth.types.v1 import stdio_pb2
from services.common import errors
from services.cri import spdy

log = structlog.get_logger(__name__)

TOKEN_TTL = 60.0
STREAMS_WAIT = 30.0
EXEC_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io")
PORT_FORWARD_PROTOCOL = "portforward.k8s.io"


@dataclass(frozen=True)
class Pending:
    kind: str  # "exec", "attach" or "portforward"
    request: object
    # portforward: where to connect; exec/attach: the container's full id.
    target: str
    expires: float


class StreamingServer:
    def __init__(self, container, host: str = "127.0.0.1", port: int = 0):
        self._container = container
        self._host, self._port = host, port
        self._pending: dict[str, Pending] = {}
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("streaming_server_started", address=f"{self._host}:{self._port}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    def _url(self, kind: str, request, target: str) -> str:
        now = time.monotonic()
        for token in [t for t, p in self._pending.items() if p.expires < now]:
            del self._pending[token]
        token = secrets.token_urlsafe(24)
        self._pending[token] = Pending(kind, request, target, now + TOKEN_TTL)
        return f"http://{self._host}:{self._port}/{kind}/{token}"

    def exec_url(self, request, container_id: str) -> str:
        if not request.cmd:
            raise errors.InvalidArgument("exec command is empty")
        if not (request.stdin or request.stdout or request.stderr):
            raise errors.InvalidArgument("one of stdin, stdout or stderr must be set")
        if request.tty and request.stderr:
            raise errors.InvalidArgument("tty and stderr cannot both be set: a terminal has one output")
        return self._url("exec", request, container_id)

    def attach_url(self, request, container_id: str) -> str:
        if not (request.stdin or request.stdout or request.stderr):
            raise errors.InvalidArgument("one of stdin, stdout or stderr must be set")
        return self._url("attach", request, container_id)

    def port_forward_url(self, request, address: str) -> str:
        return self._url("portforward", request, address)

    # -- one connection -------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._sessions.add(task)
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:
            log.exception("streaming_session_failed")
        finally:
            self._sessions.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _session(self, reader, writer) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (lines[0].split(" ") + ["", "", ""])[:3]
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers.setdefault(name.strip().lower(), []).extend(v.strip() for v in value.split(","))
        parts = path.split("?", 1)[0].strip("/").split("/")
        pending = self._pending.pop(parts[1], None) if len(parts) == 2 else None
        if pending is None or pending.kind != parts[0] or pending.expires < time.monotonic():
            return await _http_error(writer, "404 Not Found", "unknown or expired streaming URL\n")
        if "spdy/3.1" not in [u.lower() for u in headers.get("upgrade", [])]:
            return await _http_error(writer, "400 Bad Request", "this server streams over SPDY/3.1 only\n")
        offered = headers.get("x-stream-protocol-version", [])
        wanted = (PORT_FORWARD_PROTOCOL,) if pending.kind == "portforward" else EXEC_PROTOCOLS
        protocol = next((p for p in wanted if p in offered), "")
        if not protocol:
            return await _http_error(writer, "403 Forbidden",
                                     f"no common stream protocol: offered {offered}, served {list(wanted)}\n")
        writer.write((f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                      f"X-Stream-Protocol-Version: {protocol}\r\n\r\n").encode())
        await writer.drain()
        conn = spdy.Connection(reader, writer)
        reading = asyncio.create_task(conn.serve())
        try:
            if pending.kind == "portforward":
                await self._port_forward(conn, pending.target)
            else:
                await self._remote_command(conn, pending)
        finally:
            await conn.close()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    # -- exec and attach ------------------------------------------------------------------

    async def _remote_command(self, conn: spdy.Connection, pending: Pending) -> None:
        req = pending.request
        expected = {"error"}
        if req.stdin:
            expected.add("stdin")
        if req.stdout:
            expected.add("stdout")
        if req.stderr and not req.tty:
            expected.add("stderr")
        if req.tty:
            expected.add("resize")
        streams: dict[str, spdy.Stream] = {}
        deadline = time.monotonic() + STREAMS_WAIT
        while not expected <= set(streams):
            try:
                stream = await asyncio.wait_for(conn.opened.get(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if stream is None:
                return
            streams[stream.type] = stream
        # "resize" may be missing (v2 clients have none); every other stream must be there.
        if not (expected - {"resize"}) <= set(streams):
            log.warning("streams_missing", expected=sorted(expected), got=sorted(streams))
            return
        inputs: asyncio.Queue = asyncio.Queue()
        pumps = []
        if "stdin" in streams:
            pumps.append(asyncio.create_task(_pump_stdin(streams["stdin"], inputs)))
        if "resize" in streams:
            pumps.append(asyncio.create_task(_pump_resize(streams["resize"], inputs)))
        status = {"metadata": {}, "status": "Success"}
        try:
            if pending.kind == "exec":
                code = await self._exec(pending, inputs, streams)
                if code:
                    status = {"metadata": {}, "status": "Failure",
                              "message": f"command terminated with non-zero exit code: exit status {code}",
                              "reason": "NonZeroExitCode",
                              "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
            else:
                await self._attach(pending, inputs, streams)
        except errors.BerthError as exc:
            status = {"metadata": {}, "status": "Failure", "message": exc.message}
        finally:
            for task in pumps:
                task.cancel()
        await streams["error"].write(json.dumps(status).encode())
        for stream in streams.values():
            await stream.close()

    async def _exec(self, pending: Pending, inputs: asyncio.Queue, streams) -> int:
        req = pending.request
        start = container_pb2.ExecProcessRequest(start=container_pb2.ExecStart(
            container_id=pending.target, exec_id=secrets.token_hex(32),
            process=container_pb2.Process(args=list(req.cmd)), tty=req.tty, stdin=req.stdin))
        code = -1
        async for reply in self._container.ExecProcess(_requests(start, inputs)):
            kind = reply.WhichOneof("msg")
            if kind == "output":
                await _output(streams, reply.output)
            elif kind == "exit_code":
                code = reply.exit_code
        inputs.put_nowait(None)
        return code

    async def _attach(self, pending: Pending, inputs: asyncio.Queue, streams) -> None:
        start = container_pb2.AttachContainerRequest(start=container_pb2.AttachStart(
            container_id=pending.target, stdin=pending.request.stdin))
        async for reply in self._container.AttachContainer(_requests(start, inputs)):
            if reply.WhichOneof("msg") == "output":
                await _output(streams, reply.output)
        inputs.put_nowait(None)

    # -- port-forward ---------------------------------------------------------------------

    async def _port_forward(self, conn: spdy.Connection, address: str) -> None:
        errors_by_request: dict[str, spdy.Stream] = {}
        data_by_request: dict[str, spdy.Stream] = {}
        tasks = set()
        while (stream := await conn.opened.get()) is not None:
            rid = stream.headers.get("requestid", "")
            (errors_by_request if stream.type == "error" else data_by_request)[rid] = stream
            if rid in errors_by_request and rid in data_by_request:
                task = asyncio.create_task(self._forward(
                    address, data_by_request.pop(rid), errors_by_request.pop(rid)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _forward(self, address: str, data: spdy.Stream, err: spdy.Stream) -> None:
        port = data.headers.get("port", "")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, int(port)), 10)
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            await err.write(f"error forwarding port {port} to pod at {address}: {exc}".encode())
            await err.close()
            await data.close()
            return

        async def upstream():
            while chunk := await data.read():
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        up = asyncio.create_task(upstream())
        try:
            while chunk := await reader.read(spdy.MAX_DATA):
                await data.write(chunk)
        except ConnectionError:
            pass
        finally:
            await data.close()
            await err.close()
            try:
                await asyncio.wait_for(up, 5)
            except (asyncio.TimeoutError, ConnectionError):
                up.cancel()
            writer.close()


async def _requests(start, inputs: asyncio.Queue):
    """The ExecProcess/AttachContainer request stream: start, then stdin and resizes as they come."""
    yield start
    cls = type(start)
    while (item := await inputs.get()) is not None:
        kind, value = item
        if kind == "stdin":
            yield cls(stdin=value)
        elif kind == "close_stdin":
            yield cls(close_stdin=True)
        elif kind == "resize":
            yield cls(resize=value)


async def _pump_stdin(stream: spdy.Stream, inputs: asyncio.Queue) -> None:
    while chunk := await stream.read():
        inputs.put_nowait(("stdin", chunk))
    inputs.put_nowait(("close_stdin", True))


async def _pump_resize(stream: spdy.Stream, inputs: asyncio.Queue) -> None:
    decoder, buffer = json.JSONDecoder(), ""
    while chunk := await stream.read():
        buffer += chunk.decode(errors="replace")
        while buffer.strip():
            try:
                size, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                break
            buffer = buffer.lstrip()[end:]
            inputs.put_nowait(("resize", stdio_pb2.TerminalSize(
                height=int(size.get("Height", 0)), width=int(size.get("Width", 0)))))


async def _output(streams: dict[str, spdy.Stream], chunk) -> None:
    target = streams.get("stderr") if chunk.stream == stdio_pb2.OUTPUT_STREAM_STDERR else None
    target = target or streams.get("stdout")
    if target is not None:
        await target.write(chunk.data)


async def _http_error(writer, status: str, body: str) -> None:
    writer.write((f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n{body}").encode())
    await writer.drain()
