"""Execs: further processes in a running container, each under a conmon of its own.

conmon runs `runc exec --detach` for us and stays as the process's monitor, so
the exec's exit code is written to a file even if berth restarts meanwhile.
Everything about an exec lives in a directory inside its container's bundle
(and goes with it):

    bundles/<cid>/exec/<exec id>/
      exec.json     what was asked for (args, tty, stdin, user, cwd)
      process.json  the OCI process runc runs
      conmon.pid    its monitor; pidfile: the process
      <cid>         exit file, written by conmon (it is named by -c)
      exec.log      its output (k8s-file), for detached execs only
      attach, ctl   conmon's attach socket and control fifo

An attached exec uses conmon's --exec-attach handshake so no output is lost:
conmon first waits for a byte on _OCI_STARTPIPE (before it forks), then sets up
its attach socket and says so on _OCI_ATTACHPIPE, then waits for a second byte
on the start pipe; we connect to the socket in between. The pid arrives on the
sync pipe as it does for create.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import structlog

from services.common import errors
from services.container import runtime as rt
from services.container import security
from services.container import userns
from services.container import spec as spec_mod
from services.container.model import Event, EventType, Process, Status
from services.container.stdio import Stdio, pump_requests

log = structlog.get_logger(__name__)

# A detached exec's output is kept for inspection only (docker keeps none of it):
# conmon may truncate it at this size.
EXEC_LOG_MAX = 10 * 1024 * 1024

EXEC_ID_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ExecConfig:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = ""
    user: str = ""
    tty: bool = False
    stdin: bool = False
    height: int = 0
    width: int = 0


@dataclass(frozen=True)
class ExecInfo:
    id: str
    container_id: str
    config: ExecConfig
    running: bool
    pid: int = 0
    exited: bool = False
    exit_code: int = 0


@dataclass
class _Live:
    conmon_fd: int
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int | None = None


class Execs:
    """Starts execs and watches their monitors; the files on disk are the truth."""

    def __init__(self, service):
        self._service = service
        self._runtime: rt.Runtime = service.runtime
        self._live: dict[str, _Live] = {}

    def _dir(self, cid: str, exec_id: str) -> str:
        return os.path.join(self._runtime.bundle(cid).dir, "exec", exec_id)

    # -- start ----------------------------------------------------------------------

    async def run(self, cid_ref: str, exec_id: str, cfg: ExecConfig, detach: bool,
                  requests) -> AsyncIterator[tuple[str, object]]:
        """Yields ("started", pid), then ("output", (stream, data))..., then ("exit", code)."""
        c = self._service.get(cid_ref)
        if c.status is not Status.RUNNING:
            raise errors.FailedPrecondition(f"container {c.id} is not running")
        if not EXEC_ID_RE.match(exec_id):
            raise errors.InvalidArgument(f'invalid exec id "{exec_id}": must be 64 lowercase hex characters')
        if not cfg.args:
            raise errors.InvalidArgument("No exec command specified")
        userns.check_exec(c.record.spec)
        d = self._dir(c.id, exec_id)
        try:
            os.makedirs(d, mode=0o700)
        except FileExistsError:
            raise errors.AlreadyExists(f"exec {exec_id} already exists") from None
        conn = None
        try:
            self._write_specs(c, d, cfg)
            pid, conn = await self._spawn(c.id, exec_id, d, cfg, attach=not detach)
        except BaseException:
            if conn is not None:
                conn.close()
            shutil.rmtree(d, ignore_errors=True)
            self._runtime.remove_socket_link(exec_id)
            raise
        log.info("exec_started", container_id=c.id, exec_id=exec_id, pid=pid)
        # Committed before the exit is watched for, so EXEC_START precedes EXEC_EXIT.
        self._service.broker.publish(self._service.store.exec_started(
            Event(EventType.EXEC_START, c.id, time.time(), exec_id=exec_id)))
        live = self._watch(c.id, exec_id, d)
        yield "started", pid
        if conn is None:
            return
        pump = asyncio.ensure_future(pump_requests(requests, conn, cfg.stdin))
        try:
            while (piece := await conn.read()) is not None:
                yield "output", piece
            await live.exited.wait()
            yield "exit", live.exit_code
        finally:
            pump.cancel()
            conn.close()

    def _write_specs(self, c, d: str, cfg: ExecConfig) -> None:
        b = self._runtime.bundle(c.id)
        with open(b.config) as f:
            process = json.load(f)["process"]
        if cfg.user:
            spec = replace(c.record.spec, process=Process(args=cfg.args, user=cfg.user))
            user = spec_mod.resolve_user(b.rootfs, spec)
            # The container's --group-add holds for every user an exec runs as (docker's).
            gids = list(dict.fromkeys([*user.additional_gids,
                                       *security.group_ids(b.rootfs, c.record.spec.security.group_add)]))
            process["user"] = {"uid": user.uid, "gid": user.gid, **({"additionalGids": gids} if gids else {})}
        env = [e for e in process.get("env", [])]
        if cfg.env:
            keys = {e.split("=", 1)[0] for e in cfg.env}
            # An exec's "FOO" without "=" unsets FOO, as in the container's own environment.
            env = [e for e in env if e.split("=", 1)[0] not in keys] + [e for e in cfg.env if "=" in e]
        process.update(args=list(cfg.args), env=env, terminal=cfg.tty)
        if cfg.cwd:
            process["cwd"] = cfg.cwd
        if cfg.tty and cfg.height and cfg.width:
            # runc sizes the new terminal before the process starts: `stty size` is right at once.
            process["consoleSize"] = {"height": cfg.height, "width": cfg.width}
        with open(os.path.join(d, "process.json"), "w") as f:
            json.dump(process, f)
        with open(os.path.join(d, "exec.json"), "w") as f:
            json.dump({"container_id": c.id, "args": list(cfg.args), "env": list(cfg.env),
                       "cwd": process.get("cwd", "/"), "user": cfg.user, "tty": cfg.tty,
                       "stdin": cfg.stdin}, f)

    async def _spawn(self, cid: str, exec_id: str, d: str, cfg: ExecConfig,
                     attach: bool) -> tuple[int, Stdio | None]:
        runtime = self._runtime
        args = [
            runtime.conmon_path, "--api-version", "1",
            "-c", cid, "-u", exec_id, "-n", cid, "-r", runtime.runc_path, "-b", d,
            "-p", os.path.join(d, "pidfile"), "--conmon-pidfile", os.path.join(d, "conmon.pid"),
            "--exit-dir", d, "--socket-dir-path", runtime.socket_dir,
            # An attached exec's output goes to its caller only (docker logs none of it): a
            # k8s-file beside it would cost conmon a timestamped record per line.
            *(["-l", "none"] if attach else
              ["-l", f"k8s-file:{os.path.join(d, 'exec.log')}", "--log-size-max", str(EXEC_LOG_MAX)]),
            "--log-level", "warning",
            "--runtime-arg", "--root", "--runtime-arg", runtime.runc_root,
            "--exec", "--exec-process-spec", os.path.join(d, "process.json"),
        ]
        if cfg.tty:
            args.append("-t")
        if cfg.stdin and attach:
            args.append("-i")
            if cfg.tty:
                # As docker: a terminal's stdin is never closed under the process when its
                # client leaves (detach keys, a dropped connection); the process runs on.
                args.append("--leave-stdin-open")
        pipes: list[int] = []

        def pipe() -> tuple[int, int]:
            r, w = os.pipe2(os.O_CLOEXEC)
            pipes.extend((r, w))
            return r, w

        sync_r, sync_w = pipe()
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "_OCI_SYNCPIPE": str(sync_w)}
        passed = [sync_w]
        if attach:
            args.append("--exec-attach")
            attach_r, attach_w = pipe()
            start_r, start_w = pipe()
            env.update(_OCI_ATTACHPIPE=str(attach_w), _OCI_STARTPIPE=str(start_r))
            passed += [attach_w, start_r]
        conn = None
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, env=env, pass_fds=passed, start_new_session=True, cwd=d,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            for fd in passed:
                os.close(fd)
                pipes.remove(fd)
            if attach:
                os.write(start_w, b"0")  # conmon may fork now
            await proc.wait()
            if attach:
                ready = await rt._read_sync(attach_r)
                if ready is None or ready.get("data", -1) < 0:
                    raise errors.Internal("conmon could not set up the exec's attach socket")
                conn = await Stdio.connect(runtime.socket_dir, exec_id, os.path.join(d, "ctl"))
                os.write(start_w, b"0")  # attached: run it
            reply = await rt._read_sync(sync_r)
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        finally:
            for fd in pipes:
                os.close(fd)
        if reply is None:
            if conn is not None:
                conn.close()
            raise errors.Internal("conmon exited without reporting the exec's start")
        pid = reply.get("data", -1)
        if not isinstance(pid, int) or pid <= 0:
            if conn is not None:
                conn.close()
            raise rt.process_failure(
                "OCI runtime exec failed: " + rt.runtime_message(reply.get("message", "runc exec failed")))
        return pid, conn

    # -- watching ---------------------------------------------------------------------

    def _watch(self, cid: str, exec_id: str, d: str) -> _Live:
        conmon_pid = rt.read_int(os.path.join(d, "conmon.pid")) or 0
        try:
            fd = os.pidfd_open(conmon_pid) if conmon_pid else -1
        except ProcessLookupError:
            fd = -1
        live = _Live(conmon_fd=fd)
        self._live[exec_id] = live
        if fd < 0:
            self._on_exit(cid, exec_id, d)
        else:
            asyncio.get_running_loop().add_reader(fd, self._on_exit, cid, exec_id, d)
        return live

    def _on_exit(self, cid: str, exec_id: str, d: str) -> None:
        live = self._live.get(exec_id)
        if live is None or live.exited.is_set():
            return
        if live.conmon_fd >= 0:
            asyncio.get_running_loop().remove_reader(live.conmon_fd)
            rt.reap(live.conmon_fd)  # this service's child, as the container's conmon is
            os.close(live.conmon_fd)
            live.conmon_fd = -1
        code = rt.read_int(os.path.join(d, cid))
        if code is None:
            # The monitor died without a record (killed with its container).
            code = 137 if not os.path.isdir(d) else 255
            with contextlib.suppress(OSError):
                with open(os.path.join(d, cid), "w") as f:
                    f.write(str(code))
        live.exit_code = code
        live.exited.set()
        self._runtime.remove_socket_link(exec_id)
        log.info("exec_exited", container_id=cid, exec_id=exec_id, exit_code=code)
        exited = self._service.store.exec_exited(Event(EventType.EXEC_EXIT, cid, time.time(), code, exec_id))
        if exited is not None:
            self._service.broker.publish(exited)
        # Only the record on disk is needed from now on.
        self._live.pop(exec_id, None)

    def reconcile(self) -> None:
        """After a restart: watch the monitors of execs that still run, and commit the events
        the service was not there to commit (an exit while it was down; a start it died
        before announcing, so that the exit never comes without its start)."""
        store = self._service.store
        for cid, exec_id, d in self._all():
            committed = store.exec_exit_committed(exec_id)
            if rt.read_int(os.path.join(d, cid)) is not None:
                if committed is False:
                    self._live[exec_id] = _Live(conmon_fd=-1)
                    self._on_exit(cid, exec_id, d)
                continue
            if committed is None:
                self._service.broker.publish(store.exec_started(
                    Event(EventType.EXEC_START, cid, time.time(), exec_id=exec_id)))
            conmon_pid = rt.read_int(os.path.join(d, "conmon.pid"))
            if conmon_pid and rt.process_alive(conmon_pid, "conmon", exec_id):
                self._watch(cid, exec_id, d)
            else:
                self._live[exec_id] = _Live(conmon_fd=-1)
                self._on_exit(cid, exec_id, d)

    def close(self) -> None:
        for live in self._live.values():
            if live.conmon_fd >= 0:
                asyncio.get_running_loop().remove_reader(live.conmon_fd)
                os.close(live.conmon_fd)
        self._live.clear()

    # -- reading ------------------------------------------------------------------------

    def _all(self):
        bundles = self._runtime.bundles
        if not os.path.isdir(bundles):
            return
        for cid in os.listdir(bundles):
            root = os.path.join(bundles, cid, "exec")
            if os.path.isdir(root):
                for exec_id in os.listdir(root):
                    yield cid, exec_id, os.path.join(root, exec_id)

    def inspect(self, exec_id: str) -> ExecInfo:
        for cid, eid, d in self._all():
            if eid == exec_id:
                return self._info(cid, eid, d)
        raise errors.NotFound(f"No such exec instance: {exec_id}")

    def list(self, container_ref: str) -> list[ExecInfo]:
        cid = self._service.get(container_ref).id if container_ref else ""
        out = []
        for c, eid, d in self._all():
            if not cid or c == cid:
                with contextlib.suppress(errors.NotFound):
                    out.append(self._info(c, eid, d))
        return out

    def _info(self, cid: str, exec_id: str, d: str) -> ExecInfo:
        try:
            with open(os.path.join(d, "exec.json")) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            raise errors.NotFound(f"No such exec instance: {exec_id}") from None
        cfg = ExecConfig(args=tuple(meta["args"]), env=tuple(meta["env"]), cwd=meta["cwd"],
                         user=meta["user"], tty=meta["tty"], stdin=meta["stdin"])
        code = rt.read_int(os.path.join(d, cid))
        if code is not None:
            return ExecInfo(exec_id, cid, cfg, running=False, exited=True, exit_code=code)
        conmon_pid = rt.read_int(os.path.join(d, "conmon.pid"))
        running = bool(conmon_pid) and rt.process_alive(conmon_pid, "conmon", exec_id)
        return ExecInfo(exec_id, cid, cfg, running=running,
                        pid=(rt.read_int(os.path.join(d, "pidfile")) or 0) if running else 0)
