"""Domain errors shared by every berth service, and their one mapping to gRPC.

Domain code raises these; the server interceptor turns them into status codes
with the message as written, and `from_rpc_error` turns a status back into the
same kind on the client side, so the gateway can re-raise what a node said.
"""

from __future__ import annotations

import grpc


class BerthError(Exception):
    """Base of all errors that reach a client with a meaningful status code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(BerthError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(BerthError):
    code = grpc.StatusCode.ALREADY_EXISTS


class InvalidArgument(BerthError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(BerthError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Conflict(BerthError):
    code = grpc.StatusCode.ABORTED


class Unavailable(BerthError):
    code = grpc.StatusCode.UNAVAILABLE


class NotImplementedYet(BerthError):
    code = grpc.StatusCode.UNIMPLEMENTED


class DeadlineExceeded(BerthError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(BerthError):
    code = grpc.StatusCode.INTERNAL


class Unauthorized(BerthError):
    """A registry refused the credentials given (or wanted some)."""

    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE = {
    cls.code: cls
    for cls in (NotFound, AlreadyExists, InvalidArgument, FailedPrecondition, Conflict,
                Unavailable, NotImplementedYet, DeadlineExceeded, Internal, Unauthorized)
}


def from_rpc_error(err: grpc.RpcError) -> BerthError:
    """The domain error a failed call stands for (Internal for codes without a kind)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    cls = _BY_CODE.get(code, Internal)
    return cls(details or code.name.lower())
