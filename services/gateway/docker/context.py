"""What every route needs from the app: the backends, JSON bodies, long-lived sessions."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from services.common import errors

# services.gateway.backends.Backends: one backend per resource, each behind its Protocol.
BACKENDS_KEY = web.AppKey("backends", object)
SESSIONS_KEY = web.AppKey("sessions", set)
# Open exec/attach streams by exec or container id, so a resize request reaches its terminal.
RESIZE_KEY = web.AppKey("resize", dict)
# Execs that failed to start, by id (routes/execs.py keeps their exit code for /exec/{id}/json).
FAILED_EXECS_KEY = web.AppKey("failed_execs", dict)
# Detach keys of execs created but not yet started, by id (routes/execs.py: docker takes
# them at ExecCreate and applies them at ExecStart).
EXEC_DETACH_KEYS_KEY = web.AppKey("exec_detach_keys", dict)
# The largest JSON body accepted (413 beyond, refused as it arrives, never read whole):
# a create body with a seccomp profile inside is tens of KiB.
MAX_JSON_BODY = 4 << 20
# The API version a request asked for (its /vX.Y/ prefix, or the newest one).
API_VERSION_KEY = web.RequestKey("api_version", tuple)


def backends(request: web.Request):
    return request.app[BACKENDS_KEY]


async def json_body(request: web.Request, default=None):
    raw = await request.read()
    if not raw.strip():
        return {} if default is None else default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise errors.InvalidArgument(f"invalid JSON: {exc}") from None


async def json_object(request: web.Request) -> dict:
    """A body that must be a JSON object (empty: {})."""
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    return body


@contextlib.contextmanager
def long_lived(request: web.Request):
    """Marks a handler (attach, wait, follow) that a server stop must cancel, not wait for."""
    task = asyncio.current_task()
    sessions = request.app[SESSIONS_KEY]
    sessions.add(task)
    try:
        yield
    finally:
        sessions.discard(task)


def json_response(data, status: int = 200) -> web.Response:
    # Bytes, so the Content-Type is exactly "application/json", as the Go client compares it.
    return web.Response(status=status, body=json.dumps(data, separators=(",", ":")).encode(),
                        content_type="application/json")
