"""Streams of bytes over gRPC (cp's archives both ways, load's tarball) without protobuf in the way.

A message that is nothing but one bytes field (a chunk of an archive) is kept as the
serialized message it arrived as: `Raw`. The payload is a view of it (parsing would copy it
into a message, and reading the field would copy it out again), and a relay sends the same
serialized message on unchanged when the next hop's message puts those bytes in the same
field number, which the engine's and the container service's archive messages do. Any
other message (a header) is parsed as usual, so a handler sees Raw pieces or messages.

`serve_bulk` names, per method, the request field (and the response field) that travel
raw; rpc's ErrorInterceptor applies them. `bulk_stream_unary`/`bulk_unary_stream` call
such a method with Raw pieces passed through.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterable, Callable
from typing import TypeVar

import grpc

from berth_docker import tarstream
from services.common import errors

T = TypeVar("T")

# method -> (request bytes field number or 0, response bytes field number or 0)
_SERVED: dict[str, tuple[int, int]] = {}


class Raw:
    """One serialized message that holds just one bytes field; `data` views its payload."""

    __slots__ = ("message", "data")

    def __init__(self, message: bytes, data: memoryview):
        self.message = message
        self.data = data

    @classmethod
    def of(cls, field: int, *parts) -> Raw:
        """The message with `parts`, joined, in bytes field `field` (one copy of the data)."""
        message = tarstream.bytes_field_message(field, *parts)
        return cls(message, memoryview(message)[len(message) - sum(len(p) for p in parts):])


def output(field: int, stream: int, data) -> Raw:
    """The serialized message whose message field `field` is one berth.types.v1.OutputChunk
    (stream = 1, data = 2, time unset) of `stream` and `data`, made with one copy of the data
    where building it with protobuf costs three (into the chunk, into its parent, out again):
    an exec's or attach's output, sent at the speed the process writes it. The bytes are
    protobuf's own (tests/unit/common/test_bulk.py); `data` views the chunk."""
    head = bytearray()
    if stream:  # field 1, a varint of one byte: an OutputStream's values are 0 to 2
        if not 0 < stream < 0x80:
            raise ValueError(f"not an OutputStream: {stream}")
        head += bytes((1 << 3, stream))
    if len(data):
        head += tarstream.bytes_field_head(2, len(data))
    return Raw.of(field, head, data)


async def gathered(pieces, field: int, size: int = 1 << 20):
    """Raw messages of about `size` bytes in bytes field `field`, from the pieces of any size
    that an HTTP body (aiohttp's iter_any) arrives in."""
    parts: list[bytes] = []
    held = 0
    async for piece in pieces:
        parts.append(piece)
        held += len(piece)
        if held >= size:
            yield Raw.of(field, *parts)
            parts, held = [], 0
    if parts:
        yield Raw.of(field, *parts)


def parse(raw: bytes, field: int) -> Raw | None:
    """`raw` as a Raw of bytes field `field` when it is exactly that one field, else None."""
    data = tarstream.bytes_field(raw, field)
    return None if data is None else Raw(raw, data)


def serve_bulk(method: str, request_field: int = 0, response_field: int = 0) -> None:
    """Lets `method` (its full path) take and give Raw pieces in these bytes fields."""
    _SERVED[method] = (request_field, response_field)


def served(method: str) -> tuple[int, int]:
    return _SERVED.get(method, (0, 0))


def deserializer(field: int, fallback):
    def deserialize(raw: bytes):
        return parse(raw, field) or fallback(raw)
    return deserialize


def serializer(fallback):
    def serialize(message) -> bytes:
        return message.message if isinstance(message, Raw) else fallback(message)
    return serialize


def bulk_stream_unary(channel: grpc.aio.Channel, method: str, response_type):
    """A client-streaming call whose requests may be Raw pieces (sent as they are)."""
    call = channel.stream_unary(method, request_serializer=serializer(lambda m: m.SerializeToString()),
                                response_deserializer=response_type.FromString)

    async def invoke(requests):
        try:
            return await call(requests)
        except grpc.aio.AioRpcError as err:
            raise errors.from_rpc_error(err) from None
    return invoke


def bulk_unary_stream(channel: grpc.aio.Channel, method: str, request, response_type, field: int):
    """The responses of a server-streaming call, each a Raw piece of bytes field `field` when
    it is only that, else a parsed `response_type`."""
    call = channel.unary_stream(method, request_serializer=lambda m: m.SerializeToString(),
                                response_deserializer=deserializer(field, response_type.FromString))
    return errors.stream_items(lambda: call(request))


class Pieces:
    """The pieces of an upload, iterated by a worker thread while the event loop hands them
    over, so an upload is worked on as it arrives rather than spooled first.

    At most QUEUED pieces wait: put() holds the upload back when the worker is slower."""

    QUEUED = 8

    def __init__(self):
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUED)
        self._failed: BaseException | None = None

    def __iter__(self):
        while True:
            if self._failed is not None:
                raise self._failed
            item = self._queue.get()
            if item is None:
                if self._failed is not None:
                    raise self._failed
                return
            if item:
                yield item

    async def put(self, piece, worker: asyncio.Future) -> bool:
        """Hands a piece over (None: the end); False when the worker has ended (the rest is
        not wanted)."""
        while True:
            if worker.done():
                return False
            try:
                self._queue.put_nowait(piece)
                return True
            except queue.Full:
                await asyncio.sleep(0.002)

    def fail(self, failure: BaseException) -> None:
        """The upload failed: the worker's next read raises `failure`."""
        self._failed = failure
        with contextlib.suppress(queue.Full):
            # A worker waiting for a piece wakes; one that is not sees the failure first.
            self._queue.put_nowait(None)


async def in_thread(pieces: AsyncIterable, work: Callable[[Pieces], T]) -> T:
    """work(the pieces, as they arrive) in a thread; the upload cut short (its iterator
    raising) is errors.InvalidArgument in the worker, after which the upload's error is
    raised. A worker that ends early stops the reading of the rest."""
    handed = Pieces()
    worker = asyncio.ensure_future(asyncio.to_thread(work, handed))
    try:
        async for piece in pieces:
            if not await handed.put(piece, worker):
                break  # the worker ended (the archive's end, or an error it raises below)
        await handed.put(None, worker)
    except BaseException:
        handed.fail(errors.InvalidArgument("the archive was cut short"))
        with contextlib.suppress(Exception):
            await worker
        raise
    return await worker
