"""The few flat Engine requests the container-state verbs send, written in protobuf's
wire format without the generated code.

`berth start/stop/restart/kill/rm/pause/unpause NAME` sends an id and a flag or two and
prints the name it was given; it reads nothing of the reply but its status. Loading
upb, the engine's descriptors and the well-known types for that (~30 ms, more than
the rest of the command) is most of such a verb's cost, so these requests are encoded
here, from the field numbers of engine.proto listed in REQUESTS. The wire format
of a field number never changes; tests/unit/cli/test_wire.py checks every entry against
the generated descriptors and every encoding against protobuf's own bytes.

    client.call("StopContainer", wire.request("StopContainerRequest", id="web", timeout=5))
"""

from __future__ import annotations

SERVICE = "berth.engine.v1.EngineService"

STRING, BOOL, INT32, OPTIONAL_INT32 = "string", "bool", "int32", "optional int32"

# message -> its fields: (name, number, kind), as engine.proto declares them.
REQUESTS: dict[str, tuple[tuple[str, int, str], ...]] = {
    "StartContainerRequest": (("id", 1, STRING),),
    "StopContainerRequest": (("id", 1, STRING), ("timeout", 2, OPTIONAL_INT32)),
    "RestartContainerRequest": (("id", 1, STRING), ("timeout", 2, OPTIONAL_INT32)),
    "KillContainerRequest": (("id", 1, STRING), ("signal", 2, STRING)),
    "RemoveContainerRequest": (("id", 1, STRING), ("force", 2, BOOL), ("remove_volumes", 3, BOOL)),
    "PauseContainerRequest": (("id", 1, STRING),),
    "UnpauseContainerRequest": (("id", 1, STRING),),
}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int32 is sent as its 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class Request:
    """An encoded request: what the transport asks of a message (SerializeToString)."""

    def __init__(self, name: str, data: bytes):
        self.name, self._data = name, data

    def SerializeToString(self) -> bytes:  # noqa: N802 — protobuf's name, for the transport
        return self._data


def request(name: str, **values) -> Request:
    """REQUESTS[name] with these values; proto3's defaults (and an unset optional) are not
    sent, as protobuf does not send them."""
    fields = REQUESTS[name]
    unknown = set(values) - {f[0] for f in fields}
    if unknown:
        raise TypeError(f"{name} has no field {sorted(unknown)[0]!r}")
    out = bytearray()
    for field, number, kind in fields:
        value = values.get(field)
        if kind == STRING:
            if value:
                data = value.encode()
                out += _varint(number << 3 | 2) + _varint(len(data)) + data
        elif kind == OPTIONAL_INT32 and value is None or kind != OPTIONAL_INT32 and not value:
            continue
        else:  # bool, int32, optional int32: varints
            if kind != BOOL and not -2**31 <= value < 2**31:
                raise ValueError(f"Value out of range: {value}")  # protobuf's words
            out += _varint(number << 3) + _varint(int(value))
    return Request(name, bytes(out))


class Reply:
    """A reply read as the bytes it came in (the state verbs need only its status)."""

    @staticmethod
    def FromString(data: bytes) -> bytes:  # noqa: N802 — protobuf's name, for the transport
        return data
