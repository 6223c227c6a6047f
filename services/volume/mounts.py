"""mount(2)/umount2(2) for device-backed local volumes (tmpfs, bind devices).

Options are spelled as mount(8) takes them ("ro,size=64m"): flags become
mount flags, the rest the filesystem's data string.
"""

from __future__ import annotations

import ctypes
import os
import re

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC = 4096, 16384
MNT_DETACH = 2
_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
          "bind": MS_BIND, "rbind": MS_BIND | MS_REC}
_IGNORED = {"rw", "defaults", "suid", "dev", "exec"}
_OCTAL = re.compile(rb"\\([0-7]{3})")


def mount(source: str, target: str, fstype: str, options: str) -> None:
    flags, data = 0, []
    for opt in filter(None, options.split(",")):
        if opt in _FLAGS:
            flags |= _FLAGS[opt]
        elif opt not in _IGNORED:
            data.append(opt)
    if flags & MS_BIND:
        fstype, data = "", []
    _call(source, target, fstype, flags, ",".join(data))
    if flags & MS_BIND and flags & MS_RDONLY:
        # A bind mount ignores MS_RDONLY until it is remounted.
        try:
            _call("", target, "", flags | MS_REMOUNT, "")
        except OSError:
            unmount(target)
            raise


def _call(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    if _libc.mount(source.encode() or None, target.encode(), fstype.encode() or None, flags,
                   data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)} (mounting {source} on {target})")


def is_mounted(target: str) -> bool:
    """Whether something is mounted on `target`. os.path.ismount misses bind mounts
    from the same filesystem (same st_dev), so this asks mountinfo."""
    want = os.fsencode(os.path.realpath(target))
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = line.split(b" ", 5)[4]
            # mountinfo escapes space, tab, newline and backslash as octal.
            if _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), point) == want:
                return True
    return False


def unmount(target: str) -> None:
    """Unmount whatever is stacked on `target`; lazily when something still holds it."""
    for _ in range(16):
        if not is_mounted(target):
            return
        if _libc.umount2(target.encode(), 0) != 0:
            if ctypes.get_errno() != 16 or _libc.umount2(target.encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"{os.strerror(err)} (unmounting {target})")
