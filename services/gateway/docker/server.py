"""The Docker Engine API server: aiohttp in the gateway's event loop, on its own socket.

    server = DockerApiServer(config, backends)
    await server.start()      # <run_root>/docker.sock (root-only), and TCP only with mutual TLS
    await server.stop()       # closes attach sessions and long waits first

Every route answers both unversioned and under /vX.Y/. A version outside
MIN_API..MAX_API is refused with docker's 400; the CLI and the SDKs negotiate by
reading `API-Version` from /_ping and then using min(theirs, ours).
"""

from __future__ import annotations

import os
import ssl

import structlog
from aiohttp import web

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
    app = web.Application(middlewares=[version_middleware, error_middleware],
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
        tls = self._config.docker_tls_dir
        files = [os.path.join(tls, f) for f in ("ca.pem", "cert.pem", "key.pem")] if tls else []
        if not files or not all(os.path.exists(f) for f in files):
            raise RuntimeError("docker_tcp needs docker_tls_dir with ca.pem, cert.pem and key.pem "
                               "(mutual TLS); refusing to serve the Docker API on TCP without it")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files[0])
        ctx.load_cert_chain(files[1], files[2])
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
