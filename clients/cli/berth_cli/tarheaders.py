"""Tar headers written without tarfile, for the archives the CLI sends (a build's context,
a file copied into a container).

Why not tarfile: its import (with shutil, re and copy) costs a short build or a `cp` a
good part of the CLI's whole run, and these archives need only POSIX (ustar) headers,
with a PAX header before one when a name, a link, a size or an owner does not fit."""

from __future__ import annotations

import os
import stat

USTAR_ID = 8 ** 7      # owners from here on do not fit ustar's 7 octal digits
USTAR_SIZE = 8 ** 11   # nor sizes from here on its 11


def tar_header(name: str, st: os.stat_result, kind: bytes, size: int = 0, link: str = "",
               dev: int = 0, owner: tuple[int, int] = (0, 0)) -> bytes:
    """A member's header. Owners by number only, as the engine takes them: root unless
    `owner` (uid, gid) says otherwise."""
    pax = {}
    raw_name, raw_link = name.encode("utf-8", "surrogateescape"), link.encode("utf-8", "surrogateescape")
    if len(raw_name) > 100 or not name.isascii():
        pax["path"] = raw_name
    if len(raw_link) > 100 or not link.isascii():
        pax["linkpath"] = raw_link
    if size >= USTAR_SIZE:
        pax["size"] = str(size).encode()
    uid, gid = owner
    if uid >= USTAR_ID:
        pax["uid"] = str(uid).encode()
    if gid >= USTAR_ID:
        pax["gid"] = str(gid).encode()
    prefix = b""
    if pax:
        records = b"".join(_pax_record(k, v) for k, v in pax.items())
        prefix = _ustar(b"././@PaxHeader", 0o644, len(records), 0, b"x", b"", 0, 0, 0) + records + \
            bytes(-len(records) % 512)
    return prefix + _ustar(raw_name[:100], stat.S_IMODE(st.st_mode), size if size < USTAR_SIZE else 0,
                           int(st.st_mtime), kind, raw_link[:100], dev,
                           uid if uid < USTAR_ID else 0, gid if gid < USTAR_ID else 0)


def _pax_record(key: str, value: bytes) -> bytes:
    body = f" {key}=".encode() + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:   # the length counts its own digits
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def _ustar(name: bytes, mode: int, size: int, mtime: int, kind: bytes, link: bytes, dev: int,
           uid: int, gid: int) -> bytes:
    def num(value: int, width: int) -> bytes:
        return b"%0*o\0" % (width - 1, value)
    head = b"".join((
        name.ljust(100, b"\0"), num(mode, 8), num(uid, 8), num(gid, 8), num(size, 12),
        num(max(0, mtime), 12), b" " * 8, kind, link.ljust(100, b"\0"), b"ustar\x0000",
        bytes(64), num(os.major(dev), 8), num(os.minor(dev), 8), bytes(167)))
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


class PlainFile:
    """A regular file's ustar header, as read_plain_file finds it."""

    __slots__ = ("name", "mode", "uid", "gid", "size", "mtime", "uname", "gname")

    def __init__(self, name, mode, uid, gid, size, mtime, uname, gname):
        self.name, self.mode, self.uid, self.gid, self.size = name, mode, uid, gid, size
        self.mtime, self.uname, self.gname = mtime, uname, gname


def read_plain_file(block) -> PlainFile | None:
    """The regular file a 512-byte POSIX (ustar) header block describes, when it is one
    whose name is a single ASCII component with no prefix and whose fields are plain octal
    (what a container's single file comes out as); None for anything else (a PAX or GNU
    header, a directory, a link...), which tarfile then reads."""
    block = bytes(block)
    if len(block) != 512 or block[257:265] != b"ustar\x0000" or block[156:157] not in (b"0", b"\0"):
        return None
    if block[345:346] != b"\0":  # a prefix: the name is longer than its field
        return None
    try:
        fields = [int(block[a:b].rstrip(b"\0 ").strip() or b"0", 8)
                  for a, b in ((100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156))]
    except ValueError:  # base-256 numbers, garbage
        return None
    mode, uid, gid, size, mtime, checksum = fields
    if checksum != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        return None
    name = block[:100].split(b"\0", 1)[0]
    if not name.isascii() or b"/" in name or name in (b"", b".", b".."):
        return None
    return PlainFile(name.decode(), mode, uid, gid, size, mtime,
                     block[265:297].split(b"\0", 1)[0].decode("ascii", "replace"),
                     block[297:329].split(b"\0", 1)[0].decode("ascii", "replace"))
