"""A small gRPC client for the CLI: HTTP/2 framing by h2, over a unix or TCP socket.

Why not grpcio here: importing grpcio costs ~80 ms and its channel teardown
~90 ms more, in a process that lives for one call. `berth run --rm` is on the
benchmark and the CLI's start-up was most of it. h2 (python-hyper) does the
HTTP/2 protocol; this module only adds gRPC's framing (5-byte message prefix,
status in trailers). The services themselves use grpcio.

Stubs are built from the generated service descriptors, so a CLI verb calls
`stub.Run(request)` exactly as it would on a grpcio stub, and errors carry the
same `code()`/`details()`, plus the rich status (grpc-status-details-bin) from which
berth_cli.errors reads the engine's reason.
"""

from __future__ import annotations

import base64
import socket
import struct
import threading
import urllib.parse
from collections.abc import Iterable, Iterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from berth_cli.errors import RpcError, StatusCode, Unreachable

MAX_MESSAGE = 64 * 1024 * 1024
# Large windows: image tarballs stream through here and acknowledging every
# 64 KiB would cost a round trip each.
WINDOW = 16 * 1024 * 1024


class Channel:
    """One HTTP/2 connection to the gateway; calls run one at a time per stream."""

    def __init__(self, target: str):
        self.target = target
        self._sock: socket.socket | None = None
        self._conn: h2.connection.H2Connection | None = None
        # Guards the h2 state machine and the socket's write side: a stdin
        # pump thread sends while the main thread receives.
        self._lock = threading.Lock()
        self._window_opened = threading.Condition(self._lock)
        self._streams: dict[int, _Stream] = {}

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
                sock = socket.create_connection((host or "localhost", int(port)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, ValueError) as exc:
            raise Unreachable(f"failed to connect to {self.target}: {exc}") from None
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
        conn.increment_flow_control_window(WINDOW)
        sock.sendall(conn.data_to_send())
        self._sock, self._conn = sock, conn

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            self._sock.sendall(data)

    # -- calls ------------------------------------------------------------

    def call(self, path: str, requests: Iterable, response_type, pump: bool = False) -> Call:
        """Start a call; iterate the result for the responses (RpcError on a bad status).

        With `pump`, requests are sent from a thread while responses arrive
        (bidirectional streams such as an interactive stdin)."""
        return Call(self, path, requests, response_type, pump)

    def _run(self, call: Call, path: str, requests: Iterable, response_type, pump: bool) -> Iterator:
        with self._lock:
            if self._conn is None:
                self._connect()
            stream_id = self._conn.get_next_available_stream_id()
            stream = self._streams[stream_id] = _Stream()
            call.stream_id, call.stream = stream_id, stream
            self._conn.send_headers(stream_id, [
                (b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
                (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
                (b"te", b"trailers"), (b"user-agent", b"berth-cli"),
            ])
            self._flush()
        if pump:
            threading.Thread(target=self._send_all, args=(stream_id, requests), daemon=True).start()
        else:
            self._send_all(stream_id, requests)
        try:
            yield from self._receive(stream_id, stream, response_type)
        finally:
            self._streams.pop(stream_id, None)

    def _send_all(self, stream_id: int, requests: Iterable) -> None:
        try:
            for request in requests:
                body = request.SerializeToString()
                self._send(stream_id, struct.pack(">BI", 0, len(body)) + body)
            with self._lock:
                self._conn.end_stream(stream_id)
                self._flush()
        except (h2.exceptions.StreamClosedError, OSError):
            pass  # the server ended the call first; its status tells why

    def _send(self, stream_id: int, data: bytes) -> None:
        pumped = threading.current_thread() is not threading.main_thread()
        view = memoryview(data)
        with self._lock:
            while view:
                window = min(self._conn.local_flow_control_window(stream_id),
                             self._conn.max_outbound_frame_size)
                if window <= 0:
                    # A pump thread waits for the receiving thread to read the
                    # WINDOW_UPDATE; a sender with no receiver reads it itself.
                    if not self._window_opened.wait(timeout=0.05) and not pumped:
                        self._pump_once()
                    continue
                self._conn.send_data(stream_id, view[:window].tobytes())
                view = view[window:]
                self._flush()

    def _pump_once(self) -> None:
        """Read what the server sent (lock held), so window updates are seen."""
        self._sock.settimeout(0.05)
        try:
            data = self._sock.recv(1 << 16)
        except (socket.timeout, BlockingIOError):
            return
        finally:
            self._sock.settimeout(None)
        self._dispatch(data)

    def _receive(self, stream_id: int, stream: _Stream, response_type) -> Iterator:
        while True:
            while stream.messages:
                yield response_type.FromString(stream.messages.pop(0))
            if stream.ended:
                break
            data = self._sock.recv(1 << 16)
            with self._lock:
                if not data:
                    stream.fail(StatusCode.UNAVAILABLE, "the daemon closed the connection")
                else:
                    self._dispatch(data)
        while stream.messages:
            yield response_type.FromString(stream.messages.pop(0))
        if stream.status != StatusCode.OK:
            raise RpcError(stream.status, stream.details, stream.status_details)

    def _dispatch(self, data: bytes) -> None:
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            for stream in self._streams.values():
                stream.fail(StatusCode.INTERNAL, f"protocol error: {exc}")
            return
        for event in events:
            stream = self._streams.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.DataReceived):
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if stream:
                    stream.feed(event.data)
            elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                if stream:
                    stream.headers(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                if stream:
                    stream.end()
            elif isinstance(event, h2.events.StreamReset):
                # A server that has sent its status may reset the stream with
                # NO_ERROR to stop a client that is still sending: that is an end.
                if stream and stream.status is not None and event.error_code == 0:
                    stream.end()
                elif stream:
                    stream.fail(StatusCode.UNAVAILABLE, f"stream reset by the daemon (code {event.error_code})")
            elif isinstance(event, h2.events.ConnectionTerminated):
                for s in self._streams.values():
                    s.fail(StatusCode.UNAVAILABLE, "the daemon closed the connection")
            elif isinstance(event, h2.events.WindowUpdated):
                self._window_opened.notify_all()
        self._flush()


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
            try:
                channel._conn.reset_stream(self.stream_id, h2.errors.ErrorCodes.CANCEL)
                channel._flush()
            except (h2.exceptions.ProtocolError, OSError):
                pass
        # Wake the receiving thread, which may be blocked reading: the call
        # is over and this process leaves right after.
        try:
            channel._sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


class _Stream:
    """What arrived for one call: whole messages, then the status."""

    def __init__(self):
        # A bytearray: a 1 MiB message comes in 16 KiB frames, and joining bytes with +=
        # would copy the whole buffer at each one.
        self.buffer = bytearray()
        self.messages: list[bytes] = []
        self.status: StatusCode | None = None
        self.details = ""
        self.status_details = b""
        self.ended = False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 5:
            compressed, length = struct.unpack(">BI", self.buffer[:5])
            if length > MAX_MESSAGE:
                self.fail(StatusCode.RESOURCE_EXHAUSTED, f"message of {length} bytes is too large")
                return
            if len(self.buffer) < 5 + length:
                return
            if compressed:
                self.fail(StatusCode.INTERNAL, "compressed messages are not supported")
                return
            self.messages.append(bytes(self.buffer[5:5 + length]))
            del self.buffer[:5 + length]

    def headers(self, headers) -> None:
        found = dict(headers)
        if b"grpc-status" in found:
            self.status = StatusCode(int(found[b"grpc-status"]))
            self.details = urllib.parse.unquote(found.get(b"grpc-message", b"").decode("utf-8", "replace"))
            # Binary headers travel base64-encoded, padding optional (gRPC over HTTP/2).
            encoded = found.get(b"grpc-status-details-bin", b"")
            try:
                self.status_details = base64.b64decode(encoded + b"=" * (-len(encoded) % 4))
            except ValueError:
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


class Stub:
    """Methods of one gRPC service, named as in the proto, built from its descriptor."""

    def __init__(self, channel: Channel, service_descriptor):
        self._channel = channel
        prefix = f"/{service_descriptor.full_name}/"
        for method in service_descriptor.methods:
            response_type = _message_class(method.output_type)
            setattr(self, method.name, _method(channel, prefix + method.name, response_type,
                                               method.client_streaming, method.server_streaming))


def _message_class(descriptor):
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(descriptor)


def _method(channel: Channel, path: str, response_type, client_streaming: bool, server_streaming: bool):
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
