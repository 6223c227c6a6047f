"""A small gRPC client for the CLI: its own HTTP/2 framing over a unix or TCP socket.

Why not grpcio here: importing grpcio costs ~80 ms and its channel teardown
~90 ms more, in a process that lives for one call. Why not h2 either: importing it
costs ~60 ms (it loads logging, dataclasses, enum-heavy state machines), more than
the interpreter's own start. A gRPC client needs little of HTTP/2: one connection,
client-initiated streams, flow control both ways, SETTINGS/PING/GOAWAY answered;
headers.py does HPACK. gRPC's own framing is a 5-byte message prefix and the status
in trailers. The services themselves use grpcio.

Stubs are built from the generated service descriptors, so a CLI verb calls
`stub.Run(request)` exactly as it would on a grpcio stub, and errors carry the
same `code()`/`details()`, plus the rich status (grpc-status-details-bin) from which
berth_cli.errors reads the engine's reason.
"""

from __future__ import annotations

# _socket, not socket: the socket module turns its constants into enums at import (~5 ms).
import _socket as socket
import _thread
import os
import struct
import sys

from berth_cli import headers as hpack
from berth_cli.errors import RpcError, StatusCode, Unreachable

TYPE_CHECKING = False
if TYPE_CHECKING:  # for annotations only: importing collections.abc loads all of collections
    from collections.abc import Iterable, Iterator

MAX_MESSAGE = 64 * 1024 * 1024
# Large windows: image tarballs stream through here and acknowledging every
# 64 KiB would cost a round trip each.
WINDOW = 16 * 1024 * 1024
# The largest DATA frame the server may send us (HTTP/2's own limit): a 1 MiB message
# in one frame rather than 64 of the default 16 KiB, each parsed here in Python.
MAX_FRAME = (1 << 24) - 1
# A frame at least this large that a read ends inside of is read into a buffer of its own
# (recv_into), not gathered from pieces and joined.
FILL = 1 << 16
# What one recv asks for: a large message arrives in a few reads, not in 64 KiB pieces.
RECV = 1 << 20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags (RFC 9113 section 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0x9)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
SETTINGS_HEADER_TABLE_SIZE, SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_FRAME_SIZE = (
    0x1, 0x2, 0x4, 0x5)
DEFAULT_WINDOW = 65535
CANCEL = 0x8


class ProtocolError(Exception):
    """The daemon broke HTTP/2's rules; every call on the connection fails with it."""


def _tcp_connection(host: str, port: int):
    """socket.create_connection's loop: the first address that answers."""
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"no address for {host}")


def _wrap_tls(sock, host: str, ca: str, cert: str, key: str, verify: bool):
    """Mutual TLS over a connected TCP socket, speaking h2 as gRPC over TLS must (ALPN).
    ssl is imported here only: unix-socket calls never pay for it."""
    import socket as socket_mod
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile=ca)
    else:
        # docker's --tls without --tlsverify: encrypted, the engine's certificate not checked.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    # The ssl module wraps only socket.socket; _socket's is its base class.
    return ctx.wrap_socket(socket_mod.socket(fileno=sock.detach()), server_hostname=host)
def _frame_header(kind: int, flags: int, stream_id: int, length: int) -> bytes:
    return struct.pack(">I", length)[1:] + bytes((kind, flags)) + struct.pack(">I", stream_id)


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _frame_header(kind, flags, stream_id, len(payload)) + payload


class FileRange:
    """A piece of a message that is `size` bytes of an open file from `offset`: the
    transport sends it from the file to the socket (sendfile), never reading it into
    this process. It must still hold those bytes when sent."""

    __slots__ = ("fd", "offset", "size")

    def __init__(self, fd: int, offset: int, size: int):
        self.fd, self.offset, self.size = fd, offset, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice) -> FileRange:
        start, stop, _ = part.indices(self.size)
        return FileRange(self.fd, self.offset + start, max(0, stop - start))

    def read(self) -> bytes:
        data = os.pread(self.fd, self.size, self.offset)
        if len(data) < self.size:
            raise _shrunk()
        return data


def _shrunk() -> ValueError:
    return ValueError("a file became shorter while it was being sent")


