"""Kernel- and runtime-facing pieces: rootfs mounts, conmon, runc.

Every container has a bundle directory, laid out as conmon and runc expect:

    bundles/<id>/
      config.json    OCI spec (written by spec.oci_config)
      rootfs/        the rootfs mounts are stacked here by berth
      pidfile        the container's pid (written by runc)
      conmon.pid     the monitor's pid (written by conmon)
      ctr.log        output in k8s-file format, rotated into ctr.log.<n> (logfiles.py)
      ctl            conmon's control fifo (resize, reopen the log)
      <id>           exit file: the exit code, written by conmon (--exit-dir)
      persist/oom    present when the kernel OOM-killed in the container (--persist-dir)

conmon double-forks into its own session, so containers outlive berth.

A removed container's bundle is renamed into trash/ beside bundles/ (at once, and
its id is free again) and deleted from there after the reply; what a crash leaves
in trash/ is deleted at the next start.

A bundle outlives its task: to run a stopped container again, `runc delete`
drops the old runtime state and cgroup, `clear_run` the old run's pid and exit
files, and conmon runs again on the same bundle and rootfs. conmon opens the
k8s-file log for append (checked with conmon 2.1.6), so every run's output
stays in the log; a log past max-size is rotated before the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import select
import shutil
import struct
import time

import structlog

from berth_errors import COMMAND_FAILED, COMMAND_NOT_EXECUTABLE, COMMAND_NOT_FOUND
from services.common import errors
from services.common.config import Config
from services.container.model import Mount

log = structlog.get_logger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MS_BIND, MS_REC = 4096, 16384
MNT_DETACH = 2
_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
          "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME,
          "bind": MS_BIND, "rbind": MS_BIND | MS_REC}
_IGNORED = {"rw", "defaults", "suid", "dev", "exec"}


class Bundle:
    """Paths of one container's bundle."""

    def __init__(self, root: str, id: str):
        self.id = id
        self.dir = os.path.join(root, id)
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.config = os.path.join(self.dir, "config.json")
        self.pidfile = os.path.join(self.dir, "pidfile")
        self.conmon_pidfile = os.path.join(self.dir, "conmon.pid")
        self.log = os.path.join(self.dir, "ctr.log")
        self.exit_file = os.path.join(self.dir, id)
        self.persist = os.path.join(self.dir, "persist")
        self.oom_file = os.path.join(self.persist, "oom")


def mount_rootfs(mounts: tuple[Mount, ...], target: str) -> None:
    """Stacks the rootfs mounts on `target`; on failure nothing stays mounted."""
    done = 0
    try:
        for m in mounts:
            flags, data = 0, []
            for opt in m.options:
                if opt in _FLAGS:
                    flags |= _FLAGS[opt]
                elif opt not in _IGNORED:
                    data.append(opt)
            if m.type == "bind":
                flags |= MS_BIND
            try:
                _mount(m.source, target, m.type, flags, ",".join(data))
            except OSError as exc:
                if exc.errno != errno.EINVAL or "volatile" not in data:
                    raise
                # A kernel before 5.10 has no volatile overlay: the same mount with syncs.
                _mount(m.source, target, m.type, flags, ",".join(d for d in data if d != "volatile"))
            done += 1
            if flags & MS_BIND and flags & MS_RDONLY:
                # A bind mount ignores MS_RDONLY until it is remounted.
                _mount("", target, "", flags | 32, "")  # MS_REMOUNT
    except OSError as exc:
        for _ in range(done):
            unmount(target)
        raise errors.InvalidArgument(f"mounting the root filesystem failed: {exc}") from None


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    if _libc.mount(source.encode() or None, target.encode(), fstype.encode() or None, flags,
                   data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)} ({fstype or 'remount'} on {target})")


def unmount(target: str) -> bool:
    """Unmounts the top mount on `target`; False when nothing was mounted there."""
    if _libc.umount2(target.encode(), 0) == 0:
        return True
    err = ctypes.get_errno()
    if err == 16:  # EBUSY: something still holds it; detach so the bundle can go.
        return _libc.umount2(target.encode(), MNT_DETACH) == 0
    return False


