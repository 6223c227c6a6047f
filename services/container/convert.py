"""Protobuf <-> domain types. Protobuf stops here and in api.py."""

from __future__ import annotations

import weakref

from google.protobuf.timestamp_pb2 import Timestamp

from berth.container.v1 import container_pb2 as pb
from berth.types.v1 import mount_pb2
from berth.types.v1 import security_pb2
from berth.types.v1 import stdio_pb2
from services.container import logfiles
from services.container import logs as logs_mod
from services.container.model import (Container, Device, Event, EventType, Exit, IdMapping, LogConfig,
                                      LogLine, Mount, Process, Resources, Security, Spec, Status, Ulimit,
                                      UserNamespace)

_STATUS = {Status.CREATED: pb.STATUS_CREATED, Status.RUNNING: pb.STATUS_RUNNING,
           Status.STOPPED: pb.STATUS_STOPPED, Status.PAUSED: pb.STATUS_PAUSED}
_EVENT = {EventType.CREATE: pb.TaskEvent.TYPE_CREATE, EventType.START: pb.TaskEvent.TYPE_START,
          EventType.EXIT: pb.TaskEvent.TYPE_EXIT, EventType.OOM: pb.TaskEvent.TYPE_OOM,
          EventType.DELETE: pb.TaskEvent.TYPE_DELETE, EventType.PAUSE: pb.TaskEvent.TYPE_PAUSE,
          EventType.RESUME: pb.TaskEvent.TYPE_RESUME, EventType.EXEC_EXIT: pb.TaskEvent.TYPE_EXEC_EXIT,
          EventType.EXEC_START: pb.TaskEvent.TYPE_EXEC_START}
_STREAM = {"stdout": stdio_pb2.OUTPUT_STREAM_STDOUT, "stderr": stdio_pb2.OUTPUT_STREAM_STDERR}


def _ts(seconds: float) -> Timestamp | None:
    if not seconds:
        return None
    ts = Timestamp()
    ns = int(seconds * 1_000_000_000)
    ts.seconds, ts.nanos = divmod(ns, 1_000_000_000)
    return ts


def _ts_ns(ns: int) -> Timestamp:
    ts = Timestamp()
    ts.seconds, ts.nanos = divmod(ns, 1_000_000_000)
    return ts


def _ns(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000_000 + ts.nanos


def mount_from_pb(m: mount_pb2.Mount) -> Mount:
    return Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options),
                 create_source=m.create_source, sub_path=m.sub_path)


def mount_to_pb(m: Mount) -> mount_pb2.Mount:
    return mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options),
                           create_source=m.create_source, sub_path=m.sub_path)


def spec_from_pb(s: pb.Spec) -> Spec:
    p, r = s.process, s.resources
    return Spec(
        process=Process(args=tuple(p.args), env=tuple(p.env), cwd=p.cwd or "/", uid=p.uid, gid=p.gid,
                        additional_gids=tuple(p.additional_gids), user=p.user),
        rootfs=tuple(mount_from_pb(m) for m in s.rootfs),
        mounts=tuple(mount_from_pb(m) for m in s.mounts),
        netns_path=s.netns_path, hostname=s.hostname,
        resources=resources_from_pb(r),
        stop_signal=s.stop_signal, readonly_rootfs=s.readonly_rootfs, tty=s.tty,
        open_stdin=s.open_stdin, stdin_once=s.stdin_once,
        log_config=LogConfig(s.log_config.driver, tuple(sorted(s.log_config.options.items()))),
        security=security_from_pb(s.security), runtime=s.runtime,
        system_paths=(tuple(s.system_paths.masked), tuple(s.system_paths.readonly))
        if s.HasField("system_paths") else None,
        userns=userns_from_pb(s.userns), cgroupns_private=s.cgroupns_private,
        link_env=tuple(s.link_env))


def spec_to_pb(s: Spec) -> pb.Spec:
    p, r = s.process, s.resources
    return pb.Spec(
        rootfs=[mount_to_pb(m) for m in s.rootfs], mounts=[mount_to_pb(m) for m in s.mounts],
        netns_path=s.netns_path, hostname=s.hostname,
        process=pb.Process(args=list(p.args), env=list(p.env), cwd=p.cwd, uid=p.uid, gid=p.gid,
                           additional_gids=list(p.additional_gids), user=p.user),
        resources=resources_to_pb(r),
        stop_signal=s.stop_signal, readonly_rootfs=s.readonly_rootfs, tty=s.tty,
        open_stdin=s.open_stdin, stdin_once=s.stdin_once,
        log_config=pb.LogConfig(driver=s.log_config.driver, options=dict(s.log_config.options)),
        security=security_to_pb(s.security), runtime=s.runtime,
        system_paths=None if s.system_paths is None else pb.SystemPaths(
            masked=list(s.system_paths[0]), readonly=list(s.system_paths[1])),
        userns=userns_to_pb(s.userns), cgroupns_private=s.cgroupns_private,
        link_env=list(s.link_env))


def resources_from_pb(r: pb.Resources) -> Resources:
    return Resources(memory_bytes=r.memory_bytes, nano_cpus=r.nano_cpus, cpu_shares=r.cpu_shares,
                     pids_limit=r.pids_limit, cpuset_cpus=r.cpuset_cpus, cpuset_mems=r.cpuset_mems,
                     memory_swap=r.memory_swap, memory_reservation=r.memory_reservation,
                     oom_kill_disable=r.oom_kill_disable)


