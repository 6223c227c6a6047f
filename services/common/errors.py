"""The error kinds every berth service raises, and their one mapping to gRPC.

The kinds themselves live in berth_errors (clients/python), shared with the clients,
which classify failures by the reason those kinds carry on the wire. This module adds
what only a gRPC peer needs: a kind's status code, and a failed call turned back into
the same kind, so the gateway re-raises what a node said, reason and metadata included.
"""

from __future__ import annotations

import grpc

from berth_errors import (  # noqa: F401 - the kinds, as services import them
    AlreadyExists, BerthError, Conflict, DeadlineExceeded, FailedPrecondition, Internal,
    InvalidArgument, NotFound, NotImplementedYet, Unauthorized, Unavailable, from_status,
    not_implemented, status_details)
from berth_errors import DETAILS_KEY


def grpc_code(exc: BerthError) -> grpc.StatusCode:
    return grpc.StatusCode[exc.status]


def trailing_metadata(exc: BerthError) -> tuple[tuple[str, bytes], ...]:
    """The rich-status trailer (google.rpc.Status with berth's ErrorInfo) for a failed call."""
    return ((DETAILS_KEY, status_details(exc, grpc_code(exc).value[0])),)


def from_rpc_error(err: grpc.RpcError) -> BerthError:
    """The domain error a failed call stands for (Internal for codes without a kind)."""
    status = err.code().name if hasattr(err, "code") else "UNKNOWN"
    message = err.details() if hasattr(err, "details") else str(err)
    details = None
    if hasattr(err, "trailing_metadata"):
        for key, value in err.trailing_metadata() or ():
            if key == DETAILS_KEY:
                details = value
    return from_status(status, message or "", details)


async def stream_items(start):
    """The items of the streaming call `start()` makes (made at the first read), its failures
    raised as berth's errors; a reader that stops (aclose) ends the call now, not at GC."""
    call = start()
    try:
        async for item in call:
            yield item
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from None
    finally:
        call.cancel()
