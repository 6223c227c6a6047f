"""Domain errors -> Docker Engine API status codes, in one place (moby's errdefs -> HTTP).

Every handler lets services.common.errors kinds propagate; the middleware here turns
them into the status docker would send, with docker's `{"message": ...}` body, which
the docker CLI prints as "Error response from daemon: <message>".
"""

from __future__ import annotations

import json

import grpc
import structlog
from aiohttp import web

from services.common import errors
from services.gateway.docker.context import MAX_JSON_BODY

log = structlog.get_logger(__name__)

# Keyed by the kind's gRPC code, so kinds added to services.common.errors later
# (each carries its code) map without touching this table.
_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    # docker answers "container is running" and "image is being used" with 409.
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}


def status_of(exc: errors.BerthError) -> int:
    return _STATUS.get(errors.grpc_code(exc), 500)


def error_response(status: int, message: str) -> web.Response:
    # Exactly "application/json" (no charset): the Go client only decodes the message then.
    return web.Response(status=status, body=json.dumps({"message": message}).encode(),
                        content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except errors.BerthError as exc:
        status = status_of(exc)
        if status >= 500:
            log.warning("docker_api_error", path=request.path, status=status, error=exc.message)
        return error_response(status, exc.message)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, f"request body too large: at most {MAX_JSON_BODY} bytes of JSON are accepted")
    except web.HTTPException as exc:
        if exc.status in (404, 405) and not exc.text.startswith("{"):
            # aiohttp's own "no such route" answers, in docker's shape.
            return error_response(exc.status, f"page not found" if exc.status == 404
                                  else f"method {request.method} not allowed")
        raise
    except (ConnectionResetError, ConnectionError):
        raise
    except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become 500
        log.exception("docker_api_unexpected_error", path=request.path)
        return error_response(500, str(exc) or type(exc).__name__)