def resources_to_pb(r: Resources) -> pb.Resources:
    return pb.Resources(memory_bytes=r.memory_bytes, nano_cpus=r.nano_cpus, cpu_shares=r.cpu_shares,
                        pids_limit=r.pids_limit, cpuset_cpus=r.cpuset_cpus, cpuset_mems=r.cpuset_mems,
                        memory_swap=r.memory_swap, memory_reservation=r.memory_reservation,
                        oom_kill_disable=r.oom_kill_disable)


def security_from_pb(s: pb.Security) -> Security:
    return Security(
        privileged=s.privileged, cap_add=tuple(s.cap_add), cap_drop=tuple(s.cap_drop),
        devices=tuple(Device(d.path_on_host, d.path_in_container, d.cgroup_permissions) for d in s.devices),
        device_cgroup_rules=tuple(s.device_cgroup_rules), sysctls=tuple(sorted(s.sysctls.items())),
        ulimits=tuple(Ulimit(u.name, u.soft, u.hard) for u in s.ulimits), group_add=tuple(s.group_add),
        pid_mode=s.pid_mode, ipc_mode=s.ipc_mode, uts_mode=s.uts_mode, oom_score_adj=s.oom_score_adj,
        shm_size=s.shm_size, init=s.init, seccomp_profile=s.seccomp_profile,
        no_new_privileges=s.no_new_privileges, unmasked_paths=s.unmasked_paths)


def security_to_pb(s: Security) -> pb.Security:
    return pb.Security(
        privileged=s.privileged, cap_add=list(s.cap_add), cap_drop=list(s.cap_drop),
        devices=[security_pb2.DeviceMapping(path_on_host=d.path_on_host, path_in_container=d.path_in_container,
                                            cgroup_permissions=d.permissions) for d in s.devices],
        device_cgroup_rules=list(s.device_cgroup_rules), sysctls=dict(s.sysctls),
        ulimits=[security_pb2.Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in s.ulimits],
        group_add=list(s.group_add), pid_mode=s.pid_mode, ipc_mode=s.ipc_mode, uts_mode=s.uts_mode,
        oom_score_adj=s.oom_score_adj, shm_size=s.shm_size, init=s.init, seccomp_profile=s.seccomp_profile,
        no_new_privileges=s.no_new_privileges, unmasked_paths=s.unmasked_paths)


def userns_from_pb(u: pb.UserNamespace) -> UserNamespace:
    return UserNamespace(
        mode=u.mode,
        uid_mappings=tuple(IdMapping(m.container_id, m.host_id, m.size) for m in u.uid_mappings),
        gid_mappings=tuple(IdMapping(m.container_id, m.host_id, m.size) for m in u.gid_mappings))


def userns_to_pb(u: UserNamespace) -> pb.UserNamespace:
    return pb.UserNamespace(
        mode=u.mode,
        uid_mappings=[pb.IdMapping(container_id=m.container_id, host_id=m.host_id, size=m.size)
                      for m in u.uid_mappings],
        gid_mappings=[pb.IdMapping(container_id=m.container_id, host_id=m.host_id, size=m.size)
                      for m in u.gid_mappings])


# Each Spec's message, for as long as the Spec lives (the store keeps one per row until
# it changes): a listing converts no spec twice. Keyed by identity; the weak reference
# drops the entry with its Spec, so an id is never taken for another's.
_SPEC_PB: dict[int, tuple[weakref.ref, pb.Spec]] = {}


def _spec_pb(spec: Spec) -> pb.Spec:
    key = id(spec)
    cached = _SPEC_PB.get(key)
    if cached is not None and cached[0]() is spec:
        return cached[1]
    message = spec_to_pb(spec)
    _SPEC_PB[key] = (weakref.ref(spec, lambda _, key=key: _SPEC_PB.pop(key, None)), message)
    return message


def container_to_pb(c: Container) -> pb.Container:
    r = c.record
    out = pb.Container(id=r.id, name="/" + r.name, labels=r.labels, spec=_spec_pb(r.spec),
                       metadata=r.metadata, created_at=_ts(r.created_at), status=_STATUS[c.status],
                       pid=c.pid, started_at=_ts(r.started_at), log_path=c.log_path,
                       log_size=logfiles.total_size(c.log_path) if c.log_path else 0)
    if r.exit is not None:
        out.exit_code = r.exit.code
        out.oom_killed = r.exit.oom_killed
        out.finished_at.CopyFrom(_ts(r.exit.finished_at))
        out.note = r.exit.note
    return out


def exit_to_pb(e: Exit) -> pb.WaitContainerResponse:
    return pb.WaitContainerResponse(exit_code=e.code, oom_killed=e.oom_killed, finished_at=_ts(e.finished_at))


def log_filter_from_pb(req: pb.GetContainerLogsRequest) -> logs_mod.LogFilter:
    streams = {name for name, wanted in (("stdout", req.stdout), ("stderr", req.stderr)) if wanted}
    return logs_mod.LogFilter(
        tail=req.tail if req.tail >= 0 else -1,
        since_ns=_ns(req.since) if req.HasField("since") else 0,
        until_ns=_ns(req.until) if req.HasField("until") else 0,
        streams=frozenset(streams or {"stdout", "stderr"}))


def log_line_to_pb(line: LogLine) -> stdio_pb2.OutputChunk:
    return stdio_pb2.OutputChunk(stream=_STREAM.get(line.stream, stdio_pb2.OUTPUT_STREAM_UNSPECIFIED),
                                 time=_ts_ns(line.time_ns), data=line.data)


def event_to_pb(e: Event) -> pb.TaskEvent:
    return pb.TaskEvent(type=_EVENT[e.type], container_id=e.container_id, exit_code=e.exit_code,
                        time=_ts(e.time), exec_id=e.exec_id, seq=e.seq)
