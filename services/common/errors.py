"""Domain errors shared by every berth service, and their one mapping to gRPC.

Domain code raises these; the server interceptor turns them into status codes
with the message as written, and `from_rpc_error` turns a status back into the
same kind on the client side, so the gateway can re-raise what a node said.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

# Kinds name their gRPC status code, and grpc is imported only where a code is
# needed: the CLI raises and catches these kinds too (reference parsing), and
# importing grpcio costs it ~50 ms.


class BerthError(Exception):
    """Base of all errors that reach a client with a meaningful status code."""

    status: str = "UNKNOWN"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @property
    def code(self) -> grpc.StatusCode:
        import grpc
        return grpc.StatusCode[self.status]


class NotFound(BerthError):
    status = "NOT_FOUND"


class AlreadyExists(BerthError):
    status = "ALREADY_EXISTS"


class InvalidArgument(BerthError):
    status = "INVALID_ARGUMENT"


class FailedPrecondition(BerthError):
    status = "FAILED_PRECONDITION"


class Conflict(BerthError):
    status = "ABORTED"


class Unavailable(BerthError):
    status = "UNAVAILABLE"


class NotImplementedYet(BerthError):
    status = "UNIMPLEMENTED"


class DeadlineExceeded(BerthError):
    status = "DEADLINE_EXCEEDED"


class Internal(BerthError):
    status = "INTERNAL"


class Unauthorized(BerthError):
    """A registry refused the credentials given (or wanted some)."""

    status = "UNAUTHENTICATED"


_BY_STATUS = {
    cls.status: cls
    for cls in (NotFound, AlreadyExists, InvalidArgument, FailedPrecondition, Conflict,
                Unavailable, NotImplementedYet, DeadlineExceeded, Internal, Unauthorized)
}


def from_rpc_error(err: grpc.RpcError) -> BerthError:
    """The domain error a failed call stands for (Internal for codes without a kind)."""
    status = err.code().name if hasattr(err, "code") else "UNKNOWN"
    details = err.details() if hasattr(err, "details") else str(err)
    cls = _BY_STATUS.get(status, Internal)
    return cls(details or status.lower())
