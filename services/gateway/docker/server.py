"""The Docker Engine API server: aiohttp in the gateway's event loop, on its own socket.

    server = DockerApiServer(config, backends)
    await server.start()      # <run_root>/docker.sock (root-only), and TCP only with mutual TLS
    await server.stop()       # closes attach sessions and long waits first

Every route answers both unversioned and under /vX.Y/. A version outside
MIN_API..MAX_API is refused with docker's 400; the CLI and the SDKs negotiate by
reading `API-Version` from /_ping and then using min(theirs, ours).
"""

from __future__ import annotations

import json
import os
import re
import ssl
from collections import OrderedDict

import structlog
from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from services.common import tls, tracing
from services.common.config import Config
from services.gateway.docker.context import (API_VERSION_KEY, BACKENDS_KEY, EXEC_DETACH_KEYS_KEY, FAILED_EXECS_KEY,
                                             MAX_JSON_BODY, RESIZE_KEY, SESSIONS_KEY)
from services.gateway.docker.errors import error_middleware, error_response
from services.gateway.docker.routes import build, cluster, containers, execs, images, networks, system, volumes
from services.gateway.docker.versions import MAX_API, MIN_API, api_version_text

log = structlog.get_logger(__name__)


@web.middleware
async def version_middleware(request: web.Request, handler):
    """Checks the /vX.Y/ prefix; handlers read the version as request[API_VERSION_KEY]."""
    major, minor = request.match_info.get("major"), request.match_info.get("minor")
    if major is None:
        request[API_VERSION_KEY] = MAX_API
    else:
        version = (int(major), int(minor))
        text = f"{major}.{minor}"
        if version < MIN_API:
            return error_response(400, f"client version {text} is too old. Minimum supported API version is "
                                       f"{api_version_text(MIN_API)}, please upgrade your client to a newer version")
        if version > MAX_API:
            return error_response(400, f"client version {text} is too new. Maximum supported API version is "
                                       f"{api_version_text(MAX_API)}")
        request[API_VERSION_KEY] = version
    return await handler(request)


_tracer = tracing.tracer(__name__)
_VERSIONED = re.compile(r"^/v\{major[^}]*\}\.\{minor[^}]*\}")
# How many recently made containers and execs remember the trace that made them.
TRACE_MEMORY = 1024


class _Traces:
    """The trace that created each recent container or exec, by id.

    The docker CLI sends no trace context (28.x sends no traceparent, even with OTEL_*
    set), so each of the requests of one `docker run` (create, attach, wait, start, ...)
    would be a trace of its own. A request about a container that carries no context of
    its own joins the trace of the request that created the container instead: one
    `docker run` is one trace, its requests the children of the create."""

    def __init__(self, size: int = TRACE_MEMORY):
        self._size = size
        self._by_id: OrderedDict[str, otel_context.Context] = OrderedDict()

    def remember(self, id: str, ctx: otel_context.Context) -> None:
        self._by_id[id] = ctx
        self._by_id.move_to_end(id)
        while len(self._by_id) > self._size:
            self._by_id.popitem(last=False)

    def get(self, id: str) -> otel_context.Context | None:
        return self._by_id.get(id)


def trace_middleware(traces: _Traces):
    """A server span around every request: the parent of the spans of every service the
    request reaches. A W3C traceparent from the client is honoured (its trace goes on)."""

    @web.middleware
    async def middleware(request: web.Request, handler):
        parent = propagate.extract(request.headers)
        target = request.match_info.get("id")
        if target and not trace.get_current_span(parent).get_span_context().is_valid:
            parent = traces.get(target) or parent
        resource = request.match_info.route.resource
        route = _VERSIONED.sub("", resource.canonical) if resource is not None else "unmatched"
        with _tracer.start_as_current_span(
                f"{request.method} {route}", context=parent, kind=trace.SpanKind.SERVER,
                attributes={"http.request.method": request.method, "http.route": route,
                            "url.path": request.path}) as span:
            if target:
                span.set_attribute("docker.object.id", target)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                span.set_attribute("http.response.status_code", exc.status)
                raise
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(trace.Status(trace.StatusCode.ERROR))
            if response.status == 201 and request.method == "POST" and route.endswith(("/create", "/exec")):
                made = _created_id(response)
                if made:
                    span.set_attribute("docker.object.id", made)
                    traces.remember(made, trace.set_span_in_context(span))
            return response
    return middleware