class _WindowOpened:
    """A channel's window Condition, made (with the threading module, ~2 ms) when something
    first waits on it; until then there is no waiter to notify. Used with the lock held,
    as a Condition is."""

    def __init__(self, channel: Channel):
        self._channel = channel

    def wait(self, timeout: float | None = None) -> bool:
        import threading
        condition = self._channel._window_opened = threading.Condition(self._channel._lock)
        return condition.wait(timeout)

    @staticmethod
    def notify_all() -> None:
        pass


class Channel:
    """One HTTP/2 connection to the gateway; calls run one at a time per stream."""

    def __init__(self, target: str, tls: tuple[str, str, str, bool] | None = None):
        self.target = target
        self.tls = tls
        self._sock: socket.socket | None = None
        # Guards the connection state and the socket's write side: a stdin
        # pump thread sends while the main thread receives.
        self._lock = _thread.allocate_lock()  # threading.Lock, without importing threading
        self._window_opened = _WindowOpened(self)  # a Condition on _lock once waited on
        self._streams: dict[int, _Stream] = {}
        self._out = bytearray()
        # The pieces of a frame not yet whole, their length, and the length it needs.
        self._in: list[bytes] = []
        self._in_len = 0
        self._in_need = 9
        # A large frame whose rest is being read straight into its buffer:
        # [buffer, bytes in it, kind, flags, stream, the frame's start (a view of an earlier read)].
        self._fill: list | None = None
        self._decoder = hpack.Decoder()
        self._next_stream = 1
        self._send_window = DEFAULT_WINDOW      # the connection's, for what we send
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = 16384
        self._unacked = 0                       # bytes received and not yet acknowledged
        self._partial: tuple[int, int, bytearray] | None = None  # HEADERS awaiting CONTINUATION

    # -- connection -------------------------------------------------------

    def _connect(self) -> None:
        target = self.target
        try:
            if target.startswith("unix:"):
                path = "/" + target[len("unix:"):].lstrip("/")
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(path)
            else:
                if target.startswith("tcp://"):
                    target = target[len("tcp://"):]
                host, _, port = target.rpartition(":")
                sock = _tcp_connection(host or "localhost", int(port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.tls is not None:
                    sock = _wrap_tls(sock, host or "localhost", *self.tls)
        except (OSError, ValueError) as exc:
            raise Unreachable(f"failed to connect to {self.target}: {exc}") from None
        settings = struct.pack(">HIHIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, WINDOW,
                               SETTINGS_MAX_FRAME_SIZE, MAX_FRAME)
        self._out += PREFACE + _frame(SETTINGS, 0, 0, settings)
        self._out += _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", WINDOW - DEFAULT_WINDOW))
        self._sock = sock

    def _flush(self) -> None:
        if self._out:
            data, self._out = bytes(self._out), bytearray()
            self._sock.sendall(data)

    # -- calls ------------------------------------------------------------

    def call(self, path: str, requests: Iterable, response_type, pump: bool = False) -> Call:
        """Start a call; iterate the result for the responses (RpcError on a bad status).

        With `pump`, requests are sent from a thread while responses arrive
        (bidirectional streams such as an interactive stdin)."""
        return Call(self, path, requests, response_type, pump)

    def _run(self, call: Call, path: str, requests: Iterable, response_type, pump: bool) -> Iterator:
        with self._lock:
            if self._sock is None:
                self._connect()
            stream_id = self._next_stream
            self._next_stream += 2
            stream = self._streams[stream_id] = _Stream(self._peer_initial_window)
            call.stream_id, call.stream = stream_id, stream
            block = hpack.encode([
                (b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
                (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
                (b"te", b"trailers"), (b"user-agent", b"berth-cli"),
            ])
            self._out += _frame(HEADERS, END_HEADERS, stream_id, block)
            try:
                if pump:  # else the headers go with the request, in one write (_send_all)
                    self._flush()
            except OSError as exc:
                raise Unreachable(f"failed to talk to {self.target}: {exc}") from None
        if pump:
            import threading
            threading.Thread(target=self._send_all, args=(stream_id, stream, requests), daemon=True).start()
        else:
            self._send_all(stream_id, stream, requests)
        try:
            yield from self._receive(stream_id, stream, response_type)
        finally:
            self._streams.pop(stream_id, None)

    def _send_all(self, stream_id: int, stream: _Stream, requests: Iterable) -> None:
        try:
            # A unary call's one message waits for its end, to go in one write; a stream's
            # are sent as they come.
            single = isinstance(requests, tuple) and len(requests) == 1
            for request in requests:
                # A message that comes in pieces (archives.BytesMessage: a chunk of an
                # archive) is sent as those pieces, not joined into one first.
                parts = getattr(request, "wire_parts", None)
                body = parts() if parts is not None else (request.SerializeToString(),)
                self._send(stream, stream_id, (struct.pack(">BI", 0, sum(map(len, body))), *body))
                if not single:
                    with self._lock:
                        self._flush()
                if stream.ended:
                    return
            with self._lock:
                if not stream.ended:
                    self._out += _frame(DATA, END_STREAM, stream_id)
                    self._flush()
        except OSError:
            pass  # the server ended the call first; its status tells why

    def _send(self, stream: _Stream, stream_id: int, parts) -> None:
        """One gRPC message, given as the pieces it is made of, in DATA frames."""
        try:
            self._send_frames(stream, stream_id, parts)
        except ValueError:
            # A file shorter than promised, inside a frame already begun: the connection's
            # framing is lost, so the connection goes with the call.
            with self._lock:
                self._fail_all(StatusCode.CANCELLED, "the call's input failed")
                self._out.clear()
                self._sock.close()
                self._sock = None
            raise

    def _send_frames(self, stream: _Stream, stream_id: int, parts) -> None:
        threading = sys.modules.get("threading")  # not imported: no thread but the main one
        pumped = threading is not None and threading.current_thread() is not threading.main_thread()
        views = [p if isinstance(p, FileRange) else memoryview(p) for p in parts if len(p)]
        views.reverse()  # taken from the end
        with self._lock:
            while views and not stream.ended:
                window = min(self._send_window, stream.send_window, self._peer_max_frame)
                if window <= 0:
                    self._flush()  # what is queued may be what the peer waits for to open it
                    # A pump thread waits for the receiving thread to read the
                    # WINDOW_UPDATE; a sender with no receiver reads it itself, at
                    # once (waiting first would stall every time the window closes).
                    if pumped:
                        self._window_opened.wait(timeout=0.05)
                    else:
                        self._pump_once()
                    continue
                frame, size = [], 0
                while views and size < window:
                    view = views.pop()
                    if len(view) > window - size:
                        views.append(view[window - size:])
                        view = view[:window - size]
                    frame.append(view)
                    size += len(view)
                self._send_window -= size
                stream.send_window -= size
                self._out += _frame_header(DATA, 0, stream_id, size)
                if size < FILL:
                    # A small message joins what is queued (the call's headers, its end),
                    # so a unary call is one write.
                    for view in frame:
                        self._out += view.read() if isinstance(view, FileRange) else view
                    continue
                # The frame's payload straight from the caller's buffers: a message of
                # megabytes is not copied into the frame.
                queued, self._out = bytes(self._out), bytearray()
                self._write([queued, *frame])

    def _write(self, buffers: list) -> None:
        """All of `buffers` (bytes-like or FileRange), in order, with as few system calls
        as the socket allows: the bytes before a file's range in one vectored write, the
        range with sendfile."""
        if self.tls is not None:  # an SSL socket has no vectored write, nor sendfile
            for buf in buffers:
                self._sock.sendall(buf.read() if isinstance(buf, FileRange) else buf)
            return
        while buffers:
            if isinstance(buffers[0], FileRange):
                self._send_range(buffers.pop(0))
                continue
            ahead = next((i for i, buf in enumerate(buffers) if isinstance(buf, FileRange)), len(buffers))
            sent = self._sock.sendmsg(buffers[:ahead])
            done = 0
            while done < ahead and sent >= len(buffers[done]):
                sent -= len(buffers[done])
                done += 1
            del buffers[:done]
            if sent:
                buffers[0] = memoryview(buffers[0])[sent:]

    def _send_range(self, part: FileRange) -> None:
        offset, left = part.offset, part.size
        while left:
            sent = os.sendfile(self._sock.fileno(), part.fd, offset, left)
            if not sent:
                raise _shrunk()
            offset += sent
            left -= sent

    def _pump_once(self) -> None:
        """Read what the server sent (lock held), so window updates are seen."""
        got = self._read()
        if not got:
            self._fail_all(StatusCode.UNAVAILABLE, "the daemon closed the connection")
            return
        self._take(got)

    def _receive(self, stream_id: int, stream: _Stream, response_type) -> Iterator:
        while True:
            while stream.messages:
                yield _message(response_type, stream.messages.pop(0))
            if stream.ended:
                break
            try:
                got = self._read()
            except OSError as exc:
                got, reason = b"", str(exc)
            else:
                reason = "the daemon closed the connection"
            with self._lock:
                if not got:
                    stream.fail(StatusCode.UNAVAILABLE, reason)
                else:
                    self._take(got)
        while stream.messages:
            yield _message(response_type, stream.messages.pop(0))
        if stream.status != StatusCode.OK:
            raise RpcError(stream.status, stream.details, stream.status_details)

    # -- incoming frames (lock held) --------------------------------------------

    def _fail_all(self, code: StatusCode, details: str, above: int = 0) -> None:
        for stream_id, stream in self._streams.items():
            if stream_id > above:
                stream.fail(code, details)
        self._window_opened.notify_all()

    def _read(self) -> bytes | int:
        """One read of the socket: the bytes read, or while a large frame is being
        filled, how many bytes went straight into it (0 or b"": the daemon hung up).
        Only the receiving thread reads."""
        if self._fill is not None:
            buf, got = self._fill[0], self._fill[1]
            return self._sock.recv_into(memoryview(buf)[got:])
        return self._sock.recv(RECV)

    def _take(self, got: bytes | int) -> None:
        """What _read brought (lock held)."""
        if isinstance(got, bytes):
            self._dispatch(got)
            return
        fill = self._fill
        fill[1] += got
        if fill[1] == len(fill[0]):
            self._fill = None
            buf, _, kind, flags, stream_id, start = fill
            try:
                if kind == DATA and not flags & PADDED:
                    # The payload in its two pieces, as read: not copied into one.
                    self._data(flags, stream_id, (start, memoryview(buf)))
                else:
                    self._frame(kind, flags, stream_id, memoryview(bytes(start) + buf))
            except (ProtocolError, hpack.HPACKError) as exc:
                self._fail_all(StatusCode.INTERNAL, f"protocol error: {exc}")
            self._flush()

    def _dispatch(self, data: bytes) -> None:
        """Handles the whole frames in what was read. Payloads are views into `data`:
        a frame of megabytes is not copied on its way to its stream; the pieces of a
        frame that spans reads wait in a list and are joined once, when it is whole."""
        if self._in:
            self._in.append(data)
            self._in_len += len(data)
            if self._in_len < self._in_need:
                return
            data = b"".join(self._in)
            self._in.clear()
        view, pos, end = memoryview(data), 0, len(data)
        try:
            while end - pos >= 9:
                length = int.from_bytes(view[pos:pos + 3], "big")
                if end - pos < 9 + length:
                    break
                kind, flags = view[pos + 3], view[pos + 4]
                stream_id = int.from_bytes(view[pos + 5:pos + 9], "big") & 0x7FFFFFFF
                payload = view[pos + 9:pos + 9 + length]
                pos += 9 + length
                self._frame(kind, flags, stream_id, payload)
            if pos < end and end - pos >= 9 and length >= FILL:
                # A large frame begun: the rest of it is read into its own buffer.
                start = view[pos + 9:]
                self._fill = [bytearray(length - len(start)), 0, view[pos + 3], view[pos + 4],
                              int.from_bytes(view[pos + 5:pos + 9], "big") & 0x7FFFFFFF, start]
            elif pos < end:
                rest = data[pos:]
                self._in.append(rest)
                self._in_len = len(rest)
                self._in_need = 9 + int.from_bytes(rest[:3], "big") if len(rest) >= 9 else 9
        except (ProtocolError, hpack.HPACKError) as exc:
            self._fail_all(StatusCode.INTERNAL, f"protocol error: {exc}")
            self._in.clear()
        self._flush()

    def _frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._partial is not None and kind != CONTINUATION:
            raise ProtocolError("a header block was interrupted")
        if kind == DATA:
            self._data(flags, stream_id, (_unpad(payload),) if flags & PADDED else (payload,),
                       len(payload))
            return
        stream = self._streams.get(stream_id)
        if kind == HEADERS:
            if flags & PADDED:
                payload = _unpad(payload)
            if flags & PRIORITY:
                payload = payload[5:]
            self._partial = (stream_id, flags, bytearray(payload))
            if flags & END_HEADERS:
                self._header_block()
        elif kind == CONTINUATION:
            if self._partial is None or self._partial[0] != stream_id:
                raise ProtocolError("CONTINUATION without its HEADERS")
            self._partial[2].extend(payload)
            if flags & END_HEADERS:
                self._header_block()
        elif kind == RST_STREAM:
            code = int.from_bytes(payload[:4], "big")
            # A server that has sent its status may reset the stream with
            # NO_ERROR to stop a client that is still sending: that is an end.
            if stream and stream.status is not None and code == 0:
                stream.end()
            elif stream:
                stream.fail(StatusCode.UNAVAILABLE, f"stream reset by the daemon (code {code})")
            self._window_opened.notify_all()
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
                self._out += _frame(SETTINGS, ACK, 0)
        elif kind == PING:
            if not flags & ACK:
                self._out += _frame(PING, ACK, 0, bytes(payload))
        elif kind == GOAWAY:
            last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            self._fail_all(StatusCode.UNAVAILABLE, "the daemon closed the connection", above=last)
        elif kind == WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            if stream_id == 0:
                self._send_window += increment
            elif stream:
                stream.send_window += increment
            self._window_opened.notify_all()
        elif kind == PUSH_PROMISE:
            raise ProtocolError("the daemon pushed a stream, which this client disabled")
        # Other frame types (PRIORITY, unknown extensions) are ignored, as HTTP/2 says.

    def _data(self, flags: int, stream_id: int, pieces: tuple, size: int = -1) -> None:
        """A DATA frame's payload, in `pieces`; `size` the frame's length with its padding."""
        if self._partial is not None:
            raise ProtocolError("a header block was interrupted")
        stream = self._streams.get(stream_id)
        self._acknowledge(stream_id, stream, size if size >= 0 else sum(len(p) for p in pieces))
        if stream:
            for piece in pieces:
                stream.feed(piece)
            if flags & END_STREAM:
                stream.end()

    def _header_block(self) -> None:
        stream_id, flags, block = self._partial
        self._partial = None
        # Decoded even for a stream already gone: the HPACK table must follow every block.
        fields = self._decoder.decode(bytes(block))
        stream = self._streams.get(stream_id)
        if stream:
            stream.headers(fields)
            if flags & END_STREAM:
                stream.end()

    def _settings(self, payload: bytes) -> None:
        for i in range(0, len(payload) - len(payload) % 6, 6):
            key, value = struct.unpack(">HI", payload[i:i + 6])
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                self._window_opened.notify_all()
            elif key == SETTINGS_MAX_FRAME_SIZE:
                self._peer_max_frame = value
            # HEADER_TABLE_SIZE bounds our encoder's table, which it never uses.

    def _acknowledge(self, stream_id: int, stream: _Stream | None, size: int) -> None:
        """Give back what was read, in batches, so the server's windows never close."""
        self._unacked += size
        if self._unacked >= WINDOW // 2:
            self._out += _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._unacked))
            self._unacked = 0
        if stream and not stream.ended:
            stream.unacked += size
            if stream.unacked >= WINDOW // 2:
                self._out += _frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", stream.unacked))
                stream.unacked = 0


def _message(response_type, message):
    """A response from its bytes, or from the views of the frames it arrived in (a tuple):
    a type that reads pieces (FromPieces) takes them as they are, any other gets them joined."""
    if type(message) is tuple:
        from_pieces = getattr(response_type, "FromPieces", None)
        return from_pieces(message) if from_pieces else response_type.FromString(b"".join(message))
    return response_type.FromString(message)


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise ProtocolError("padded frame without its pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise ProtocolError("padding longer than the frame")
    return payload[1:len(payload) - pad]


class Call:
    """One call in flight: iterate it for the responses; `cancel()` ends it from any thread."""

    def __init__(self, channel: Channel, path: str, requests: Iterable, response_type, pump: bool):
        self._channel = channel
        self.stream_id = 0
        self.stream: _Stream | None = None
        self._responses = channel._run(self, path, requests, response_type, pump)

    def __iter__(self) -> Iterator:
        return self._responses

    def __next__(self):
        return next(self._responses)

    def cancel(self) -> None:
        channel = self._channel
        with channel._lock:
            if self.stream is None or self.stream.ended:
                return
            self.stream.fail(StatusCode.CANCELLED, "cancelled by the client")
            channel._out += _frame(RST_STREAM, 0, self.stream_id, struct.pack(">I", CANCEL))
            try:
                channel._flush()
            except OSError:
                pass
            channel._window_opened.notify_all()
        # Wake the receiving thread, which may be blocked reading: the call
        # is over and this process leaves right after.
        try:
            if channel._sock is not None:
                channel._sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


class _Stream:
    """What arrived for one call: whole messages, then the status."""

    def __init__(self, send_window: int):
        self.send_window = send_window
        self.unacked = 0
        # The message being read: its 5-byte prefix (it may span frames), then its
        # body as views of the frames that hold it, joined once when it is whole.
        self._prefix = bytearray()
        self._body: list = []
        self._body_len = 0
        self._want = -1  # the body's length, -1 while the prefix is read
        self.messages: list = []  # bytes, memoryviews, or tuples of them (a message across frames)
        self.status: StatusCode | None = None
        self.details = ""
        self.status_details = b""
        self.ended = False

    def feed(self, data) -> None:
        view = memoryview(data)
        while view:
            if self._want < 0:
                take = 5 - len(self._prefix)
                self._prefix += view[:take]
                view = view[take:]
                if len(self._prefix) < 5:
                    return
                compressed, length = struct.unpack(">BI", self._prefix)
                self._prefix.clear()
                if length > MAX_MESSAGE:
                    self.fail(StatusCode.RESOURCE_EXHAUSTED, f"message of {length} bytes is too large")
                    return
                if compressed:
                    self.fail(StatusCode.INTERNAL, "compressed messages are not supported")
                    return
                self._want = length
            take = min(len(view), self._want - self._body_len)
            if take:
                self._body.append(view[:take])
                self._body_len += take
                view = view[take:]
            if self._body_len == self._want:
                # A message within one frame stays a view of it (FromString reads views); one
                # across frames, the views of each (_message joins them if it must).
                self.messages.append(self._body[0] if len(self._body) == 1 else tuple(self._body))
                self._body, self._body_len, self._want = [], 0, -1

    def headers(self, headers) -> None:
        found = dict(headers)
        if b"grpc-status" in found:
            try:
                self.status = StatusCode(int(found[b"grpc-status"]))
            except ValueError:
                self.status = StatusCode.UNKNOWN
            self.details = _percent_decode(found.get(b"grpc-message", b""))
            # Binary headers travel base64-encoded, padding optional (gRPC over HTTP/2).
            encoded = found.get(b"grpc-status-details-bin", b"")
            if encoded:
                import binascii  # here: only a failure carries details (an extension: ~0.5 ms)
                try:
                    self.status_details = binascii.a2b_base64(encoded + b"=" * (-len(encoded) % 4))
                except (binascii.Error, ValueError):
                    self.status_details = b""
        elif found.get(b":status", b"200") != b"200":
            self.fail(StatusCode.UNAVAILABLE, f"the daemon answered HTTP {found[b':status'].decode()}")

    def end(self) -> None:
        if self.status is None:
            self.status, self.details = StatusCode.INTERNAL, "the call ended without a status"
        self.ended = True

    def fail(self, code: StatusCode, details: str) -> None:
        if self.status in (None, StatusCode.OK):
            self.status, self.details = code, details
        self.ended = True


def _percent_decode(value: bytes) -> str:
    """grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2)."""
    if b"%" in value:
        parts = value.split(b"%")
        out = bytearray(parts[0])
        for part in parts[1:]:
            try:
                out += bytes((int(part[:2], 16),)) + part[2:]
            except ValueError:
                out += b"%" + part
        value = bytes(out)
    return value.decode("utf-8", "replace")


class Stub:
    """Methods of one gRPC service, named as in the proto, built from its descriptor
    when first called (a verb calls one or two of the service's ~90)."""

    def __init__(self, channel: Channel, service_descriptor):
        self._channel = channel
        self._service = service_descriptor

    def __getattr__(self, name: str):
        method = self._service.methods_by_name.get(name)
        if method is None:
            raise AttributeError(name)
        from berth_cli import messages
        call = rpc(self._channel, f"/{self._service.full_name}/{name}",
                       messages.message_class(method.output_type),
                       method.client_streaming, method.server_streaming)
        setattr(self, name, call)
        return call


def rpc(channel: Channel, path: str, response_type, client_streaming: bool, server_streaming: bool):
    def call(request, timeout=None, metadata=None):
        requests = request if client_streaming else (request,)
        responses = channel.call(path, requests, response_type, pump=client_streaming and server_streaming)
        if server_streaming:
            return responses
        replies = list(responses)
        if len(replies) != 1:
            raise RpcError(StatusCode.INTERNAL, f"{path} answered {len(replies)} messages instead of one")
        return replies[0]
    return call
