"""A snapshot's writable layer read back: as changes (`diff`) or as a new layer (`commit`).

An overlay upper dir records a container's changes in overlayfs' own terms, which
are not what an image layer says. Reading it back turns them into the OCI spelling
(the reverse of unpack.py):

    upper/etc/motd                  file          -> etc/motd               (A or C)
    upper/tmp/gone    char 0:0      whiteout      -> tmp/.wh.gone           (D tmp/gone)
    upper/srv/        opaque=y      opaque dir    -> srv/ + srv/.wh..wh..opq

Whether a path is Added or Changed depends on whether a lower layer has it.
Entries are visited in sorted order, so the same upper dir always makes the
same tar, byte for byte, and so the same layer digest.
"""

from __future__ import annotations

import json
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO

from services.image.unpack import WHITEOUT_OPAQUE, WHITEOUT_PREFIX

OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True)
class Change:
    kind: str   # "A", "C" or "D"
    path: str   # absolute, as in the container


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(upper: str) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under upper, parents before children, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(upper, rel)) as it:
            names = sorted(e.name for e in it)
        children = []
        for name in names:
            child = f"{rel}/{name}" if rel else name
            st = os.lstat(os.path.join(upper, child))
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                children.append(child)
        # Reversed onto the stack so the first sorted child is walked first.
        stack.extend(reversed(children))


def _in_lowers(lowers: Sequence[str], rel: str) -> bool:
    """Whether the merged lower layers (top first) show `rel` (whiteouts and opaque dirs hide)."""
    parts = rel.split("/")
    for lower in lowers:
        path = os.path.join(lower, rel)
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is not None:
            return not _is_whiteout(st)
        # An opaque parent in this layer hides everything below it in the lower ones.
        for i in range(1, len(parts)):
            if _is_opaque(os.path.join(lower, *parts[:i])):
                return False
    return False


def diff(upper: str, lowers: Sequence[str]) -> list[Change]:
    """Changes of a snapshot as `docker diff` lists them, sorted by path."""
    changes: list[Change] = []
    skip: list[str] = []
    for rel, st in _walk(upper):
        if any(rel.startswith(s + "/") for s in skip):
            continue
        if _is_whiteout(st):
            changes.append(Change("D", "/" + rel))
            continue
        existed = _in_lowers(lowers, rel)
        changes.append(Change("C" if existed else "A", "/" + rel))
        if stat.S_ISDIR(st.st_mode) and existed and _is_opaque(os.path.join(upper, rel)):
            # Everything the lower layers had here is gone, except what upper re-adds.
            upper_names = set(os.listdir(os.path.join(upper, rel)))
            for name in sorted(_lower_names(lowers, rel) - upper_names):
                changes.append(Change("D", f"/{rel}/{name}"))
    changes.sort(key=lambda c: c.path)
    return changes


def _lower_names(lowers: Sequence[str], rel: str) -> set[str]:
    names: set[str] = set()
    for lower in lowers:
        path = os.path.join(lower, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            names.update(n for n in os.listdir(path)
                         if not _is_whiteout(os.lstat(os.path.join(path, n))))
            if _is_opaque(path):
                break
    return names


IdRanges = Sequence[tuple[int, int, int]]  # (container id, host id, size)


def _to_container(host_id: int, ranges: IdRanges) -> int:
    for container_id, start, size in ranges:
        if start <= host_id < start + size:
            return host_id - start + container_id
    return host_id


def write_layer(upper: str, out: BinaryIO, uid_map: IdRanges = (), gid_map: IdRanges = ()) -> None:
    """The upper dir as an OCI layer tar (uncompressed), whiteouts in .wh. form; ids a
    remapped container wrote (host ids, see uid_map/gid_map) recorded as its own."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel, st in _walk(upper):
            path = os.path.join(upper, rel)
            parent, _, name = rel.rpartition("/")
            if _is_whiteout(st):
                info = tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name)
                info.mtime = int(st.st_mtime)
                tar.addfile(info)
                continue
            info = tar.gettarinfo(path, arcname=rel)
            if info is None:
                continue  # sockets have no tar form
            # Names, not numbers, would be looked up on the host: the container's own are kept.
            info.uname = info.gname = ""
            info.uid, info.gid = _to_container(info.uid, uid_map), _to_container(info.gid, gid_map)
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if stat.S_ISDIR(st.st_mode) and _is_opaque(path):
                marker = tarfile.TarInfo(f"{rel}/{WHITEOUT_OPAQUE}")
                marker.mtime = int(st.st_mtime)
                tar.addfile(marker)


def config_document(parent_config_json: bytes | None, config: dict, diff_id: str | None,
                    comment: str, author: str, created_by: str = "") -> bytes:
    """The new image's config: the parent's, one more layer and history entry, the new run config.

    Without a diff_id the history entry is an empty layer (a step that changed only
    the config); without a parent the image starts from nothing (FROM scratch).
    """
    parent = json.loads(parent_config_json) if parent_config_json else {}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    history = list(parent.get("history") or [])
    entry: dict = {"created": now, "created_by": created_by or "berth commit"}
    if diff_id is None:
        entry["empty_layer"] = True
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    history.append(entry)
    rootfs = parent.get("rootfs") or {}
    doc = {
        "architecture": parent.get("architecture") or "amd64",
        "os": parent.get("os") or "linux",
        "created": now,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [*(rootfs.get("diff_ids") or []),
                                                  *([diff_id] if diff_id else [])]},
        "history": history,
    }
    if author:
        doc["author"] = author
    return json.dumps(doc, separators=(",", ":")).encode()
