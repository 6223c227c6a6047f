"""The static syscall probe (probe.c beside this file), built with `gcc -static` once per
test session into a directory of its own that tests bind into containers at /probe."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.c")
SYSCALLS = ("userfaultfd", "perf_event_open", "io_uring_setup", "add_key", "personality")


def build(directory: str) -> str | None:
    """`directory`/probe, or None when no static C toolchain is installed."""
    if not shutil.which("gcc"):
        return None
    out = os.path.join(directory, "probe")
    done = subprocess.run(["gcc", "-static", "-O1", "-o", out, SOURCE], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return out


def parse(output: str) -> dict[str, int]:
    """The probe's "name=errno" lines as a mapping."""
    return {k: int(v) for k, v in (line.split("=", 1) for line in output.split() if "=" in line)}


def temporary_dir() -> str:
    return tempfile.mkdtemp(prefix="/tmp/berth-probe-")
