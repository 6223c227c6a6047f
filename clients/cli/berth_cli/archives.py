"""Tar archives between the engine and local files: save, export, load, import."""

from __future__ import annotations

import os
import sys

CHUNK = 1 << 20


def chunks(f):
    while True:
        data = f.read(CHUNK)
        if not data:
            return
        yield data


def open_input(path: str):
    """The file to read an archive from; stdin for "" or "-" (never a terminal)."""
    if path and path != "-":
        return open(path, "rb")
    if sys.stdin.isatty():
        raise ValueError("requested load from stdin, but stdin is empty")
    return os.fdopen(os.dup(sys.stdin.fileno()), "rb")


def write_archive(output: str, open_stream) -> int:
    """A tarball from the engine to `output` (atomically) or to stdout, never to a terminal."""
    if not output and sys.stdout.isatty():
        print("berth: cowardly refusing to save to a terminal. Use the -o flag or redirect",
              file=sys.stderr)
        return 1
    stream = open_stream()
    if output:
        tmp = f"{output}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as out:
                for chunk in stream:
                    out.write(chunk.data)
            os.replace(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:
        for chunk in stream:
            sys.stdout.buffer.write(chunk.data)
        sys.stdout.buffer.flush()
    return 0