def _created_id(response: web.StreamResponse) -> str:
    body = getattr(response, "body", None)
    if not isinstance(body, (bytes, bytearray)):
        return ""
    try:
        made = json.loads(body).get("Id", "")
    except (ValueError, AttributeError):
        return ""
    return made if isinstance(made, str) else ""


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    # Sent on every answer, as dockerd does; the CLI and SDKs negotiate from /_ping's.
    response.headers["Api-Version"] = api_version_text(MAX_API)
    response.headers["Docker-Experimental"] = "false"
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = "berth (linux)"


class Router:
    """Registers a handler at `path` and at `/v{major}.{minor}path`."""

    def __init__(self, app: web.Application):
        self._app = app

    def add(self, method: str, path: str, handler) -> None:
        for prefix in ("", r"/v{major:\d+}.{minor:\d+}"):
            if method == "GET":
                self._app.router.add_get(prefix + path, handler)  # HEAD too, as the CLI's ping needs
            else:
                self._app.router.add_route(method, prefix + path, handler)


def make_app(backends) -> web.Application:
    # client_max_size bounds what request.read() takes, checked as the body arrives: JSON
    # bodies only (the archive, image and build streams read request.content in chunks).
    app = web.Application(middlewares=[trace_middleware(_Traces()), version_middleware, error_middleware],
                          client_max_size=MAX_JSON_BODY, handler_args={"max_field_size": 1 << 16})
    app[BACKENDS_KEY] = backends
    app[SESSIONS_KEY] = set()
    app[RESIZE_KEY] = {}
    app[FAILED_EXECS_KEY] = {}
    app[EXEC_DETACH_KEYS_KEY] = {}
    app.on_response_prepare.append(_headers)
    router = Router(app)
    for module in (system, containers, execs, images, networks, volumes, build, cluster):
        module.register(router)
    app.on_shutdown.append(_close_sessions)
    return app


async def _close_sessions(app: web.Application) -> None:
    """Attach sessions and long waits would hold a graceful stop for their whole life."""
    for task in list(app[SESSIONS_KEY]):
        task.cancel()


class DockerApiServer:
    def __init__(self, config: Config, backends):
        self._config = config
        self._app = make_app(backends)
        self._runner: web.AppRunner | None = None

    @property
    def socket_path(self) -> str:
        return self._config.docker_socket or os.path.join(self._config.run_root, "docker.sock")

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False,
                                     shutdown_timeout=2.0)
        await self._runner.setup()
        path = self.socket_path
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        old = os.umask(0o177)  # root-only socket, like every berth socket
        try:
            await web.UnixSite(self._runner, path).start()
        finally:
            os.umask(old)
        log.info("docker_api_started", socket=path)
        if self._config.docker_tcp:
            host, _, port = self._config.docker_tcp.rpartition(":")
            await web.TCPSite(self._runner, host or "127.0.0.1", int(port),
                              ssl_context=self._tls_context()).start()
            log.info("docker_api_started", tcp=self._config.docker_tcp)

    def _tls_context(self) -> ssl.SSLContext:
        """TCP is served only with mutual TLS: anyone who reaches the port could run as root."""
        tls_dir = self._config.docker_tls_dir
        files = [os.path.join(tls_dir, f) for f in ("ca.pem", "cert.pem", "key.pem")] if tls_dir else []
        if not files and self._config.tls_dir:
            # The gateway's own certificate from the services' directory (see services/common/tls.py).
            files = list(tls.files(self._config.tls_dir, "gateway"))
        if not files or not all(os.path.exists(f) for f in files):
            raise RuntimeError("docker_tcp needs docker_tls_dir with ca.pem, cert.pem and key.pem, or "
                               "BERTH_TLS_DIR with ca.pem and gateway-cert.pem/-key.pem (mutual TLS); "
                               "refusing to serve the Docker API on TCP without it")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files[0])
        ctx.load_cert_chain(files[1], files[2])
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
