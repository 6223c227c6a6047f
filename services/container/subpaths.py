"""Bind mounts of a path inside their source (docker's volume subpath), without a way out.

The container whose volume it is may rename a directory of the sub-path, or put a
symlink in its place, at any time: a path checked and then handed to runc could
lead anywhere on the host by the time runc mounts it. So the sub-path is opened
one component at a time below the source with O_NOFOLLOW (a symlink is refused,
".." never accepted), and the mount is cloned from the opened descriptor
(open_tree on the fd) and attached under the bundle; runc binds that mount point,
which is the directory that was opened, whatever the names say by then.

    bundles/<cid>/subpath/<i>   the cloned mount for spec.mounts[i], made at each
                                start (a fresh resolution), removed with the bundle
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import replace

from services.common import errors
from services.container import runtime as rt
from services.container import userns
from services.container.model import Mount


def check(sub_path: str) -> None:
    """A sub-path as CreateContainer takes it: relative, within its source."""
    if not sub_path:
        return
    if sub_path.startswith("/") or ".." in sub_path.split("/"):
        raise errors.InvalidArgument(
            f"invalid mount config: subpath {sub_path!r} must be a relative path within the volume")


def subpath_dir(bundle_dir: str) -> str:
    return os.path.join(bundle_dir, "subpath")


def attach(mounts: tuple[Mount, ...], bundle_dir: str) -> tuple[Mount, ...]:
    """`mounts` with every sub-path bind replaced by a bind of its resolved mount under
    the bundle (see the module's docstring)."""
    out = []
    for i, m in enumerate(mounts):
        if m.type != "bind" or not m.sub_path:
            out.append(m)
            continue
        target = os.path.join(subpath_dir(bundle_dir), str(i))
        fd = _open_beneath(m.source, m.sub_path)
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            # A restart resolves again: the previous start's mount goes first.
            for point in sorted(rt.mounts_under(target), key=len, reverse=True):
                rt.unmount(point)
            os.makedirs(subpath_dir(bundle_dir), mode=0o700, exist_ok=True)
            if is_dir:
                os.makedirs(target, mode=0o700, exist_ok=True)
            elif not os.path.exists(target):
                open(target, "x").close()
            tree = userns.clone_tree(fd, recursive="rbind" in m.options)
            try:
                userns.attach_tree(tree, target)
            finally:
                os.close(tree)
        finally:
            os.close(fd)
        out.append(replace(m, source=target, sub_path=""))
    return tuple(out)


def _open_beneath(source: str, sub_path: str) -> int:
    """An O_PATH fd of source/sub_path reached without following any symlink."""
    fd = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    parts = [p for p in posixpath.normpath(sub_path).split("/") if p not in ("", ".")]
    try:
        for n, part in enumerate(parts):
            if part == "..":
                raise errors.InvalidArgument(f"subpath {sub_path!r} leaves the volume")
            try:
                nxt = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                raise errors.FailedPrecondition(
                    f"cannot access path {posixpath.join(source, sub_path)}: the volume has no "
                    f"{'/'.join(parts[:n + 1])!r}") from None
            os.close(fd)
            fd = nxt
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                raise errors.FailedPrecondition(
                    f"subpath {sub_path!r}: {'/'.join(parts[:n + 1])!r} is a symlink, which could "
                    "lead out of the volume")
            if n < len(parts) - 1 and not stat.S_ISDIR(mode):
                raise errors.FailedPrecondition(
                    f"subpath {sub_path!r}: {'/'.join(parts[:n + 1])!r} is not a directory")
        return fd
    except BaseException:
        os.close(fd)
        raise
