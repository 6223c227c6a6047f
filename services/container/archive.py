"""Files in and out of a container as tar archives (cp, export), without leaving its root.

Every path is resolved with openat2(RESOLVE_IN_ROOT) against a descriptor of the
container's root: the kernel treats that directory as "/" while it walks, so
`..` and absolute symlinks (`/etc/x -> /host/secret`) stay inside the container.
Below the resolved path everything is opened relative to its parent's descriptor
with O_NOFOLLOW, so a symlink is archived as a symlink and never followed, and a
tar member can never be written through one.

The root is /proc/<pid>/root while the container runs (it sees the container's
own mounts: volumes, tmpfs) and the bundle's rootfs otherwise.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import os
import stat
import tarfile
import tempfile

from berth_docker import tarstream
from berth_docker.tarstream import ForwardReader
from services.common import errors

_libc = ctypes.CDLL(None, use_errno=True)
SYS_OPENAT2 = 437  # x86_64 and aarch64
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
O_PATH = 0o10000000
CHUNK = 1 << 20


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """An fd for `path` resolved as if root_fd were "/" (raises OSError)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(SYS_OPENAT2, root_fd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _clean(path: str) -> str:
    if not path.startswith("/"):
        raise errors.InvalidArgument(f"path must be absolute: {path}")
    return path


# -- out ---------------------------------------------------------------------------------

def archive_path(root: str, path: str, out, root_name: str = "") -> None:
    """Writes a tar of `path` (named by its last component) to the file `out`. The root
    itself is archived as its contents, or as the directory `root_name` when given (a
    volume's directory standing for its mount point in the container)."""
    _clean(path)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        parent, _, name = path.rstrip("/").rpartition("/")
        try:
            parent_fd = open_in_root(root_fd, parent or "/", os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise _not_found(path, exc) from None
        try:
            with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
                if not name and root_name:
                    _add(tar, root_fd, ".", root_name)
                elif not name:  # the root itself
                    _add_dir_contents(tar, parent_fd, ".")
                else:
                    try:
                        os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                    except OSError as exc:
                        raise _not_found(path, exc) from None
                    _add(tar, parent_fd, name, name)
        finally:
            os.close(parent_fd)
    finally:
        os.close(root_fd)


def export_root(root: str, out) -> None:
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
            _add_dir_contents(tar, root_fd, "")
    finally:
        os.close(root_fd)


def _not_found(path: str, exc: OSError) -> errors.BerthError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return errors.NotFound(f"Could not find the file {path} in container")
    if exc.errno == errno.EXDEV:
        return errors.InvalidArgument(f"{path} leads outside the container")
    return errors.InvalidArgument(f"{path}: {exc.strerror}")


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    return info


def _add(tar: tarfile.TarFile, dir_fd: int, entry: str, arcname: str) -> None:
    st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
    info = _tarinfo(arcname, st)
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry, dir_fd=dir_fd)
        tar.addfile(info)
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            _add_dir_contents(tar, fd, arcname)
        finally:
            os.close(fd)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            info.size = os.fstat(f.fileno()).st_size
            tar.addfile(info, f)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(info)
    # Sockets have no tar form: skipped, as tar does.


def _add_dir_contents(tar: tarfile.TarFile, dir_fd: int, prefix: str) -> None:
    for entry in sorted(os.listdir(dir_fd)):
        _add(tar, dir_fd, entry, f"{prefix}/{entry}" if prefix else entry)


# -- in ----------------------------------------------------------------------------------

def extract(root: str, path: str, src) -> None:
    """Extracts the tar in file `src` at `path` in the container, as `docker cp` does:

    into `path` when it is a directory; otherwise the archive's top entry becomes
    `path` (whose parent must exist). Existing symlinks are replaced, never followed.
    """
    _clean(path)
    if not isinstance(src, ForwardReader):
        src = ForwardReader(iter(functools.partial(src.read, CHUNK), b""))
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rename_to = None
        try:
            dest_fd = open_in_root(root_fd, path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise _not_found(path, exc) from None
            if path.endswith("/"):
                # A trailing slash names a directory: it must be one, not a name to create.
                raise errors.NotFound(f"no such directory: {path} in container") from None
            parent, _, rename_to = path.rstrip("/").rpartition("/")
            try:
                dest_fd = open_in_root(root_fd, parent or "/", os.O_RDONLY | os.O_DIRECTORY)
            except OSError as exc2:
                raise _not_found(parent or "/", exc2) from None
        try:
            with tarfile.open(fileobj=src, mode="r:") as tar:
                top = None
                for member in tar:
                    parts = [p for p in member.name.split("/") if p not in ("", ".")]
                    if not parts:
                        continue
                    if ".." in parts:
                        raise errors.InvalidArgument(f"archive member {member.name!r} leads outside")
                    if rename_to is not None:
                        if top is None:
                            top = parts[0]
                        if parts[0] == top:
                            parts[0] = rename_to
                    _extract_member(tar, member, dest_fd, parts)
        except (tarfile.TarError, EOFError) as exc:
            raise errors.InvalidArgument(f"the archive is not a valid tar: {exc}") from None
        finally:
            os.close(dest_fd)
    finally:
        os.close(root_fd)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest_fd: int, parts: list[str]) -> None:
    fd = os.dup(dest_fd)
    try:
        for part in parts[:-1]:
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                # ELOOP: a symlink where a directory should be; following it could leave the root.
                raise errors.InvalidArgument(
                    f"cannot extract {member.name}: {'/'.join(parts)} crosses a symlink") from exc
            os.close(fd)
            fd = nfd
        name = parts[-1]
        try:
            existing = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if member.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=fd)
                existing = None
            if existing is None:
                os.mkdir(name, member.mode & 0o7777, dir_fd=fd)
            else:
                os.chmod(name, member.mode & 0o7777, dir_fd=fd, follow_symlinks=False)
        else:
            if existing is not None:
                if stat.S_ISDIR(existing.st_mode):
                    raise errors.InvalidArgument(
                        f"cannot overwrite directory {'/'.join(parts)} with a non-directory")
                os.unlink(name, dir_fd=fd)
            if member.issym():
                os.symlink(member.linkname, name, dir_fd=fd)
            elif member.isfile():
                out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                              member.mode & 0o7777, dir_fd=fd)
                try:
                    if member.sparse is None:
                        # Straight from the pieces the archive arrived in to the file.
                        tarstream.write_member(tar.fileobj, member.offset_data, member.size, out)
                    else:
                        data = tar.extractfile(member)
                        while chunk := data.read(CHUNK):
                            os.write(out, chunk)
                    os.fchmod(out, member.mode & 0o7777)
                finally:
                    os.close(out)
            elif member.islnk():
                return  # hard links are not recreated (their target may lie anywhere)
            elif member.isfifo():
                os.mkfifo(name, member.mode & 0o7777, dir_fd=fd)
            else:
                return
        try:
            os.chown(name, member.uid, member.gid, dir_fd=fd, follow_symlinks=False)
        except OSError:
            pass
    finally:
        os.close(fd)


