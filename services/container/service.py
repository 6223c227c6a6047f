"""ContainerService: the rules of the container lifecycle, its exit tracking and events.

A container's row says what to run; whether it runs is derived: conmon alive
means created or running (started_at tells which), an exit recorded from
conmon's exit file means stopped. Exits are noticed without polling: a pidfd on
the conmon process becomes readable when conmon exits, which it does right
after writing the exit file.

A monitor can die before its container (SIGKILL, OOM killer): conmon gone with
no exit file while the container's process lives. The container is then still
running, and is reported so (its monitor lost, in the log); the pidfd on the
container's process, held since create, is watched instead, and signals,
stop and delete act on that process directly. The service is a child
subreaper, so conmon is its child and so is the orphan conmon leaves: its exit
status is collected exactly (waitid on the pidfd). An orphan of a monitor that
died while the service was down is init's: its status is read from the pidfd
(PIDFD_GET_INFO with PIDFD_INFO_EXIT, Linux 6.15+) once init reaped it; where
nothing reaps it, the exit is recorded as 255 with a note that says so.
Without conmon nothing more is written to the log and attach has nothing to
connect to.

The row outlives its task, as in containerd: Start of a stopped container runs
a new task (runc delete of the old state, conmon again on the same bundle and
rootfs, the log appended to) for the same id, name, created time and metadata.
The row's exit is cleared only once the new conmon runs, so a crash of this
service in between leaves the container stopped with its last exit, and
reconcile finds a new conmon that started before the row said so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import structlog

from services.common import errors
from services.container import logfiles
from services.container import logs as logs_mod
from services.container import runtime as rt
from services.container import spec as spec_mod
from services.container import security
from services.container import subpaths
from services.container import userns as userns_mod
from services.container.events import Broker
from services.container.stdio import Stdio
from services.container.model import (Container, Event, EventType, Exit, LogConfig, LogLine, Record,
                                      Spec, Status)
from services.container.store import NameTaken, Store

log = structlog.get_logger(__name__)

ID_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
HEX_RE = re.compile(r"^[0-9a-f]+$")
DEFAULT_STOP_TIMEOUT = 10
# How long Delete waits for conmon to go after the container was killed.
KILL_GRACE = 10.0
# How long an orphan that init reaps is waited for before its exit is recorded as 255.
ORPHAN_REAP_SECONDS = 10.0


def parse_signal(text: str, default: signal.Signals = signal.SIGKILL) -> int:
    """A signal given as "SIGTERM", "term", "15" or "" (the default)."""
    s = text.strip()
    if not s:
        return int(default)
    if s.isdigit():
        n = int(s)
        if 0 < n <= signal.SIGRTMAX:
            return n
        raise errors.InvalidArgument(f"invalid signal: {text}")
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise errors.InvalidArgument(f"invalid signal: {text}") from None


@dataclass
class Task:
    """The live side of a container while its conmon runs."""

    conmon_pid: int
    pid: int
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    exit: Exit | None = None
    # While set, an exit is noticed but not yet committed: create and start commit
    # their own event first, so CREATE < START < EXIT in the log even for a process
    # that exits at once.
    hold_exit: bool = False
    # pidfds: conmon's is watched for exit; the container's is signalled race-free.
    conmon_fd: int = -1
    pid_fd: int = -1
    # Rotates the log past max-size while conmon runs (logfiles.Rotator).
    rotator: asyncio.Task | None = None
    # conmon died while the process lived: the process's pidfd is watched instead,
    # and its exit code is collected from it (None until then, or when unknowable).
    monitor_lost: bool = False
    orphan_code: int | None = None


class ContainerService:
    def __init__(self, store: Store, runtime: rt.Runtime, broker: Broker | None = None):
        self.store = store
        self.runtime = runtime
        self.broker = broker or Broker(store)
        cfg = runtime.config
        self._log_policies: dict[LogConfig, logfiles.LogPolicy] = {}
        # Checked at start-up: a bad daemon default fails the service, not a create.
        self.default_log = logfiles.resolve(
            LogConfig(cfg.log_driver, logfiles.parse_options(cfg.log_opts)), LogConfig("local"))
        self.host = security.host(cfg.default_pids_limit)
        # docker's userns-remap, checked at start-up like the log default; its namespace
        # (for idmapped mounts) made now, before the server's threads run.
        self.remap = userns_mod.daemon_remap(cfg)
        self.namespaces = userns_mod.Namespaces()
        if self.remap is not None:
            self.namespaces.fd(self.remap)
            os.makedirs(runtime.bundles, mode=0o700, exist_ok=True)
            userns_mod.make_traversable(runtime.bundles)
        self.tasks: dict[str, Task] = {}
        # Attaches to a stopped container's next run (control.attach with next_run):
        # start() connects them once the new conmon runs, before the process does.
        self.next_run_attaches: dict[str, list[asyncio.Future]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Removed bundles being deleted from the trash (see runtime's docstring).
        self._emptying: set[asyncio.Future] = set()
        from services.container.exec import Execs
        self.execs = Execs(self)

    # -- lifecycle of the service ------------------------------------------------

    async def reconcile(self) -> None:
        """Brings memory in line with disk after a (re)start: watch, record or clean up."""
        records = {r.id: r for r in self.store.all()}
        for record in records.values():
            b = self.runtime.bundle(record.id)
            conmon_pid = rt.read_int(b.conmon_pidfile)
            if record.exit is not None:
                if not (conmon_pid and rt.process_alive(conmon_pid, "conmon", record.id)):
                    continue
                # A new run began (start of a stopped container) just before a crash.
                self.store.clear_run(record.id)
                record = replace(record, exit=None, started_at=0.0)
            if conmon_pid and rt.process_alive(conmon_pid, "conmon", record.id):
                self._watch(record.id, conmon_pid, rt.read_int(b.pidfile) or 0)
                if not record.started_at:
                    # Off the hot path: only a restart can leave this in doubt.
                    state = await self.runtime.state(record.id)
                    if state and state.get("status") in ("running", "paused"):
                        self.broker.publish(self.store.set_started(record.id, time.time()))
                log.info("container_reattached", container_id=record.id, conmon_pid=conmon_pid)
                continue
            pid = rt.read_int(b.pidfile)
            if self._read_exit(record.id) is None and pid and rt.in_cgroup(pid, record.id):
                # Its monitor died (before or while this service was down); it did not.
                self._watch(record.id, 0, pid)
                continue
            exit = self._read_exit(record.id)
            if exit is None:
                exit = Exit(code=255, finished_at=time.time(),
                            note="the monitor (conmon) exited without recording an exit code")
            # The exit happened while the service was down: committed (with its
            # event) once, as set_exit records an exit only when none is.
            self.broker.publish(*self.store.set_exit(record.id, exit))
            log.info("container_exit_reconciled", container_id=record.id, exit_code=exit.code,
                     note=exit.note)
        # Bundles a removal (cut short by a crash) renamed and did not delete yet.
        if os.path.isdir(self.runtime.trash):
            self._empty_trash(*(os.path.join(self.runtime.trash, n) for n in os.listdir(self.runtime.trash)))
        # Bundles without a row are left from a create that never finished.
        if os.path.isdir(self.runtime.bundles):
            for id in os.listdir(self.runtime.bundles):
                if id not in records:
                    log.warning("orphan_bundle_removed", container_id=id)
                    await self._teardown(id)
        self.execs.reconcile()

    def _empty_trash(self, *paths: str) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(
            lambda: [shutil.rmtree(p, ignore_errors=True) for p in paths]))
        self._emptying.add(task)
        task.add_done_callback(self._emptying.discard)

    def close(self) -> None:
        self.namespaces.close()
        for task in self.tasks.values():
            self._unwatch(task)
            if task.rotator is not None:
                # A rotation cut short leaves a complete renamed file: the
                # next one compresses and prunes it.
                task.rotator.cancel()
        self.execs.close()

    # -- the API -----------------------------------------------------------------

    async def create(self, id: str, name: str, labels: dict[str, str], spec: Spec,
                     metadata: bytes) -> Container:
        name = name.lstrip("/") or id[:12]
        if not ID_RE.match(id):
            raise errors.InvalidArgument(f'invalid container id "{id}": must be 64 lowercase hex characters')
        if not NAME_RE.match(name):
            raise errors.InvalidArgument(
                f'Invalid container name ("{name}"), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        if not spec.process.args:
            raise errors.InvalidArgument("no command specified")
        if not spec.rootfs:
            raise errors.InvalidArgument("no root filesystem mounts given")
        spec_mod.check_system_paths(spec)
        spec = replace(userns_mod.resolve(spec_mod.bind_sources(security.resolve(spec, self.host)),
                                          self.remap),
                       log_config=logfiles.resolve(spec.log_config, self.default_log))
        record = Record(id=id, name=name, spec=spec, labels=dict(labels), metadata=metadata,
                        created_at=time.time())
        try:
            self.store.insert(record)
        except NameTaken as exc:
            if exc.owner == id:
                raise errors.AlreadyExists(f"container {id} already exists") from None
            raise errors.AlreadyExists(
                f'Conflict. The container name "/{name}" is already in use by container "{exc.owner}". '
                "You have to remove (or rename) that container to be able to reuse that name.") from None
        b = self.runtime.bundle(id)
        try:
            async with self._lock(id):
                os.makedirs(b.rootfs, mode=0o700)
                if spec.userns.uid_mappings:
                    os.chmod(b.dir, 0o711)  # see userns_mod.make_traversable
                self._mount_rootfs(spec, b)
                self._write_config(id, spec, b)
                pid, conmon_pid = await self.runtime.create(
                    b, rt.stdio_flags(spec.tty, spec.open_stdin, spec.stdin_once),
                    self._log_policy(record).reads)
                self._watch(id, conmon_pid, pid, hold_exit=True)
        except BaseException as exc:
            log.info("container_create_failed", container_id=id, error=str(exc))
            await self._teardown(id)
            self.store.forget(id)
            raise
        log.info("container_created", container_id=id, name=name, pid=pid)
        self.broker.publish(self.store.append(Event(EventType.CREATE, id, time.time())))
        self._release_exit(id)
        return self._view(record)

    async def start(self, ref: str) -> Container:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            if c.status in (Status.RUNNING, Status.PAUSED):
                raise errors.FailedPrecondition(f'container "/{c.name}" is already running')
            if c.status is Status.STOPPED:
                await self._new_task(c.record)
                await self._connect_next_run(c.id)
            task = self.tasks.get(c.id)
            if task is not None:
                task.hold_exit = True
            try:
                await self.runtime.start(c.id)
                self.broker.publish(self.store.set_started(c.id, time.time()))
            finally:
                self._release_exit(c.id)
            c = self.get(c.id)
        log.info("container_started", container_id=c.id, pid=c.pid)
        return c

    async def _new_task(self, record: Record) -> None:
        """Creates a new task (conmon, `runc create`) for a stopped container's record.

        Until the new conmon runs, the row keeps the last exit: a failure (or a crash)
        on the way leaves the container stopped as it was."""
        id = record.id
        b = self.runtime.bundle(id)
        old = self.tasks.pop(id, None)
        if old is not None:
            self._unwatch(old)
        # runc keeps an exited container's state and cgroup until it is deleted.
        await self.runtime.delete(id)
        rt.clear_run(b)
        if not os.path.ismount(b.rootfs):
            # Only a reboot or a hand unmounts it; the record has the mounts.
            self._mount_rootfs(record.spec, b)
        # Written again: Update may have changed limits, the image's users may have changed.
        self._write_config(id, record.spec, b)
        spec = record.spec
        policy = self._log_policy(record)
        # This run appends to the log: one already past max-size is rotated first.
        await asyncio.to_thread(logfiles.rotate_closed, b.log, policy)
        pid, conmon_pid = await self.runtime.create(
            b, rt.stdio_flags(spec.tty, spec.open_stdin, spec.stdin_once), policy.reads)
        # No await from here on: the row and the task change together (the row first,
        # so that an exit noticed at once by _watch is recorded as this run's).
        self.store.clear_run(id)
        self._watch(id, conmon_pid, pid)
        log.info("container_task_created", container_id=id, pid=pid)

    async def _connect_next_run(self, id: str) -> None:
        for waiter in list(self.next_run_attaches.get(id, ())):
            if waiter.done():
                continue
            try:
                conn = await Stdio.of(self.runtime, id)
            except errors.BerthError as exc:
                if not waiter.done():
                    waiter.set_exception(exc)
                continue
            if waiter.done():
                conn.close()  # the caller went away meanwhile
            else:
                waiter.set_result(conn)

    async def kill(self, ref: str, sig: str) -> None:
        c = self.get(ref)
        signum = parse_signal(sig, signal.SIGKILL)
        if c.status not in (Status.RUNNING, Status.PAUSED):
            raise errors.FailedPrecondition(f'container "/{c.name}" is not running')
        self._signal(c.id, signum)
        log.info("container_signalled", container_id=c.id, signal=signum)

    async def stop(self, ref: str, timeout: int, sig: str) -> Container:
        c = self.get(ref)
        signum = parse_signal(sig or c.record.spec.stop_signal, signal.SIGTERM)
        if c.status not in (Status.RUNNING, Status.PAUSED):
            return c
        if c.status is Status.PAUSED:
            # A frozen process cannot act on the stop signal.
            await self.runtime.resume(c.id)
            self.broker.publish(self.store.append(Event(EventType.RESUME, c.id, time.time())))
        task = self.tasks.get(c.id)
        timeout = DEFAULT_STOP_TIMEOUT if timeout < 0 else timeout
        self._signal(c.id, signum)
        if task and not await _wait_event(task.exited, timeout):
            log.info("container_stop_timeout", container_id=c.id, timeout=timeout)
            self._signal(c.id, signal.SIGKILL)
            await task.exited.wait()
        return self.get(c.id)

    async def wait(self, ref: str) -> Exit:
        c = self.get(ref)
        task = self.tasks.get(c.id)
        if task is not None:
            await settled(task)
            if task.exit is not None:
                return task.exit
        record = self.store.get(c.id)
        if record is None or record.exit is None:
            raise errors.NotFound(f"No such container: {ref}")
        return record.exit

    async def delete(self, ref: str, force: bool) -> None:
        c = self.get(ref)
        async with self._lock(c.id):
            c = self.get(c.id)
            if c.status in (Status.RUNNING, Status.PAUSED) and not force:
                raise errors.FailedPrecondition(
                    f'cannot remove container "/{c.name}": container is running: '
                    "stop the container before removing or force remove")
            task = self.tasks.get(c.id)
            if task is not None and c.status in (Status.RUNNING, Status.PAUSED):
                if c.status is Status.PAUSED:
                    await self.runtime.resume(c.id)
                self._signal(c.id, signal.SIGKILL)
                # Let the exit (and any OOM) be recorded before runc removes the cgroup.
                await _wait_event(task.exited, KILL_GRACE)
            await self._teardown(c.id)
            deleted = self.store.delete(c.id)
        self._locks.pop(c.id, None)
        for waiter in self.next_run_attaches.pop(c.id, ()):
            if not waiter.done():
                waiter.set_exception(errors.NotFound(f"No such container: {c.id}"))
        log.info("container_deleted", container_id=c.id)
        self.broker.publish(deleted)

    async def rename(self, ref: str, new_name: str) -> Container:
        c = self.get(ref)
        name = new_name.lstrip("/")
        if not NAME_RE.match(name):
            raise errors.InvalidArgument(
                f'Invalid container name ("{name}"), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        if name == c.name:
            raise errors.InvalidArgument(f"Renaming a container with the same name as its current name")
        try:
            self.store.rename(c.id, name)
        except NameTaken as exc:
            raise errors.AlreadyExists(
                f'Conflict. The container name "/{name}" is already in use by container "{exc.owner}". '
                "You have to remove (or rename) that container to be able to reuse that name.") from None
        log.info("container_renamed", container_id=c.id, old_name=c.name, name=name)
        return self.get(c.id)

    async def set_metadata(self, ref: str, metadata: bytes) -> Container:
        c = self.get(ref)
        self.store.set_metadata(c.id, metadata)
        return self.get(c.id)

    def get(self, ref: str) -> Container:
        return self._view(self._find(ref))

    def list(self, labels: dict[str, str]) -> list[Container]:
        return [self._view(r) for r in self.store.all()
                if all(r.labels.get(k) == v for k, v in labels.items())]

    async def logs(self, ref: str, follow: bool, flt: logs_mod.LogFilter,
                   chunked: bool = False) -> AsyncIterator[LogLine]:
        c = self.get(ref)
        if not self._log_policy(c.record).reads:
            raise errors.NotImplementedYet("configured logging driver does not support reading")
        path = self.runtime.bundle(c.id).log
        task = self.tasks.get(c.id)
        if not follow or task is None or task.exited.is_set():
            snap = await asyncio.to_thread(logfiles.snapshot, path)
            try:
                # Read and parsed off the event loop, a few MiB at a time.
                lines = logs_mod.read(snap, flt, chunked)
                while batch := await asyncio.to_thread(_batch, lines):
                    for line in batch:
                        yield line
            finally:
                snap.close()
            return

        async def wait_exit(timeout: float) -> None:
            await _wait_event(task.exited, timeout)

        async for batch in logs_mod.follow(path, flt, chunked, task.exited.is_set, wait_exit):
            for line in batch:
                yield line

    async def events(self, after_seq: int | None) -> AsyncIterator[Event]:
        """Committed events after after_seq (None: from now), then live ones, in seq order."""
        async for event in self.broker.subscribe(after_seq):
            yield event

    # -- internals ---------------------------------------------------------------

    def _find(self, ref: str) -> Record:
        key = ref.lstrip("/")
        record = None
        if ID_RE.match(key):
            record = self.store.get(key)
        if record is None and key:
            record = self.store.by_name(key)
        if record is None and key and HEX_RE.match(key):
            found = self.store.by_prefix(key)
            if len(found) > 1:
                raise errors.InvalidArgument(f"multiple IDs found with provided prefix: {key}")
            record = found[0] if found else None
        if record is None:
            raise errors.NotFound(f"No such container: {ref}")
        return record


    def _shm_dir(self, id: str) -> str:
        return os.path.join(self.runtime.bundle(id).dir, "shm")

    def _donor(self, id: str) -> security.Donor:
        """A container whose namespaces another joins: its pid while it runs."""
        try:
            c = self.get(id)
        except errors.NotFound:
            return security.Donor()
        if c.status not in (Status.RUNNING, Status.PAUSED):
            return security.Donor()
        shareable = c.record.spec.security.ipc_mode == "shareable" and os.path.ismount(self._shm_dir(id))
        return security.Donor(c.pid, self._shm_dir(id) if shareable else "")

    def _log_policy(self, record: Record) -> logfiles.LogPolicy:
        # Rows from before log drivers carry none: the daemon default applies.
        # Asked for every container of every listing: worked out once per configuration.
        config = record.spec.log_config
        found = self._log_policies.get(config)
        if found is None:
            found = self._log_policies[config] = logfiles.policy(logfiles.resolve(config, self.default_log))
        return found

    def _view(self, record: Record) -> Container:
        task = self.tasks.get(record.id)
        log_path = self.runtime.bundle(record.id).log if self._log_policy(record).reads else ""
        if task is not None and task.exit is not None and record.exit is None:
            record = replace(record, exit=task.exit)
        if record.exit is not None or task is None or task.exited.is_set():
            return Container(record, Status.STOPPED, 0, log_path)
        status = Status.RUNNING if record.started_at else Status.CREATED
        if status is Status.RUNNING and rt.frozen(record.id):
            status = Status.PAUSED
        return Container(record, status, task.pid, log_path)

    def _mount_rootfs(self, spec: Spec, b: rt.Bundle) -> None:
        if not spec.userns.uid_mappings:
            rt.mount_rootfs(spec.rootfs, b.rootfs)
            return
        with userns_mod.mapped_rootfs(spec.rootfs, spec.userns,
                                      self.namespaces.fd(spec.userns)) as mounts:
            rt.mount_rootfs(mounts, b.rootfs)

    def _write_config(self, id: str, spec: Spec, b: rt.Bundle) -> None:
        """config.json for the next `runc create`: the OCI spec (with the mounts as runc
        does them), then its confinement, then its user namespace."""
        user = spec_mod.resolve_user(b.rootfs, spec)
        spec = replace(spec, mounts=subpaths.attach(spec.mounts, b.dir))
        try:
            mounts = userns_mod.mapped_mounts(spec, b.dir, self.namespaces)
        except OSError as exc:
            raise errors.FailedPrecondition(f"user namespace: a volume cannot be mapped: {exc}") from None
        config = spec_mod.oci_config(id, replace(spec, mounts=mounts), b.rootfs, user)
        shm_dir = self._shm_dir(id)
        security.prepare_shm(spec, shm_dir)
        security.apply(config, spec, b.rootfs, self.host, self._donor, shm_dir)
        with open(b.config, "w") as f:
            # One write: json.dump writes piece by piece (~1 ms for a spec, dumps ~0.1 ms).
            f.write(json.dumps(userns_mod.oci_userns(config, spec.userns)))

    def _lock(self, id: str) -> asyncio.Lock:
        return self._locks.setdefault(id, asyncio.Lock())

    def _signal(self, id: str, signum: int) -> None:
        task = self.tasks.get(id)
        if task is None or task.exited.is_set() or task.pid_fd < 0:
            return
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(task.pid_fd, signum)

    def _watch(self, id: str, conmon_pid: int, pid: int, hold_exit: bool = False) -> None:
        task = Task(conmon_pid=conmon_pid, pid=pid, hold_exit=hold_exit)
        self.tasks[id] = task
        # The process's pidfd first: it is what is left to watch if conmon is gone.
        if pid:
            with contextlib.suppress(ProcessLookupError):
                task.pid_fd = os.pidfd_open(pid)
        try:
            if conmon_pid <= 0:
                raise ProcessLookupError(conmon_pid)
            task.conmon_fd = os.pidfd_open(conmon_pid)
        except ProcessLookupError:
            self._on_exit(id)
            return
        asyncio.get_running_loop().add_reader(task.conmon_fd, self._on_exit, id)
        record = self.store.get(id)
        policy = self._log_policy(record) if record else None
        if policy is not None and policy.max_size > 0:
            b = self.runtime.bundle(id)
            rotator = logfiles.Rotator(b.log, os.path.join(b.dir, "ctl"), policy)
            task.rotator = asyncio.ensure_future(rotator.run(task.exited))
            task.rotator.add_done_callback(_log_rotator_end)

    def _unwatch(self, task: Task) -> None:
        _close_conmon_fd(task)
        if task.pid_fd >= 0:
            asyncio.get_running_loop().remove_reader(task.pid_fd)
            os.close(task.pid_fd)
            task.pid_fd = -1

    def _on_exit(self, id: str) -> None:
        task = self.tasks.get(id)
        if task is None or task.exited.is_set():
            return
        # conmon is this service's child (see rt.become_subreaper): collected, not a zombie.
        rt.reap(task.conmon_fd)
        exit = self._read_exit(id)
        if exit is None and not task.monitor_lost and rt.pidfd_alive(task.pid_fd):
            self._monitor_lost(id, task)
            return
        if exit is None and task.monitor_lost:
            exit = self._orphan_exit(id, task)
        self._unwatch(task)
        exit = exit or Exit(
            code=255, finished_at=time.time(),
            note="the monitor (conmon) exited without recording an exit code")
        task.exit = exit
        if not task.hold_exit:
            self.broker.publish(*self.store.set_exit(id, exit))
        task.exited.set()
        log.info("container_exited", container_id=id, exit_code=exit.code, oom_killed=exit.oom_killed)

    def _monitor_lost(self, id: str, task: Task) -> None:
        """conmon is gone, its container's process is not: watch the process itself."""
        _close_conmon_fd(task)
        task.monitor_lost = True
        asyncio.get_running_loop().add_reader(task.pid_fd, self._on_process_exit, id)
        log.warning("container_monitor_lost", container_id=id, conmon_pid=task.conmon_pid,
                    pid=task.pid)

    def _on_process_exit(self, id: str) -> None:
        task = self.tasks.get(id)
        if task is None or task.pid_fd < 0:
            return
        asyncio.get_running_loop().remove_reader(task.pid_fd)
        # The orphan is this service's child (a subreaper): reaping it gives its status.
        task.orphan_code = rt.reap(task.pid_fd)
        if task.orphan_code is not None:
            self._on_exit(id)
        else:
            # Not our child (this service restarted since): init reaps it, and the kernel
            # keeps the status for the pidfd then; look a few times.
            asyncio.ensure_future(self._settle_orphan(id, task))

    async def _settle_orphan(self, id: str, task: Task) -> None:
        # Init reaps when it is scheduled, which on a loaded host can take seconds;
        # a zombie nothing reaps is given up on (255) after ORPHAN_REAP_SECONDS.
        deadline, pause = time.monotonic() + ORPHAN_REAP_SECONDS, 0.01
        while True:
            task.orphan_code = rt.pidfd_exit_code(task.pid_fd)
            if task.orphan_code is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)
        self._on_exit(id)

    def _orphan_exit(self, id: str, task: Task) -> Exit | None:
        if task.orphan_code is None:
            return None
        return Exit(code=task.orphan_code, finished_at=time.time(),
                    oom_killed=self.runtime.oom_killed(self.runtime.bundle(id)),
                    note="the monitor (conmon) was gone: the status was collected from the process")

    def _release_exit(self, id: str) -> None:
        """Ends hold_exit: commits an exit noticed meanwhile (after the holder's event)."""
        task = self.tasks.get(id)
        if task is None or not task.hold_exit:
            return
        task.hold_exit = False
        if task.exit is not None:
            self.broker.publish(*self.store.set_exit(id, task.exit))

    def _read_exit(self, id: str) -> Exit | None:
        b = self.runtime.bundle(id)
        code = rt.read_int(b.exit_file)
        if code is None:
            return None
        return Exit(code=code, finished_at=os.stat(b.exit_file).st_mtime,
                    oom_killed=self.runtime.oom_killed(b))

    async def _teardown(self, id: str) -> None:
        """Removes everything a container has on the node: runc state, cgroup, mounts, bundle."""
        task = self.tasks.get(id)
        await self.runtime.delete(id)
        if task is not None and not task.exited.is_set():
            # `runc delete --force` killed the process; conmon follows it out.
            if not await _wait_event(task.exited, KILL_GRACE):
                log.warning("conmon_still_running", container_id=id, conmon_pid=task.conmon_pid)
        elif task is None:
            conmon_pid = rt.read_int(self.runtime.bundle(id).conmon_pidfile)
            if conmon_pid and rt.process_alive(conmon_pid, "conmon", id):
                os.kill(conmon_pid, signal.SIGKILL)
        if task is not None:
            self._unwatch(task)
            if task.rotator is not None and task.exited.is_set():
                await asyncio.wait([task.rotator])  # it may still compress in the bundle
        self.tasks.pop(id, None)
        monitor = rt.read_int(self.runtime.bundle(id).conmon_pidfile)
        # Off the event loop: unmounting a writable layer syncs its filesystem, which on a
        # busy disk takes long enough to hold up every other container's calls. Deleting
        # the files (each unlink a journal write) is left to after the reply.
        left = await asyncio.to_thread(rt.remove_bundle, self.runtime.bundle(id), self.runtime.trash)
        if left:
            self._empty_trash(left)
        self.runtime.remove_socket_link(id)
        if monitor:
            rt.reap_monitor(monitor)


def _close_conmon_fd(task: Task) -> None:
    if task.conmon_fd >= 0:
        asyncio.get_running_loop().remove_reader(task.conmon_fd)
        os.close(task.conmon_fd)
        task.conmon_fd = -1


async def settled(task: Task) -> None:
    """Returns once the task exited and a rotation of its log under way is done, so
    that from then on its log files stay as they are."""
    await task.exited.wait()
    if task.rotator is not None:
        await asyncio.wait([task.rotator])


def _batch(lines, size: int = 4 << 20, count: int = 20000) -> list[LogLine]:
    out, n = [], 0
    for line in lines:
        out.append(line)
        n += len(line.data)
        if n >= size or len(out) >= count:
            break
    return out


def _log_rotator_end(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("log_rotation_failed", error=repr(fut.exception()))


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except asyncio.TimeoutError:
        return event.is_set()
