"""Acting on a running container: attach, pause/resume, update, top, stats.

Figures come from the container's cgroups (v1 hierarchies, `/berth/<id>` in
each controller, as spec.oci_config places it) and, for the network, from
/proc/<pid>/net/dev, which shows the container's own network namespace.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, replace

import structlog

from services.common import errors
from services.container.model import Event, EventType, Resources, Status
from services.container.service import settled
from services.container.stdio import Stdio, pump_requests

log = structlog.get_logger(__name__)

CGROUP = "/sys/fs/cgroup"
CPU_PERIOD = 100_000
UNLIMITED = 1 << 62


def _running(service, ref: str):
    c = service.get(ref)
    if c.status not in (Status.RUNNING, Status.PAUSED):
        raise errors.FailedPrecondition(f"container {c.id} is not running")
    return c


# -- attach -----------------------------------------------------------------------------

async def attach(service, ref: str, stdin: bool, height: int, width: int, requests,
                 next_run: bool = False):
    """Yields ("attached", id), then ("output", (stream, data)) until conmon closes the
    socket, then ("exit", Exit) once the exit is recorded: conmon closes the socket
    after the last byte and before it exits, so the exit follows without a timer.

    A stopped container is refused, unless `next_run`: then "attached" comes at
    once and the output is that of the container's next run, connected by start()
    before its process runs (docker's `start -a`: attach, then start)."""
    c = service.get(ref)
    if c.status is Status.STOPPED:
        if not next_run:
            raise errors.FailedPrecondition(
                "You cannot attach to a stopped container, start it first")
        waiter = asyncio.get_running_loop().create_future()
        waiters = service.next_run_attaches.setdefault(c.id, [])
        waiters.append(waiter)
        conn = None
        try:
            yield "attached", c.id
            conn = await waiter
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and service.next_run_attaches.get(c.id) is waiters:
                del service.next_run_attaches[c.id]
            if conn is None and waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().close()  # connected by start() just as the caller went away
    else:
        conn = await Stdio.of(service.runtime, c.id)
        yield "attached", c.id
    c = service.get(c.id)
    task = service.tasks.get(c.id)
    want_stdin = stdin and c.record.spec.open_stdin
    try:
        if c.record.spec.tty and height and width:
            await conn.resize(height, width)
        pump = asyncio.ensure_future(pump_requests(requests, conn, want_stdin))
        try:
            while (piece := await conn.read()) is not None:
                yield "output", piece
        finally:
            pump.cancel()
    finally:
        conn.close()
    # This run's exit, even if a restart begins a new run meanwhile.
    if task is not None:
        await settled(task)
        if task.exit is not None:
            yield "exit", task.exit


# -- pause, resume, update --------------------------------------------------------------

async def pause(service, ref: str):
    c = service.get(ref)
    async with service._lock(c.id):
        c = service.get(c.id)
        if c.status is Status.PAUSED:
            raise errors.FailedPrecondition(f"Container {c.id} is already paused")
        if c.status is not Status.RUNNING:
            raise errors.FailedPrecondition(f"Container {c.id} is not running")
        await service.runtime.pause(c.id)
    log.info("container_paused", container_id=c.id)
    service.broker.publish(service.store.append(Event(EventType.PAUSE, c.id, time.time())))
    return service.get(c.id)


async def resume(service, ref: str):
    c = service.get(ref)
    async with service._lock(c.id):
        c = service.get(c.id)
        if c.status is not Status.PAUSED:
            raise errors.FailedPrecondition(f"Container {c.id} is not paused")
        await service.runtime.resume(c.id)
    log.info("container_resumed", container_id=c.id)
    service.broker.publish(service.store.append(Event(EventType.RESUME, c.id, time.time())))
    return service.get(c.id)


FIELDS = ("memory_bytes", "nano_cpus", "cpu_shares", "pids_limit")


async def update(service, ref: str, resources: Resources, fields: list[str]):
    """Applies new limits with `runc update` (when it runs) and keeps them in the spec.

    Checked before anything changes: an error leaves every limit as it was."""
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise errors.InvalidArgument(f"unknown resource field: {unknown[0]}")
    for f in fields:
        if getattr(resources, f) < 0:
            raise errors.InvalidArgument(f"invalid {f.replace('_', ' ')}: {getattr(resources, f)}: "
                                         "must not be negative")
    if "memory_bytes" in fields and 0 < resources.memory_bytes < 6 * 1024 * 1024:
        raise errors.InvalidArgument("Minimum memory limit allowed is 6MB")
    if "cpu_shares" in fields and 0 < resources.cpu_shares < 2:
        raise errors.InvalidArgument("minimum CPU shares allowed is 2")
    c = service.get(ref)
    async with service._lock(c.id):
        c = service.get(c.id)
        if c.status is Status.STOPPED:
            raise errors.FailedPrecondition(
                f"Cannot update container {c.id}: the container is not running")
        current = c.record.spec.resources
        new = replace(current, **{f: getattr(resources, f) for f in fields})
        args = []
        if "memory_bytes" in fields:
            limit = str(new.memory_bytes or -1)
            # The memory+swap limit must move with the memory limit (and never sit below it).
            args += ["--memory", limit, "--memory-swap", limit]
        if "nano_cpus" in fields:
            quota = new.nano_cpus * CPU_PERIOD // 1_000_000_000 if new.nano_cpus else -1
            args += ["--cpu-period", str(CPU_PERIOD), "--cpu-quota", str(quota)]
        if "cpu_shares" in fields:
            args += ["--cpu-share", str(new.cpu_shares or 1024)]
        if "pids_limit" in fields:
            args += ["--pids-limit", str(new.pids_limit or -1)]
        if args:
            await service.runtime.update(c.id, *args)
        service.store.set_resources(c.id, new)
    log.info("container_updated", container_id=c.id, fields=fields)
    return service.get(c.id)


# -- top ------------------------------------------------------------------------------

def cgroup_pids(cid: str) -> list[int]:
    try:
        with open(f"{CGROUP}/pids/berth/{cid}/cgroup.procs") as f:
            return [int(line) for line in f if line.strip()]
    except OSError:
        return []


async def top(service, ref: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
    """`ps` on the host, cut down to the container's processes (docker's way)."""
    c = _running(service, ref)
    pids = set(cgroup_pids(c.id))
    args = ps_args or ["-ef"]
    proc = await asyncio.create_subprocess_exec(
        "ps", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise errors.InvalidArgument(f"ps: {err.decode(errors='replace').strip()}")
    lines = out.decode(errors="replace").splitlines()
    if not lines:
        return [], []
    titles = lines[0].split()
    try:
        pid_col = titles.index("PID")
    except ValueError:
        raise errors.InvalidArgument("Couldn't find PID field in ps output") from None
    rows = []
    for line in lines[1:]:
        cols = line.split(None, len(titles) - 1)
        try:
            if int(cols[pid_col]) in pids:
                rows.append(cols)
        except (IndexError, ValueError):
            continue
    return titles, rows


# -- stats ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    time: float
    cpu_usage_ns: int
    system_cpu_ns: int
    online_cpus: int
    memory_usage: int
    memory_limit: int
    memory_cache: int
    pids: int
    pids_limit: int
    net_rx: int
    net_tx: int
    block_read: int
    block_write: int


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return default


def _system_cpu_ns() -> int:
    """All CPUs' time from /proc/stat, in nanoseconds (docker's SystemUsage)."""
    for line in _read("/proc/stat").splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(v) for v in line.split()[1:8])
            return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return 0


def _host_memory() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(cid: str, pid: int) -> Sample:
    mem = f"{CGROUP}/memory/berth/{cid}"
    stat = dict(line.split() for line in _read(f"{mem}/memory.stat").splitlines() if " " in line)
    usage = _int(_read(f"{mem}/memory.usage_in_bytes"))
    cache = int(stat.get("total_inactive_file", 0))
    limit = _int(_read(f"{mem}/memory.limit_in_bytes"), UNLIMITED)
    host = _host_memory()
    rx = tx = 0
    if pid:
        for line in _read(f"/proc/{pid}/net/dev").splitlines()[2:]:
            name, _, rest = line.partition(":")
            cols = rest.split()
            if name.strip() != "lo" and len(cols) >= 9:
                rx += int(cols[0])
                tx += int(cols[8])
    read = write = 0
    for line in _read(f"{CGROUP}/blkio/berth/{cid}/blkio.throttle.io_service_bytes").splitlines():
        cols = line.split()
        if len(cols) == 3 and cols[1] == "Read":
            read += int(cols[2])
        elif len(cols) == 3 and cols[1] == "Write":
            write += int(cols[2])
    pids_max = _read(f"{CGROUP}/pids/berth/{cid}/pids.max").strip()
    return Sample(
        time=time.time(), cpu_usage_ns=_int(_read(f"{CGROUP}/cpuacct/berth/{cid}/cpuacct.usage")),
        system_cpu_ns=_system_cpu_ns(), online_cpus=os.cpu_count() or 1,
        memory_usage=max(0, usage - cache), memory_limit=min(limit, host) if host else limit,
        memory_cache=cache, pids=_int(_read(f"{CGROUP}/pids/berth/{cid}/pids.current")),
        pids_limit=_int(pids_max) if pids_max.isdigit() else 0,
        net_rx=rx, net_tx=tx, block_read=read, block_write=write)


async def stats(service, ref: str, interval: float):
    """One sample, or one every `interval` seconds until the container stops."""
    c = service.get(ref)
    while True:
        c = service.get(c.id)
        if c.status not in (Status.RUNNING, Status.PAUSED):
            if interval <= 0:
                yield Sample(time.time(), 0, _system_cpu_ns(), os.cpu_count() or 1, 0, 0, 0, 0, 0,
                             0, 0, 0, 0)
            return
        yield await asyncio.to_thread(sample, c.id, c.pid)
        if interval <= 0:
            return
        task = service.tasks.get(c.id)
        if task is None:
            await asyncio.sleep(interval)
        else:
            try:
                await asyncio.wait_for(task.exited.wait(), interval)
            except asyncio.TimeoutError:
                pass


def place_of(service, ref: str, path: str, write: bool = False) -> tuple[str, str, str]:
    """Where `path` of the container is on the host while it is not running: (root, path
    under that root, name of that root in an archive). A path under a volume or bind mount
    is in the mount's source, as docker's cp sees it (files put into a created container's
    volume are there when it starts); any other is in the bundle's rootfs."""
    root = root_of(service, ref)
    c = service.get(ref)
    if root.startswith("/proc/"):
        return root, path, ""
    clean = "/" + "/".join(p for p in path.split("/") if p not in ("", "."))
    best = None
    for m in c.record.spec.mounts:
        target = "/" + "/".join(p for p in m.target.split("/") if p)
        if m.type != "bind" or not m.source:
            continue
        if clean == target or clean.startswith(target.rstrip("/") + "/"):
            if best is None or len(target) > len(best[0]):
                best = (target, m.source, "ro" in m.options)
    if best is None or ".." in clean.split("/"):
        return root, path, ""
    target, source, readonly = best
    if write and readonly:
        # What a running container's read-only mount would answer (EROFS), said as dockerd does.
        raise errors.FailedPrecondition(f"mounted volume is marked read-only: {target}")
    rest = clean[len(target):] or "/"
    if path.endswith("/") and not rest.endswith("/"):
        rest += "/"
    return source, rest, os.path.basename(target) if rest == "/" else ""


def root_of(service, ref: str) -> str:
    """Where the container's files are seen: through its process while it runs (mounts
    included), else the bundle's rootfs."""
    c = service.get(ref)
    if c.status in (Status.RUNNING, Status.PAUSED) and c.pid:
        return f"/proc/{c.pid}/root"
    return service.runtime.bundle(c.id).rootfs