class ChunkWriter:
    """A file an archiving thread writes while the event loop sends what it wrote, so a
    `cp` out of a container streams as the tar is made rather than after it was spooled.

    Whole chunks of `size` travel through an asyncio queue of QUEUED: the thread waits
    when the reader is slower. `next()` gives the chunks, then None after `finish()`."""

    QUEUED = 8

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int):
        self._loop = loop
        self._size = size
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=self.QUEUED)
        self._buf = bytearray()
        self._gone = False
        self._offset = 0

    def tell(self) -> int:
        return self._offset

    def write(self, b) -> int:
        if self._gone:
            raise BrokenPipeError("the reader went away")
        n = len(b)
        self._offset += n
        if n >= self._size and isinstance(b, bytes):
            # A file's data as tarfile read it (a new object each time): sent as it is,
            # after the headers gathered before it, not copied into the buffer.
            if self._buf:
                self._send(bytes(self._buf))
                self._buf.clear()
            self._send(b)
            return n
        self._buf += b
        if len(self._buf) >= self._size:
            self._send(bytes(self._buf))
            self._buf.clear()
        return n

    def finish(self) -> None:
        """From the thread, at its end (after an error too): the rest, then the end mark."""
        if self._buf and not self._gone:
            self._send(bytes(self._buf))
        self._send(None)

    def _send(self, item: bytes | None) -> None:
        if not self._gone:
            asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop).result()

    async def next(self) -> bytes | None:
        return await self._queue.get()

    def abandon(self) -> None:
        """The reader stops: the thread's next write fails, a put it waits on completes."""
        self._gone = True
        while not self._queue.empty():
            self._queue.get_nowait()


def spooled() -> tempfile.SpooledTemporaryFile:
    """A buffer for an archive: memory for small ones, a temporary file past 8 MiB."""
    return tempfile.SpooledTemporaryFile(max_size=8 << 20)
