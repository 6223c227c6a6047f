"""Named network namespaces kept alive by bind mounts, as `ip netns` keeps them.

A namespace lives as long as something holds it: a process inside it or a
bind mount of its nsfs inode. Berth holds each container's namespace with a
mount at <run_root>/netns/<container id>, so it outlives the network service
(a restart or SIGKILL of the service does not disturb containers) and the
container service can join it by path before the container's first process
runs. The directory is made a shared mount, as iproute2 does, so unmounting
a namespace here also releases the copies that containers' mount namespaces
took of it; otherwise a removed namespace would stay pinned.
"""

from __future__ import annotations

import ctypes
import os
import threading

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class Namespaces:
    """Creates, lists and removes the namespaces under one directory."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def create(self, name: str) -> str:
        """Make a namespace with loopback up and pin it at path(name)."""
        path = self.path(name)
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

    def names(self) -> list[str]:
        return sorted(os.listdir(self.directory))

    def is_live(self, name: str) -> bool:
        """Whether path(name) is a mounted namespace (not just a leftover empty file)."""
        path = self.path(name)
        try:
            return os.stat(path).st_dev != os.stat(self.directory).st_dev
        except FileNotFoundError:
            return False


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
