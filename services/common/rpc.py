"""Serving and calling berth's gRPC services: the pieces every service shares.

`serve` runs a service on its unix socket (root-only) with health checking,
reflection, tracing and the one mapping from domain errors to status codes.
`connect` gives a client whose calls raise domain errors instead of RpcError.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import bulk, errors, metrics, tls, tracing
from services.common.config import Config

log = structlog.get_logger(__name__)

# Generous limits: image layers and tarballs travel in chunks, but manifests
# and listings can still be large.
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to status codes, once for every method of every service,
    and a request that is not a valid protobuf to INVALID_ARGUMENT (gRPC itself would
    answer UNKNOWN for a deserializer's exception)."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        request_field, response_field = bulk.served(method)
        deserialize = handler.request_deserializer
        if request_field and deserialize is not None:
            deserialize = bulk.deserializer(request_field, deserialize)
        handler = handler._replace(request_deserializer=_tolerant(deserialize))
        if response_field and handler.response_serializer is not None:
            handler = handler._replace(response_serializer=bulk.serializer(handler.response_serializer))
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, method, True))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, method, True))
        return handler


class _Corrupt:
    """Stands for a request message that did not decode; the handler never sees it."""

    def __init__(self, error: Exception):
        self.error = errors.InvalidArgument(f"the request is not a valid protobuf message: {error}")


def _tolerant(deserialize):
    if deserialize is None:
        return None

    def tolerant(raw: bytes):
        try:
            return deserialize(raw)
        except Exception as exc:
            return _Corrupt(exc)
    return tolerant


async def _checked(requests):
    async for request in requests:
        if isinstance(request, _Corrupt):
            raise request.error
        yield request


async def _abort(context, exc: BaseException, method: str):
    if isinstance(exc, errors.BerthError):
        # The kind travels as the status code and, for clients that act on it, as the
        # ErrorInfo reason in the details trailer (see berth_errors).
        await context.abort(errors.grpc_code(exc), exc.message, errors.trailing_metadata(exc))
    log.exception("unexpected_error", method=method)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc}")


def _status(exc: BaseException | None, context) -> str:
    """The status a call ended with, as berth.rpc.server.duration labels it."""
    if exc is None:
        return "OK"
    if isinstance(exc, grpc.aio.AbortError):   # the handler aborted with its own code
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    if isinstance(exc, errors.BerthError):
        return errors.grpc_code(exc).name
    return "CANCELLED" if isinstance(exc, (asyncio.CancelledError, GeneratorExit)) else "INTERNAL"


def _wrap_unary(fn, method, streaming_request: bool = False):
    async def wrapped(request, context):
        started, failure = time.perf_counter(), None
        try:
            if isinstance(request, _Corrupt):
                raise request.error
            return await fn(_checked(request) if streaming_request else request, context)
        except BaseException as exc:
            failure = exc
            if isinstance(exc, grpc.aio.AbortError) or not isinstance(exc, Exception):
                raise
            await _abort(context, exc, method)
        finally:
            metrics.record_rpc(method, _status(failure, context), time.perf_counter() - started)
    return wrapped


def _wrap_stream(fn, method, streaming_request: bool = False):
    async def wrapped(request, context):
        started, failure = time.perf_counter(), None
        try:
            if isinstance(request, _Corrupt):
                raise request.error
            async for item in fn(_checked(request) if streaming_request else request, context):
                yield item
        except BaseException as exc:
            failure = exc
            if isinstance(exc, grpc.aio.AbortError) or not isinstance(exc, Exception):
                raise
            await _abort(context, exc, method)
        finally:
            metrics.record_rpc(method, _status(failure, context), time.perf_counter() - started)
    return wrapped


Registrar = Callable[[grpc.aio.Server], Iterable[str]]


async def serve(service: str, config: Config, register: Registrar,
                on_stop: Callable[[], Any] | None = None, ready: Callable[[], Any] | None = None) -> None:
    """Serve until SIGTERM/SIGINT. `register` adds servicers and returns their full names."""
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(), *tracing.server_interceptors()],
        options=CHANNEL_OPTIONS,
    )
    names = [*register(server), metrics.add_servicer(server)]
    health_servicer = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)

    address = config.addresses.get(service)
    if tls.is_tcp(address):
        # TCP only with mutual TLS: plain TCP would let anyone who reaches the port act as root here.
        me = tls.identity(config.tls_dir, service, f"BERTH_{service.upper()}_ADDRESS={address}")
        if not server.add_secure_port(tls.target(address), grpc.ssl_server_credentials(
                [(me.key, me.cert)], root_certificates=me.ca, require_client_auth=True)):
            raise errors.Unavailable(f"cannot listen on BERTH_{service.upper()}_ADDRESS={address}")
    # The local socket as well, beside a TCP address (as dockerd's -H unix:// -H tcp://):
    # this host's own callers (berthd's probes, the CLI) keep the fast path and need no certificate.
    _listen_unix(server, address[len("unix://"):] if address and not tls.is_tcp(address)
                 else config.socket_path(service))
    await server.start()
    for name in ["", *names]:
        await _set_serving(health_servicer, name)
    log.info("service_started", address=address or config.socket_path(service))
    if ready:
        await ready()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("service_stopping")
    await server.stop(grace=2)
    if on_stop:
        result = on_stop()
        if inspect.isawaitable(result):
            await result


def _listen_unix(server: grpc.aio.Server, path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    # Root-only socket: gRPC creates it under this umask.
    old = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix://{path}")
    finally:
        os.umask(old)


async def _set_serving(servicer, name: str) -> None:
    result = servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if inspect.isawaitable(result):
        await result


class Client:
    """A stub whose calls raise domain errors (errors.BerthError) instead of RpcError."""

    def __init__(self, stub: Any, channel: grpc.aio.Channel):
        self._stub = stub
        self.channel = channel

    def __getattr__(self, name: str):
        multicallable = getattr(self._stub, name)
        if isinstance(multicallable, (grpc.aio.UnaryStreamMultiCallable, grpc.aio.StreamStreamMultiCallable)):
            return lambda *args, **kwargs: errors.stream_items(lambda: multicallable(*args, **kwargs))

        async def unary(*args, **kwargs):
            try:
                return await multicallable(*args, **kwargs)
            except grpc.aio.AioRpcError as err:
                raise errors.from_rpc_error(err) from None
        return unary


# Whose certificate this process presents when it calls a service over TCP: its own
# service's (set by process.run_service before the service connects to others).
_caller = "client"


def set_caller(service: str) -> None:
    global _caller
    _caller = service


def connect(config: Config, service: str, stub_class: type) -> Client:
    """A client of `service`; over TCP it presents this process's own certificate (set_caller)."""
    address = config.address(service)
    if tls.is_tcp(address):
        me = tls.identity(config.tls_dir, _caller,
                          f"BERTH_{service.upper()}_ADDRESS={address}")
        channel = grpc.aio.secure_channel(
            tls.target(address),
            grpc.ssl_channel_credentials(root_certificates=me.ca, private_key=me.key, certificate_chain=me.cert),
            options=CHANNEL_OPTIONS, interceptors=tracing.client_interceptors())
    else:
        channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS,
                                            interceptors=tracing.client_interceptors())
    return Client(stub_class(channel), channel)
