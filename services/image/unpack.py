"""Unpack one layer tarball into a directory, safely, as an overlayfs lower layer.

Every path is walked component by component with O_NOFOLLOW relative to the
layer root, so nothing in the archive can make extraction write outside it.
Where docker contains an odd archive, so does berth, so that images docker
runs run here too: member names and hardlink targets are clamped into the
layer as if the layer root were `/` (`/etc/x` and `../../etc/x` both become
`etc/x`, as docker's chrooted unpack makes them), and device nodes are
created as they are (the device cgroup denies a container every device it
was not given, so a node in a layer opens nothing). What cannot be contained
is refused, naming the entry: a parent that is a symlink, a hardlink to
something not in the layer, a name the filesystem cannot hold. A file written
where a symlink stood replaces the symlink instead of following it. Symlink
*targets* may be anything (bin/sh -> /bin/busybox is normal): they are
stored, never followed.

Every layer is unpacked before its image is recorded (load, import and pull
alike), so a layer that is refused is refused at the door.

Docker's whiteouts become overlayfs ones: `.wh.<name>` a 0:0 character
device named <name>, `.wh..wh..opq` the trusted.overlay.opaque=y xattr on
its directory.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from contextlib import contextmanager
from typing import BinaryIO

from berth_docker.tarstream import ForwardReader, write_member
from services.common.errors import InvalidArgument, Unavailable
from services.image.layerstream import LayerStream

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
XATTR_PAX_PREFIX = "SCHILY.xattr."
# An archive must not set overlayfs' own attributes (redirects, metacopy):
# only the whiteout translation here may.
FORBIDDEN_XATTR_PREFIX = "trusted.overlay."
CHUNK = 1024 * 1024


def _bad(member: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"refusing to unpack layer: entry {member!r} {why}")


def clean_member_name(name: str) -> list[str]:
    """The path components of a member name, clamped into the layer: resolved
    lexically as if the layer root were `/`, so `..` never climbs above it."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return parts


class _Root:
    """Directory handles under the layer root, opened without following symlinks."""

    def __init__(self, root: str):
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        self._cache: dict[tuple[str, ...], int] = {(): self.root_fd}

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def forget(self, parts: tuple[str, ...]) -> None:
        """Drop cached handles at or under `parts` (the entry there was replaced)."""
        for key in [k for k in self._cache if k[:len(parts)] == parts and k]:
            os.close(self._cache.pop(key))

    def dir_fd(self, parts: tuple[str, ...], member: str, create: bool = True) -> int:
        """The fd of directory `parts`; missing directories are created 0755."""
        if parts in self._cache:
            return self._cache[parts]
        parent = self.dir_fd(parts[:-1], member, create)
        name = parts[-1]
        try:
            st = os.lstat(name, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise _bad(member, f"refers to {'/'.join(parts)!r}, which does not exist") from None
            os.mkdir(name, 0o755, dir_fd=parent)
            st = os.lstat(name, dir_fd=parent)
        if stat.S_ISLNK(st.st_mode):
            raise _bad(member, f"has a parent {'/'.join(parts)!r} that is a symlink")
        if not stat.S_ISDIR(st.st_mode):
            raise _bad(member, f"has a parent {'/'.join(parts)!r} that is not a directory")
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        self._cache[parts] = fd
        return fd


def _remove_existing(root: _Root, parent_fd: int, parts: tuple[str, ...], keep_dir: bool) -> None:
    """Clear the way for a new entry. A directory stays if the new entry is one too."""
    name = parts[-1]
    try:
        st = os.lstat(name, dir_fd=parent_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        root.forget(parts)
        _rmtree_at(parent_fd, name)
    else:
        os.unlink(name, dir_fd=parent_fd)


def _rmtree_at(parent_fd: int, name: str) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        for entry in os.listdir(fd):
            st = os.lstat(entry, dir_fd=fd)
            if stat.S_ISDIR(st.st_mode):
                _rmtree_at(fd, entry)
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def _set_xattrs(target, member: tarfile.TarInfo, follow: bool) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith(XATTR_PAX_PREFIX):
            continue
        attr = key[len(XATTR_PAX_PREFIX):]
        if attr.startswith(FORBIDDEN_XATTR_PREFIX):
            continue
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        try:
            os.setxattr(target, attr, raw, follow_symlinks=follow)
        except OSError as exc:
            # Filesystems and namespaces differ in which xattrs they allow.
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL):
                raise


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime_ns = int(float(member.mtime) * 1e9)
    return mtime_ns, mtime_ns


def unpack_layer(fileobj: BinaryIO, root: str) -> None:
    """Unpack a (plain, gzip or zstd) layer tarball, a file or a LayerStream (which hashes
    what is read), into the existing, empty directory `root`."""
    stream = fileobj if isinstance(fileobj, LayerStream) else LayerStream(fileobj)
    # Read from the pieces the stream gives: a file's data goes from them to disk as it is,
    # where tarfile's stream mode would copy every block several times.
    reader = ForwardReader(stream.pieces(CHUNK))
    try:
        tar = tarfile.open(fileobj=reader, mode="r:")
    except tarfile.TarError as exc:
        raise InvalidArgument(f"layer is not a tar archive: {exc}") from None
    except EOFError:
        raise InvalidArgument("layer tar archive is truncated") from None
    handle = _Root(root)
    # Directory attributes are applied last: creating entries changes a directory's mtime.
    dirs: list[tuple[tuple[str, ...], tarfile.TarInfo]] = []
    try:
        for member in tar:
            with _naming(member):
                _unpack_member(tar, member, handle, dirs)
        for parts, member in reversed(dirs):
            with _naming(member):
                fd = handle.dir_fd(parts, member.name, create=False)
                os.chown(fd, member.uid, member.gid)
                os.chmod(fd, member.mode & 0o7777)
                _set_xattrs(fd, member, True)
                os.utime(fd, ns=_times(member))
    except tarfile.TarError as exc:
        raise InvalidArgument(f"layer tar archive is corrupt: {exc}") from None
    except EOFError:
        raise InvalidArgument("layer tar archive is truncated") from None
    finally:
        handle.close()
        tar.close()


# Errors of the host rather than of the archive: they are reported as what they are.
_HOST_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EIO: "input/output error", errno.ENOMEM: "out of memory"}


