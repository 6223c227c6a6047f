"""Registries for tests, all on 127.0.0.1 with free ports, all stopped by their context:

    with BerthRegistry() as reg:          # services.registry in a subprocess
        reg.url, reg.host                 # "http://127.0.0.1:41234", "127.0.0.1:41234"
        reg.requests()                    # its access log: [{"method", "path", "range", "status"}]
    with DockerRegistry() as reg: ...     # Debian's docker-registry (the reference implementation)
    with FakeRegistry({"/v2/x/manifests/latest": (200, headers, body)}) as fake: ...
    with SlowProxy(reg.host, delay=0.01) as proxy: ...   # throttles blob bodies, counts fetches
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

from tests.support.engine import PYTHON, REPO

DOCKER_REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # 401 and the like: it answers
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


class _Process:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="/tmp/bt-reg-")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.root, "registry.log")

    def _start(self, argv: list[str]) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=REPO)
        try:
            wait_http(self.url + "/v2/", proc=self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.stop()


class BerthRegistry(_Process):
    def __init__(self, htpasswd: dict[str, str] | None = None):
        super().__init__()
        self.storage = os.path.join(self.root, "data")
        self.htpasswd = htpasswd

    def __enter__(self) -> BerthRegistry:
        argv = [PYTHON, "-m", "services.registry", "--listen", self.host, "--root", self.storage,
                "--log-format", "json"]
        if self.htpasswd:
            from services.registry.auth import hash_password
            path = os.path.join(self.root, "htpasswd")
            with open(path, "w") as f:
                for user, password in self.htpasswd.items():
                    f.write(f"{user}:{hash_password(password)}\n")
            argv += ["--htpasswd", path]
        self._start(argv)
        return self

    def requests(self) -> list[dict]:
        out = []
        with open(self.log_path) as f:
            for line in f:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if doc.get("event") == "request":
                    out.append(doc)
        return out

    def blob_gets(self, digest: str) -> list[dict]:
        return [r for r in self.requests() if r["method"] == "GET" and r["path"].endswith(f"/blobs/{digest}")]


class DockerRegistry(_Process):
    def __init__(self, htpasswd: dict[str, str] | None = None):
        super().__init__()
        self.htpasswd = htpasswd

    def __enter__(self) -> DockerRegistry:
        auth = ""
        if self.htpasswd:
            from services.registry.auth import hash_password
            path = os.path.join(self.root, "htpasswd")
            with open(path, "w") as f:
                for user, password in self.htpasswd.items():
                    f.write(f"{user}:{hash_password(password)}\n")
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {path}\n"
        config = os.path.join(self.root, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {self.root}/data\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: {self.host}\n{auth}")
        self._start([DOCKER_REGISTRY, "serve", config])
        return self


class _AioServer:
    """An aiohttp app on its own loop in a thread."""

    def __init__(self):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner = None

    def app(self):
        raise NotImplementedError

    def __enter__(self):
        from aiohttp import web
        self._thread.start()

        async def start():
            self._runner = web.AppRunner(self.app())
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


class FakeRegistry(_AioServer):
    """Answers each path with a canned (status, headers, body); "hang" as body never ends."""

    def __init__(self, routes: dict[str, tuple[int, dict, bytes | str]]):
        super().__init__()
        self.routes = routes
        self.seen: list[str] = []

    def app(self):
        from aiohttp import web

        async def handle(request):
            self.seen.append(request.path)
            if request.path == "/v2/" and "/v2/" not in self.routes:
                return web.json_response({})
            status, headers, body = self.routes.get(request.path, (404, {}, b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}'))
            if body == "hang":
                response = web.StreamResponse(status=status, headers=headers)
                await response.prepare(request)
                await response.write(b"x")
                await asyncio.sleep(4)  # longer than the progress timeouts tests use
            return web.Response(status=status, headers=headers, body=body)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


class SlowProxy(_AioServer):
    """Forwards to a registry; blob bodies trickle at `chunk` bytes per `delay` seconds."""

    def __init__(self, upstream: str, delay: float = 0.0, chunk: int = 64 * 1024):
        super().__init__()
        self.upstream = upstream
        self.delay = delay
        self.chunk = chunk

    def app(self):
        import aiohttp
        from aiohttp import web

        async def handle(request):
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                async with session.request(request.method, f"http://{self.upstream}{request.path_qs}",
                                           headers=headers, data=await request.read(),
                                           allow_redirects=False) as up:
                    out_headers = {k: v for k, v in up.headers.items()
                                   if k.lower() not in ("transfer-encoding", "content-encoding")}
                    response = web.StreamResponse(status=up.status, headers=out_headers)
                    await response.prepare(request)
                    slow = "/blobs/sha256:" in request.path and request.method == "GET"
                    try:
                        async for data in up.content.iter_chunked(self.chunk):
                            await response.write(data)
                            if slow and self.delay:
                                await asyncio.sleep(self.delay)
                        await response.write_eof()
                    except (ConnectionError, aiohttp.ClientError):
                        pass  # the puller was killed: expected here
                    return response
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app
