"""How a call can fail, and the exit statuses the CLI gives failures, as docker's CLI does.

The transport raises RpcError; the engine's reason for a failure (berth_errors: the
ErrorInfo in the status details) is read from it, never from the message text.
Imports nothing heavy: the parsers' modules import this.
"""

from __future__ import annotations

import berth_errors

ENGINE_ERROR = 125      # the engine refused or failed (docker: the daemon's error)
CANNOT_INVOKE = 126     # the container's command could not be run
COMMAND_NOT_FOUND = 127  # the container's command does not exist


_CODE_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
               "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
               "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
               "UNAUTHENTICATED")


class StatusCode(int):
    """gRPC's status codes, numbered and named as grpc.StatusCode: an int with a `name`.

    (Not an enum.IntEnum: the enum module costs more to import than a verb's call.)
    StatusCode(5) is StatusCode.NOT_FOUND; a number gRPC does not define is a ValueError.
    """

    name: str

    def __new__(cls, value: int):
        if isinstance(value, int) and 0 <= value < len(_CODES):
            return _CODES[value]
        raise ValueError(f"{value!r} is not a valid StatusCode")

    def __repr__(self) -> str:
        return f"<StatusCode.{self.name}: {int(self)}>"

    def __str__(self) -> str:
        return f"StatusCode.{self.name}"


_CODES: list[StatusCode] = []
for _number, _name in enumerate(_CODE_NAMES):
    _code = int.__new__(StatusCode, _number)
    _code.name = _name
    setattr(StatusCode, _name, _code)
    _CODES.append(_code)


class RpcError(Exception):
    """A call that ended with a status other than OK; `code()`/`details()` as grpcio's, plus
    the engine's `reason` and `metadata` when the status carried berth's ErrorInfo."""

    def __init__(self, code: StatusCode, details: str, status_details: bytes = b""):
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details
        self._status_details = status_details
        self._info: tuple[str, dict[str, str]] | None = None

    def code(self) -> StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def _error_info(self) -> tuple[str, dict[str, str]]:
        if self._info is None:
            info = None
            if self._status_details:
                from berth_cli import wire  # not berth_errors.error_info: that loads protobuf
                info = wire.error_info(self._status_details, berth_errors.DOMAIN)
            self._info = info or ("", {})
        return self._info

    @property
    def reason(self) -> str:
        """The ErrorInfo reason ("NOT_FOUND", ...); "" when the failure did not come from berth's engine."""
        return self._error_info()[0]

    @property
    def metadata(self) -> dict[str, str]:
        return self._error_info()[1]

    def is_missing(self, resource: str) -> bool:
        """Whether the engine said that `resource` (berth_errors.IMAGE, ...) does not exist."""
        return self.reason == berth_errors.NotFound.reason and self.metadata.get(berth_errors.RESOURCE) == resource


class Unreachable(RpcError):
    """The daemon's socket could not be reached at all (nothing was sent)."""

    def __init__(self, details: str):
        super().__init__(StatusCode.UNAVAILABLE, details)


class Failed(Exception):
    """Stop the verb with this exit status; the message is already printed."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def command_status(err: RpcError) -> int:
    """Docker's exit status for a container command that could not run: 127 not found,
    126 cannot be invoked, else 125."""
    cause = err.metadata.get(berth_errors.CAUSE)
    if cause == berth_errors.COMMAND_NOT_FOUND:
        return COMMAND_NOT_FOUND
    if cause == berth_errors.COMMAND_NOT_EXECUTABLE:
        return CANNOT_INVOKE
    return ENGINE_ERROR
