"""A container's logged output as docker prints it and its API answers it.

Apart from containers.py: `berth logs` imports this alone (containers.py brings the ports',
networks' and health's shapes, ~3 ms of a command that takes ~20)."""

from __future__ import annotations

from berth_docker.times import rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.types.v1 import stdio_pb2


def log_line(chunk: stdio_pb2.OutputChunk, timestamps: bool) -> bytes:
    """One line of `logs`, with `-t` its time first, as docker writes it."""
    if not timestamps:
        return chunk.data
    return rfc3339(chunk.time if chunk.HasField("time") else None).encode() + b" " + chunk.data
