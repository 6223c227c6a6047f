"""Paths inside a container's or an image's root, resolved on the host without
ever leaving that root."""

from __future__ import annotations

import os

from services.common import errors


def secure_join(root: str, path: str) -> str:
    """`path` inside `root`, with symlinks resolved as if `root` were `/`.

    An image's /etc/passwd may be a symlink such as `/etc/passwd -> /host/secret`;
    following it on the host would read outside the container.
    """
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise errors.InvalidArgument(f"too many symlinks resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return os.path.join(root, *resolved)
