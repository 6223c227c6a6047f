"""Detach keys: the key sequence on a terminal's stdin that detaches a Docker API client.

docker reads it on the daemon side of a hijacked attach or exec stream (the docker CLI
sends keystrokes as they are typed and leaves the detaching to the engine), only when
the process has a terminal: ctrl-p ctrl-q unless the attach's `detachKeys` query
parameter or the exec's `DetachKeys` says otherwise. On the sequence the client's
connection is closed and the process keeps running.

    keys = parse("ctrl-p,ctrl-q")        # b"\\x10\\x11"
    scanner = Scanner(keys)
    scanner.feed(b"ab\\x10")              # (b"ab", False): the \\x10 is held back
    scanner.feed(b"c")                   # (b"\\x10c", False): not the sequence, sent on
    scanner.feed(b"\\x10\\x11")            # (b"", True): detach
"""

from __future__ import annotations

from services.common import errors

DEFAULT = "ctrl-p,ctrl-q"
# docker's names for the control codes, in code order: ctrl-@ is 0, ctrl-a 1 ... ctrl-_ 31.
_CONTROL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"


def parse(spec: str, what: str = "detach keys") -> bytes:
    """A comma-separated list of single characters and ctrl-<x> names, as docker reads it;
    InvalidArgument (400) naming the spec for anything else."""
    keys = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            keys += key.encode("latin-1", errors="replace")[:1]
            continue
        lower = key.lower()
        if lower.startswith("ctrl-") and len(lower) == 6 and lower[5] in _CONTROL:
            keys.append(_CONTROL.index(lower[5]))
            continue
        raise errors.InvalidArgument(f"Invalid {what} ({spec}) provided: unknown key '{key}'")
    return bytes(keys)


DEFAULT_KEYS = parse(DEFAULT)


class Scanner:
    """Finds the sequence in a byte stream split anywhere; a partial match that fails
    is passed on with the byte that broke it."""

    def __init__(self, keys: bytes):
        self._keys = keys
        self._matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass to the process, whether the sequence is complete). After a
        detach the rest of `data` is dropped: the client typed it after detaching."""
        keys = self._keys
        if not keys:
            return data, False
        out = bytearray()
        start = 0  # data[start:i] passes unchanged
        for i, byte in enumerate(data):
            if byte == keys[self._matched]:
                if self._matched == 0:
                    out += data[start:i]
                self._matched += 1
                if self._matched == len(keys):
                    self._matched = 0
                    return bytes(out), True
                start = i + 1
            elif self._matched:
                out += keys[:self._matched]
                self._matched = 0
                if byte == keys[0]:
                    self._matched = 1
                    start = i + 1
                else:
                    start = i
        if not self._matched:
            out += data[start:]
        return bytes(out), False