def unmount_all(target: str) -> None:
    for _ in range(64):
        if not os.path.ismount(target) or not unmount(target):
            return


def mounts_under(path: str) -> list[str]:
    """Mount points at or under `path`, from the mount table (os.path.ismount cannot see
    a bind mount of a directory of the same filesystem)."""
    prefix = path.rstrip("/") + "/"
    with open("/proc/self/mountinfo", "rb") as f:
        table = f.read()
    # The table holds every mount of the host's containers: looked through for the path
    # (as the kernel escapes it) at once, and split into lines only when it is there.
    if _mountinfo_escape(path.rstrip("/") or "/").encode() not in table:
        return []
    out = []
    for line in table.decode(errors="surrogateescape").splitlines():
        point = line.split()[4].encode(errors="surrogateescape").decode("unicode_escape")
        if point == path or point.startswith(prefix):
            out.append(point)
    return out


def _mountinfo_escape(path: str) -> str:
    """`path` as /proc/self/mountinfo writes it (space, tab, newline and backslash in octal)."""
    return "".join(f"\\{ord(ch):03o}" if ch in " \t\n\\" else ch for ch in path)


def remove_bundle(bundle: Bundle, trash: str = "") -> str:
    """Unmounts what is mounted in the bundle and removes it; with `trash`, renames it
    into that directory instead and returns the path to delete (see the module's
    docstring), "" when there was no bundle."""
    unmount_all(bundle.rootfs)
    # A shareable IPC's /dev/shm (security.prepare_shm).
    unmount_all(os.path.join(bundle.dir, "shm"))
    # The idmapped volumes under idmap/ (userns.mapped_mounts), deepest first.
    for point in sorted(mounts_under(bundle.dir), key=len, reverse=True):
        while _libc.umount2(point.encode(), MNT_DETACH) == 0:
            pass
    left = mounts_under(bundle.dir)
    if left:
        # Never rmtree through a mount: that would delete the image's or a volume's files.
        raise errors.Internal(f"cannot unmount {left[0]}")
    if not trash:
        shutil.rmtree(bundle.dir, ignore_errors=True)
        return ""
    os.makedirs(trash, mode=0o700, exist_ok=True)
    dest = os.path.join(trash, f"{bundle.id}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        os.rename(bundle.dir, dest)
    except FileNotFoundError:
        return ""
    return dest


def clear_run(bundle: Bundle) -> None:
    """Removes what the last run left (pid files, exit file, OOM markers), so that
    none of it can be mistaken for the next run's."""
    for path in (bundle.exit_file, bundle.pidfile, bundle.conmon_pidfile, bundle.oom_file,
                 os.path.join(bundle.dir, "oom")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


_RUNC_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def runtime_message(text: str) -> str:
    """runc's own words from its logrus output (`time=... level=error msg="..."`)."""
    msgs = [bytes(m, "utf-8").decode("unicode_escape") for m in _RUNC_MSG.findall(text)]
    return "; ".join(msgs) if msgs else text.strip()


def process_failure(message: str) -> errors.InvalidArgument:
    """runc could not start a container's or an exec's process. runc says why only in words,
    so they are read here, once, and the cause travels as data (berth_errors.CAUSE): docker's
    CLI exits 127 for a command that is not there and 126 for one that cannot be run."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        cause = COMMAND_NOT_FOUND
    elif "permission denied" in lowered:
        cause = COMMAND_NOT_EXECUTABLE
    else:
        cause = COMMAND_FAILED
    return errors.InvalidArgument(message, cause=cause)


class Runtime:
    """Runs conmon and runc for containers whose bundles live under `bundles`."""

    def __init__(self, config: Config, bundles: str):
        self.config = config
        self.bundles = bundles
        self.trash = os.path.join(os.path.dirname(bundles), "trash")
        # conmon execs the runtime by path, without a PATH search.
        self.runc_path = shutil.which(config.runtime) or config.runtime
        # Looked up once, not by a PATH search in every container's exec.
        self.conmon_path = shutil.which(config.conmon) or config.conmon
        self.runc_root = os.path.join(config.run_root, "runc")
        self.socket_dir = os.path.join(config.run_root, "conmon")
        os.makedirs(self.socket_dir, mode=0o700, exist_ok=True)

    def bundle(self, id: str) -> Bundle:
        return Bundle(self.bundles, id)

    def _runc(self, *args: str) -> list[str]:
        return [self.runc_path, "--root", self.runc_root, *args]

    async def create(self, bundle: Bundle, stdio: tuple[str, ...] = (),
                     log: bool = True) -> tuple[int, int]:
        """Starts conmon, which runs `runc create`; returns (container pid, conmon pid).

        `stdio` are conmon's terminal and stdin flags (see stdio_flags); without `log`
        (driver none) conmon writes no log file. conmon gets no --log-size-max: at
        that size it would replace the file and lose it (logfiles rotates instead)."""
        os.makedirs(bundle.persist, exist_ok=True)
        if log:
            # There before conmon opens it (for append), so the rotator can watch it.
            os.close(os.open(bundle.log, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            args = [
                self.conmon_path, "--api-version", "1",
                "-c", bundle.id, "-u", bundle.id, "-n", bundle.id,
                "-r", self.runc_path, "-b", bundle.dir, "-p", bundle.pidfile,
                "--conmon-pidfile", bundle.conmon_pidfile,
                "--exit-dir", bundle.dir, "--persist-dir", bundle.persist,
                "--socket-dir-path", self.socket_dir,
                "-l", f"k8s-file:{bundle.log}" if log else "none", "--log-level", "warning",
                "--runtime-arg", "--root", "--runtime-arg", self.runc_root, *stdio,
            ]
            env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                   "_OCI_SYNCPIPE": str(write_end)}
            proc = await asyncio.create_subprocess_exec(
                # conmon writes an "oom" marker into its working directory too.
                *args, env=env, pass_fds=(write_end,), start_new_session=True, cwd=bundle.dir,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            os.close(write_end)
            write_end = -1
            # conmon's first process exits once it has forked the monitor.
            await proc.wait()
            reply = await _read_sync(read_end)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        if reply is None:
            raise errors.Internal("conmon exited without reporting the container's creation")
        pid = reply.get("data", -1)
        if not isinstance(pid, int) or pid <= 0:
            raise process_failure(runtime_message(reply.get("message", "runc create failed")))
        with open(bundle.conmon_pidfile) as f:
            conmon_pid = int(f.read().strip())
        return pid, conmon_pid

    async def start(self, id: str) -> None:
        await self._run("start", id)

    async def pause(self, id: str) -> None:
        await self._run("pause", id)

    async def resume(self, id: str) -> None:
        await self._run("resume", id)

    async def update(self, id: str, *args: str) -> None:
        await self._run("update", *args, id)

    async def delete(self, id: str) -> None:
        """Removes runc's state and the cgroup; a container runc no longer knows is fine."""
        try:
            await self._run("delete", "--force", id)
        except errors.BerthError as exc:
            if "does not exist" not in exc.message:
                raise

    async def state(self, id: str) -> dict | None:
        proc = await asyncio.create_subprocess_exec(
            *self._runc("state", id), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return json.loads(out) if proc.returncode == 0 else None

    async def _run(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._runc(*args), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise errors.FailedPrecondition(runtime_message(err.decode(errors="replace"))
                                            or f"runc {args[0]} failed")

    def remove_socket_link(self, id: str) -> None:
        try:
            os.unlink(os.path.join(self.socket_dir, id))
        except FileNotFoundError:
            pass

    def oom_killed(self, bundle: Bundle) -> bool:
        """conmon's OOM record, else the memory cgroup's kill counter (while the cgroup exists)."""
        if os.path.exists(bundle.oom_file):
            return True
        try:
            with open(f"/sys/fs/cgroup/memory/berth/{bundle.id}/memory.oom_control") as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
        except (FileNotFoundError, ValueError):
            pass
        return False


async def _read_sync(fd: int) -> dict | None:
    """The first JSON message conmon writes on the sync pipe (None on EOF)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    buf = b""
    while b"\n" not in buf:
        ready = loop.create_future()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\n", 1)[0].strip()
    return json.loads(line) if line else None


def frozen(id: str) -> bool:
    """Whether the container's freezer cgroup holds it frozen (paused)."""
    try:
        with open(f"/sys/fs/cgroup/freezer/berth/{id}/freezer.state") as f:
            return f.read().strip() != "THAWED"
    except OSError:
        return False


def stdio_flags(tty: bool, open_stdin: bool, stdin_once: bool) -> tuple[str, ...]:
    """conmon's flags: -t gives a pseudo-terminal (conmon owns the console socket),
    -i a stdin pipe fed from the attach socket. Without --leave-stdin-open conmon
    closes that pipe when an attached client leaves, which is how EOF arrives."""
    flags = []
    if tty:
        flags.append("-t")
    if open_stdin:
        flags.append("-i")
        if not stdin_once:
            flags.append("--leave-stdin-open")
    return tuple(flags)


def process_alive(pid: int, *needles: str) -> bool:
    """Whether `pid` runs and its command line holds every needle (guards against pid reuse)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return all(n in cmdline for n in needles)


# PIDFD_GET_INFO (_IOWR(0xFF, 11, struct pidfd_info), its first 64-byte version) and
# its PIDFD_INFO_EXIT mask bit: the wait status of a process that has been reaped,
# kept for whoever holds a pidfd on it (Linux 6.15).
_PIDFD_GET_INFO = 0xC040FF0B
_PIDFD_INFO_EXIT = 1 << 3
_PIDFD_INFO_EXIT_OFFSET = 60


def pidfd_alive(fd: int) -> bool:
    """Whether the process of pidfd `fd` still runs (a pidfd polls readable once it exited)."""
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return not poller.poll(0)


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Makes this process the reaper of its orphaned descendants: conmon, once its first
    process exits, and a container's process whose conmon died. Their exits are then
    this service's to collect (reap) with their real status, instead of init's."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        log.warning("subreaper_unavailable", error=os.strerror(err))


def reap(fd: int) -> int | None:
    """Collects the exited child of pidfd `fd`; its exit code as docker gives it (128 + n
    for signal n), or None when it is not this process's child or has not exited."""
    if fd < 0:
        return None
    try:
        result = os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
    except (ChildProcessError, OSError):
        return None
    if result is None:
        return None
    if result.si_code == os.CLD_EXITED:
        return result.si_status
    return 128 + result.si_status


def reap_monitor(pid: int) -> None:
    """Collects conmon `pid` if it is this service's exited child that no watch collected
    (a create that failed, a monitor teardown killed). Only a conmon monitor: the other
    children belong to asyncio, which waits for each by its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            head, _, rest = f.read().rpartition(")")
    except OSError:
        return
    state, ppid = rest.split()[:2]
    if head.partition("(")[2] == "conmon" and state == "Z" and ppid == str(os.getpid()):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def pidfd_exit_status(fd: int) -> int | None:
    """The wait status of the exited, reaped process of pidfd `fd`; None while it is not
    reaped yet, or where the kernel does not keep it."""
    buf = bytearray(struct.pack("Q", _PIDFD_INFO_EXIT) + bytes(56))
    try:
        fcntl.ioctl(fd, _PIDFD_GET_INFO, buf)
    except OSError:
        return None
    mask, = struct.unpack_from("Q", buf, 0)
    if not mask & _PIDFD_INFO_EXIT:
        return None
    return struct.unpack_from("i", buf, _PIDFD_INFO_EXIT_OFFSET)[0]


def pidfd_exit_code(fd: int) -> int | None:
    """`pidfd_exit_status` as docker reports an exit: the code, or 128 + the signal."""
    status = pidfd_exit_status(fd)
    if status is None:
        return None
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def in_cgroup(pid: int, id: str) -> bool:
    """Whether `pid` is a process of container `id` (its cgroup is /berth/<id>): a pid
    read from a pidfile may have been reused."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any(line.rstrip("\n").endswith(f"/berth/{id}") for line in f)
    except OSError:
        return False


def read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None
