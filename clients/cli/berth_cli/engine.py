"""The CLI's connection to the engine, and how each verb reports what the engine answered.

Opening the connection loads the transport and the generated code; importing this
module does not, so the parsers that live beside the verbs stay cheap.
"""

from __future__ import annotations

import sys

from berth_cli.errors import RpcError, Unreachable

TYPE_CHECKING = False
if TYPE_CHECKING:  # for annotations only: importing collections.abc loads all of collections
    from collections.abc import Callable, Iterable


class Client:
    """The engine API over the CLI's light transport, connected on first use."""

    def __init__(self, host: str, tls: tuple[str, str, str, bool] | None = None):
        self.host = host
        # (CA file, certificate file, key file, verify the engine's certificate) for tcp://.
        self.tls = tls
        self._stub = None
        self._channel = None

    @property
    def channel(self):
        if self._channel is None:
            from berth_cli import transport
            self._channel = transport.Channel(self.host, self.tls)
        return self._channel

    @property
    def stub(self):
        """An Engine stub (see transport.py for why it is not grpcio's)."""
        if self._stub is None:
            from berth.engine.v1 import engine_pb2
            from berth_cli import transport
            self._stub = transport.Stub(self.channel, engine_pb2.DESCRIPTOR.services_by_name["EngineService"])
        return self._stub

    def call(self, method: str, **request):
        """An Engine call through berth_cli.wire, without protobuf: the request's fields as
        keywords (a nested message as a dict); the reply decoded, or for a server-streaming
        method an iterator of replies."""
        from berth_cli import wire
        request_type, call, client_streaming = self._rpc(method)
        if client_streaming:
            raise TypeError(f"{method} streams its requests: call it with stream()")
        return call(wire.Request(method, wire.encode(request_type, request)))

    def stream(self, method: str, requests: Iterable):
        """A call that streams its requests, through berth_cli.wire: `requests` yields messages
        of the method's request type (wire.message(...)'s class; anything with
        SerializeToString); its replies decoded, one or (server streaming) an iterator."""
        _, call, client_streaming = self._rpc(method)
        if not client_streaming:
            raise TypeError(f"{method} takes one request: call it with call()")
        return call(requests)

    def _rpc(self, method: str):
        from berth_cli import transport, wire
        request_type, reply_type, client_streaming, server_streaming = wire.engine().method(wire.SERVICE, method)
        call = transport.rpc(self.channel, f"/{wire.SERVICE}/{method}", reply_type.cls, client_streaming,
                             server_streaming)
        return request_type, call, client_streaming

    def close(self) -> None:
        # Deliberately not closing the channel: that costs ~90 ms and the process exits
        # right after (see __main__), which releases the socket.
        pass

    def describe(self, err: RpcError) -> str:
        if isinstance(err, Unreachable):
            return f"Cannot connect to the berth daemon at {self.host}. Is berthd running?"
        return f"Error response from daemon: {err.details()}"

    def report(self, err: RpcError) -> None:
        print(self.describe(err), file=sys.stderr)


def each(client: Client, refs: Iterable[str], call: Callable[[str], object]) -> int:
    """Docker's way with several objects: report each failure, go on, exit 1 at the end;
    print each name that succeeded."""
    status = 0
    for ref in refs:
        try:
            call(ref)
        except RpcError as err:
            client.report(err)
            status = 1
            continue
        print(ref)
    return status


# berth.types.v1.OutputStream's OUTPUT_STREAM_STDERR, written out: asking stdio_pb2 for it
# would load protobuf into a verb that otherwise runs without it (berth_cli.wire);
# tests/unit/cli/test_wire.py checks it against the generated module.
OUTPUT_STREAM_STDERR = 2


def write_output(stream: int, data: bytes) -> None:
    """A container's output to our stdout or stderr, as it came (OutputChunk.stream)."""
    out = sys.stderr.buffer if stream == OUTPUT_STREAM_STDERR else sys.stdout.buffer
    out.write(data)
    out.flush()
