"""Named network namespaces kept alive by bind mounts, as `ip netns` keeps them.

A namespace lives as long as something holds it: a process inside it or a
bind mount of its nsfs inode. Berth holds each container's namespace with a
mount at <run_root>/netns/<container id>, so it outlives the network service
(a restart or SIGKILL of the service does not disturb containers) and the
container service can join it by path before the container's first process
runs. The directory is made a shared mount, as iproute2 does, so unmounting
a namespace here also releases the copies that containers' mount namespaces
took of it; otherwise a removed namespace would stay pinned.

A few namespaces are made ahead (loopback up, held by an open descriptor only), so
that an attach only pins one at its path: making one is ~5 ms of a run's critical
path, pinning a bind mount. The spares are the service's alone: nothing names them,
and they vanish with the process when it exits or is killed.
"""

from __future__ import annotations

import ctypes
import os
import threading

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 4096, 16384, 1 << 20
# Namespaces kept ready: enough for a few runs at once, refilled as they are taken.
SPARES = 3
_libc = ctypes.CDLL(None, use_errno=True)


class Namespaces:
    """Creates, lists and removes the namespaces under one directory."""

    def __init__(self, directory: str, spares: int = SPARES):
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self._want = spares
        self._spares: list[int] = []   # descriptors of ready namespaces
        self._lock = threading.Lock()
        self._refill = threading.Event()
        self._filler: threading.Thread | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def create(self, name: str) -> str:
        """Make a namespace with loopback up and pin it at path(name)."""
        path = self.path(name)
        if self._want:
            with self._lock:
                fd = self._spares.pop() if self._spares else -1
                self._start_filler()
            self._refill.set()
            if fd >= 0:
                try:
                    _pin(fd, path)
                    return path
                except OSError:
                    self._remove_path(path)   # then made the usual way
                finally:
                    os.close(fd)
        error: list[BaseException] = []
        # unshare(CLONE_NEWNET) moves only the calling thread, so a throwaway
        # thread does it: the service's own threads stay in the host namespace
        # and nothing forks a process that holds gRPC's threads and locks.
        worker = threading.Thread(target=_create_in_thread, args=(path, error),
                                  name="netns-create", daemon=True)
        worker.start()
        worker.join()
        if error:
            self._remove_path(path)
            raise error[0]
        return path

    def remove(self, name: str) -> None:
        self._remove_path(self.path(name))

    def _remove_path(self, path: str) -> None:
        # MNT_DETACH: a process still entering the namespace must not make this fail.
        _libc.umount2(path.encode(), 2)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _start_filler(self) -> None:
        # Started on first use, not at construction: a service that never attaches (and
        # the fork that starts it) has no extra thread.
        if self._filler is None:
            self._filler = threading.Thread(target=self._fill, name="netns-spares", daemon=True)
            self._filler.start()

    def _fill(self) -> None:
        """Keeps SPARES namespaces ready. This thread moves into each one it makes (unshare
        moves the calling thread), so it is one of its own, never the service's."""
        while True:
            self._refill.wait()
            self._refill.clear()
            while True:
                with self._lock:
                    if len(self._spares) >= self._want:
                        break
                try:
                    fd = _new_in_this_thread()
                except OSError:
                    break   # create() makes them the usual way meanwhile
                with self._lock:
                    self._spares.append(fd)

    def names(self) -> list[str]:
        return sorted(os.listdir(self.directory))

    def is_live(self, name: str) -> bool:
        """Whether path(name) is a mounted namespace (not just a leftover empty file)."""
        path = self.path(name)
        try:
            return os.stat(path).st_dev != os.stat(self.directory).st_dev
        except FileNotFoundError:
            return False


def _new_in_this_thread() -> int:
    """A new namespace with loopback up, entered by this thread: its descriptor."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot create a network namespace: {os.strerror(errno)}")
    fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as ipr:
            (lo,) = ipr.link_lookup(ifname="lo")
            ipr.link("set", index=lo, state="up")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pin(fd: int, path: str) -> None:
    """Bind-mounts the namespace of `fd` at `path`, as pyroute2's attach does for a pid."""
    directory = os.path.dirname(path).encode()
    # The directory a shared mount (see the module's docstring), made so as iproute2 does.
    if _libc.mount(b"", directory, b"none", MS_SHARED | MS_REC, None) != 0:
        if _libc.mount(directory, directory, b"none", MS_BIND | MS_REC, None) != 0 or \
                _libc.mount(b"", directory, b"none", MS_SHARED | MS_REC, None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot share {directory.decode()}: {os.strerror(errno)}")
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    if _libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), b"none", MS_BIND, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot pin a network namespace at {path}: {os.strerror(errno)}")


def _create_in_thread(path: str, error: list[BaseException]) -> None:
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot create a network namespace: {os.strerror(errno)}")
        # "thread-self": /proc/self would name the main thread's namespace.
        pyroute2_netns.attach(path, "thread-self")
        with IPRoute() as ipr:
            (lo,) = ipr.link_lookup(ifname="lo")
            ipr.link("set", index=lo, state="up")
    except BaseException as exc:  # handed to the caller's thread
        error.append(exc)
