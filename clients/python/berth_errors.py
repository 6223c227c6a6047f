"""berth's error kinds, shared by every service, the gateway and the clients, and how one crosses the wire.

Domain code raises a kind; the server's error interceptor sends it as the kind's gRPC
status code with the message as written, plus a rich status in the standard
`grpc-status-details-bin` trailer: a google.rpc.Status whose details hold one
google.rpc.ErrorInfo

    {reason: "NOT_FOUND", domain: "berth", metadata: {"resource": "image"}}

A client decodes that trailer and acts on `reason` and `metadata`, never on the
message text (which is for people and may change). Worked example: `berth run x`
for an image that is not there gets NOT_FOUND with resource=image and pulls it;
a missing container gives NOT_FOUND with resource=container and is only reported.

Pure Python over the standard library; the google.rpc types (googleapis-common-protos,
plain protobuf) are imported only to encode or decode a failure, so the CLI, which
must start fast and never imports grpcio, can import this module at no cost.
"""

from __future__ import annotations

DOMAIN = "berth"

# ErrorInfo.metadata keys a client may act on, and their values.
RESOURCE = "resource"                         # what was missing or in the way: one of the names below
IMAGE, CONTAINER, NETWORK, VOLUME, EXEC = "image", "container", "network", "volume", "exec"
CAUSE = "cause"                               # why a container's command could not run
COMMAND_NOT_FOUND = "command_not_found"       # docker's CLI exits 127
COMMAND_NOT_EXECUTABLE = "command_not_executable"   # docker's CLI exits 126
COMMAND_FAILED = "command_failed"             # the runtime could not start it for another reason

# The trailer gRPC defines for a serialized google.rpc.Status.
DETAILS_KEY = "grpc-status-details-bin"


class BerthError(Exception):
    """Base of all errors that reach a client with a meaningful status code.

    `status` is the gRPC status code's name, `reason` the ErrorInfo reason; `metadata`
    (keyword arguments, values turned into strings) travels in the ErrorInfo too."""

    status: str = "UNKNOWN"
    reason: str = "UNKNOWN"

    def __init__(self, message: str, **metadata: str):
        super().__init__(message)
        self.message = message
        self.metadata = {k: str(v) for k, v in metadata.items()}


class NotFound(BerthError):
    status = reason = "NOT_FOUND"


class AlreadyExists(BerthError):
    status = reason = "ALREADY_EXISTS"


class InvalidArgument(BerthError, ValueError):
    """Bad input; also a ValueError, which is what a bad value is to Python code."""

    status = reason = "INVALID_ARGUMENT"


class FailedPrecondition(BerthError):
    status = reason = "FAILED_PRECONDITION"


class Conflict(BerthError):
    status, reason = "ABORTED", "CONFLICT"


class Unavailable(BerthError):
    status = reason = "UNAVAILABLE"


class NotImplementedYet(BerthError):
    status, reason = "UNIMPLEMENTED", "NOT_IMPLEMENTED"


class DeadlineExceeded(BerthError):
    status = reason = "DEADLINE_EXCEEDED"


class Internal(BerthError):
    status = reason = "INTERNAL"


class Unauthorized(BerthError):
    """A registry refused the credentials given (or wanted some)."""

    status, reason = "UNAUTHENTICATED", "UNAUTHORIZED"


KINDS = (NotFound, AlreadyExists, InvalidArgument, FailedPrecondition, Conflict, Unavailable,
         NotImplementedYet, DeadlineExceeded, Internal, Unauthorized)
_BY_REASON = {cls.reason: cls for cls in KINDS}
_BY_STATUS = {cls.status: cls for cls in KINDS}


def not_implemented(what: str) -> NotImplementedYet:
    """The one wording for what the engine cannot do yet (the Docker API answers 501)."""
    return NotImplementedYet(f"{what} is not implemented by berth yet")


def status_details(exc: BerthError, code: int) -> bytes:
    """The serialized google.rpc.Status for the details trailer of a failed call."""
    from google.rpc import error_details_pb2, status_pb2
    status = status_pb2.Status(code=code, message=exc.message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN,
                                                          metadata=exc.metadata))
    return status.SerializeToString()


def error_info(details: bytes | None) -> tuple[str, dict[str, str]] | None:
    """(reason, metadata) of berth's ErrorInfo in a details trailer; None when there is none."""
    if not details:
        return None
    from google.protobuf.message import DecodeError
    from google.rpc import error_details_pb2, status_pb2
    try:
        status = status_pb2.Status.FromString(details)
    except DecodeError:
        return None
    for any_ in status.details:
        info = error_details_pb2.ErrorInfo()
        if any_.Unpack(info) and info.domain == DOMAIN:
            return info.reason, dict(info.metadata)
    return None


def from_status(status_name: str, message: str, details: bytes | None = None) -> BerthError:
    """The kind a failed call stands for: by the ErrorInfo's reason when the server sent one,
    else by the status code (Internal for codes without a kind)."""
    info = error_info(details)
    if info is not None and info[0] in _BY_REASON:
        reason, metadata = info
        return _BY_REASON[reason](message or reason.lower(), **metadata)
    return _BY_STATUS.get(status_name, Internal)(message or status_name.lower())
