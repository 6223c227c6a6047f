"""A container's files as docker describes them: the stat of a copied path, `diff` entries."""

from __future__ import annotations

from berth.engine.v1 import engine_pb2
from berth_docker.times import rfc3339, to_pb_time

# Go's os.FileMode type bits, which X-Docker-Container-Path-Stat carries (not unix st_mode).
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def path_stat(member) -> dict:
    """The stat of a copied path from its archive's first member (a tarfile.TarInfo)."""
    mode = member.mode & 0o777
    if member.isdir():
        mode |= _GO_DIR
    elif member.issym():
        mode |= _GO_SYMLINK
    elif member.ischr():
        mode |= _GO_DEVICE | _GO_CHARDEV
    elif member.isblk():
        mode |= _GO_DEVICE
    elif member.isfifo():
        mode |= _GO_PIPE
    for bit, go in ((0o4000, _GO_SETUID), (0o2000, _GO_SETGID), (0o1000, _GO_STICKY)):
        if member.mode & bit:
            mode |= go
    when = to_pb_time(float(member.mtime))
    return {"name": member.name.rstrip("/").rsplit("/", 1)[-1] or "/", "size": member.size, "mode": mode,
            "mtime": rfc3339(when), "linkTarget": member.linkname if member.issym() else ""}


_CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}


def change_json(change: engine_pb2.FileChange) -> dict:
    """`GET /containers/{id}/changes`: Kind 0 modified, 1 added, 2 deleted."""
    return {"Path": change.path, "Kind": _CHANGE_KINDS.get(change.kind, 0)}