@contextmanager
def _naming(member: tarfile.TarInfo):
    """Turns an OSError on one entry into an error naming that entry: the archive's
    fault (a name too long, too deep, ...) is InvalidArgument, the host's Unavailable."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _HOST_ERRNOS:
            raise Unavailable(f"unpacking layer entry {member.name!r} failed: "
                              f"{_HOST_ERRNOS[exc.errno]}") from None
        raise _bad(member.name, f"cannot be unpacked: {exc.strerror or exc}") from None


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: _Root,
                   dirs: list[tuple[tuple[str, ...], tarfile.TarInfo]]) -> None:
    parts = tuple(clean_member_name(member.name))
    if not parts:
        if member.isdir():
            dirs.append(((), member))
        return
    base = parts[-1]
    parent_fd = root.dir_fd(parts[:-1], member.name)

    if base.startswith(WHITEOUT_PREFIX):
        if base == WHITEOUT_OPAQUE:
            os.setxattr(parent_fd, "trusted.overlay.opaque", b"y")
        elif not base.startswith(WHITEOUT_META_PREFIX):
            hidden = base[len(WHITEOUT_PREFIX):]
            _remove_existing(root, parent_fd, parts[:-1] + (hidden,), keep_dir=False)
            os.mknod(hidden, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent_fd)
        # Other .wh..wh. names are aufs bookkeeping with no meaning here.
        return

    if member.isdir():
        _remove_existing(root, parent_fd, parts, keep_dir=True)
        root.dir_fd(parts, member.name)
        dirs.append((parts, member))
        return

    _remove_existing(root, parent_fd, parts, keep_dir=False)
    if member.isreg():
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                     dir_fd=parent_fd)
        try:
            if member.sparse is None:
                write_member(tar.fileobj, member.offset_data, member.size, fd)
            else:
                src = tar.extractfile(member)
                while chunk := src.read(CHUNK):
                    _write_all(fd, chunk)
            # chown first: it clears setuid/setgid bits that chmod then sets.
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            _set_xattrs(fd, member, True)
            os.utime(fd, ns=_times(member))
        finally:
            os.close(fd)
    elif member.issym():
        os.symlink(member.linkname, base, dir_fd=parent_fd)
        os.chown(base, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        _set_xattrs_at(parent_fd, base, member)
        os.utime(base, ns=_times(member), dir_fd=parent_fd, follow_symlinks=False)
    elif member.ischr() or member.isblk():
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(base, kind | (member.mode & 0o7777),
                 os.makedev(member.devmajor, member.devminor), dir_fd=parent_fd)
        os.chown(base, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        os.utime(base, ns=_times(member), dir_fd=parent_fd, follow_symlinks=False)
    elif member.islnk():
        # An absolute target names a member of this layer, as docker resolves it.
        target = tuple(clean_member_name(member.linkname))
        if not target:
            raise _bad(member.name, "is a hardlink to the layer root")
        target_parent = root.dir_fd(target[:-1], member.name, create=False)
        try:
            st = os.lstat(target[-1], dir_fd=target_parent)
        except FileNotFoundError:
            raise _bad(member.name, f"is a hardlink to {member.linkname!r}, "
                                    "which is not in the layer") from None
        if stat.S_ISDIR(st.st_mode):
            raise _bad(member.name, f"is a hardlink to directory {member.linkname!r}")
        os.link(target[-1], base, src_dir_fd=target_parent, dst_dir_fd=parent_fd,
                follow_symlinks=False)
    elif member.isfifo():
        os.mkfifo(base, member.mode & 0o7777, dir_fd=parent_fd)
        os.chown(base, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
        os.utime(base, ns=_times(member), dir_fd=parent_fd, follow_symlinks=False)
    else:
        raise _bad(member.name, f"has an unsupported tar type {member.type!r}")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _set_xattrs_at(parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
    if not any(k.startswith(XATTR_PAX_PREFIX) for k in member.pax_headers):
        return
    # Linux has no *at() xattr calls: go through /proc for the parent directory.
    _set_xattrs(f"/proc/self/fd/{parent_fd}/{name}", member, False)
