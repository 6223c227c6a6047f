"""Containers in pod sandboxes: the CRI's ContainerConfig made into the container service's Spec.

What a CRI container is made of, besides its row in the CRI store: a snapshot
of its image (image service, keyed by the container id) and a container in
the container service whose spec joins the sandbox's network namespace and,
as the namespace options say, the sandbox container's pid, ipc and uts
namespaces (or the host's), confined as its security context says
(confinement.py). Whether it runs and how it ended is always asked of the
container service.

What the container service's Spec cannot express is refused by name
(INVALID_ARGUMENT), never dropped: see `check_config` and confinement.py.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time

import structlog

from berth.container.v1 import container_pb2
from berth.image.v1 import image_pb2
from google.protobuf import field_mask_pb2
from k8s.cri.runtime.v1 import api_pb2 as cri
from services.common import errors
from services.cri import confinement, convert
from services.cri.logs import LogRelays
from services.cri.sandboxes import SANDBOX_LABEL, Sandboxes, bind
from services.cri.store import ContainerRecord, Store

log = structlog.get_logger(__name__)

CONTAINER_LABEL = "io.berth.cri.container"
# How long ContainerStatus waits for the log relay to write an exited container's last lines.
LOG_DRAIN_WAIT = 5.0
# The container service's own copy of the output is only what the log relay reads from
# (the kubelet's file is the one kept and rotated by the kubelet): capped, so a chatty
# container costs at most 30 MB there.
RELAY_BUFFER = container_pb2.LogConfig(driver="json-file", options={"max-size": "10m", "max-file": "3"})
PROPAGATION = {cri.PROPAGATION_PRIVATE: "rprivate", cri.PROPAGATION_HOST_TO_CONTAINER: "rslave",
               cri.PROPAGATION_BIDIRECTIONAL: "rshared"}
# Relabelling a mount means something only where SELinux is on; this node has it or not.
SELINUX = os.path.exists("/sys/fs/selinux/enforce")


class Containers:
    def __init__(self, store: Store, image, container, sandboxes: Sandboxes, relays: LogRelays,
                 image_root: str):
        self._store = store
        self._image_root = image_root
        self._image = image
        self._container = container
        self._sandboxes = sandboxes
        self._relays = relays

    # -- create, start, stop, remove ---------------------------------------------------

    async def create(self, sandbox_id: str, config: cri.ContainerConfig,
                     sandbox_config: cri.PodSandboxConfig) -> str:
        sandbox = self._sandboxes.ready(sandbox_id)
        pod = self._sandboxes.config(sandbox)
        check_config(config)
        if not config.image.image:
            raise errors.InvalidArgument("container config has no image")
        try:
            image = (await self._image.GetImage(
                image_pb2.GetImageRequest(reference=config.image.image))).image
        except errors.NotFound:
            raise errors.NotFound(f"image {config.image.image!r} not found: pull it first") from None
        ic = image.config
        args = _args(list(ic.entrypoint), list(ic.cmd), list(config.command), list(config.args))
        if not args:
            raise errors.InvalidArgument("no command specified: the image has none and the config gives none")
        sc = config.linux.security_context
        env = _env(list(ic.env), config.envs)
        cid = secrets.token_hex(32)
        security = confinement.container_security(sc, sandbox.id, pod.linux.security_context,
                                                  await self._target(sc.namespace_options))
        security.devices.extend(confinement.devices(config))
        security.oom_score_adj = config.linux.resources.oom_score_adj
        mounts = [bind(m.host_path, m.container_path, m.readonly) for m in config.mounts]
        for m, spec_mount in zip(config.mounts, mounts):
            spec_mount.options[-1] = PROPAGATION[m.propagation]
            # containerd makes a missing host path as a directory; so does berth.
            spec_mount.create_source = True
        taken = {m.container_path for m in config.mounts}
        mounts.extend(bind(src, dst) for src, dst in sandbox.network.mounts if dst not in taken)
        spec = container_pb2.Spec(
            rootfs=[], mounts=mounts, netns_path=sandbox.network.netns_path, hostname="",
            process=container_pb2.Process(
                args=args, env=env, cwd=config.working_dir or ic.working_dir or "/",
                user=convert.user_of(sc, ic.user), additional_gids=list(sc.supplemental_groups)),
            resources=confinement.resources(config.linux.resources),
            stop_signal=ic.stop_signal, readonly_rootfs=sc.readonly_rootfs, tty=config.tty,
            open_stdin=config.stdin, stdin_once=config.stdin_once,
            log_config=RELAY_BUFFER, security=security,
            # As containerd: the CRI's lists, exactly (the kubelet sends the defaults).
            system_paths=container_pb2.SystemPaths(masked=sc.masked_paths, readonly=sc.readonly_paths))
        log_path = ""
        if pod.log_directory and config.log_path:
            log_path = os.path.join(pod.log_directory, config.log_path)
        snapshot = await self._image.PrepareSnapshot(image_pb2.PrepareSnapshotRequest(
            key=cid, image=image.id, labels={CONTAINER_LABEL: cid}))
        try:
            spec.rootfs.extend(snapshot.mounts)
            await self._container.CreateContainer(container_pb2.CreateContainerRequest(
                id=cid, name=convert.container_name(config.metadata, pod.metadata) or cid,
                labels={CONTAINER_LABEL: cid, SANDBOX_LABEL: sandbox.id}, spec=spec))
        except BaseException:
            await _quietly(self._image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=cid)))
            raise
        self._store.put_container(ContainerRecord(
            id=cid, sandbox_id=sandbox.id, config=config.SerializeToString(deterministic=True),
            image_id=image.id, created_ns=time.time_ns(), log_path=log_path))
        log.info("container_created", container_id=cid, sandbox_id=sandbox.id, name=config.metadata.name)
        return cid

    async def _target(self, ns: cri.NamespaceOption) -> str:
        """The full id of the container a TARGET pid namespace names ("" for other modes)."""
        if ns.pid != cri.TARGET:
            return ""
        if not ns.target_id:
            raise errors.InvalidArgument("security_context.namespace_options.target_id is empty")
        target = self._store.container(ns.target_id)
        c = await self._node(target.id)
        if c is None or c.status != container_pb2.STATUS_RUNNING:
            raise errors.FailedPrecondition(f"target container {target.id} of the pid namespace is not running")
        return target.id

    async def start(self, ref: str) -> None:
        record = self._store.container(ref)
        self._relays.open(record.id, record.log_path)
        try:
            await self._container.StartContainer(container_pb2.StartContainerRequest(id=record.id))
        except BaseException:
            self._relays.discard(record.id)
            raise
        self._relays.follow(record.id)
        log.info("container_started", container_id=record.id)

    async def stop(self, ref: str, timeout: int) -> None:
        try:
            record = self._store.container(ref)
        except errors.NotFound:
            return
        try:
            await self._container.StopContainer(
                container_pb2.StopContainerRequest(id=record.id, timeout_seconds=max(0, timeout)))
        except errors.NotFound:
            pass

    async def remove(self, ref: str) -> None:
        try:
            record = self._store.container(ref)
        except errors.NotFound:
            return  # CRI: removing what is gone is not an error.
        await self._remove(record)

    async def _remove(self, record: ContainerRecord) -> None:
        try:
            await self._container.RemoveContainer(
                container_pb2.RemoveContainerRequest(id=record.id, force=True))
        except errors.NotFound:
            pass
        await self._relays.drained(record.id, LOG_DRAIN_WAIT)
        await _quietly(self._image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=record.id)))
        self._store.delete_container(record.id)
        log.info("container_removed", container_id=record.id)

    async def stop_all(self, sandbox_id: str) -> None:
        await asyncio.gather(*(self.stop(r.id, 0) for r in self._store.containers(sandbox_id)))

    async def remove_all(self, sandbox_id: str) -> None:
        await asyncio.gather(*(self._remove(r) for r in self._store.containers(sandbox_id)))

    def resume_logs(self, running: set[str]) -> None:
        """After a restart of the CRI service: the relays of the containers that still run."""
        for record in self._store.containers():
            if record.id in running and record.log_path:
                try:
                    self._relays.open(record.id, record.log_path)
                except errors.InvalidArgument as exc:
                    log.warning("log_relay_not_resumed", container_id=record.id, error=exc.message)
                    continue
                self._relays.follow(record.id, resume=True)

    # -- status, list, stats -----------------------------------------------------------

    async def _node(self, cid: str) -> container_pb2.Container | None:
        try:
            return (await self._container.GetContainer(container_pb2.GetContainerRequest(id=cid))).container
        except errors.NotFound:
            return None

    async def status(self, ref: str, verbose: bool) -> cri.ContainerStatusResponse:
        record = self._store.container(ref)
        c = await self._node(record.id)
        if c is not None and c.status == container_pb2.STATUS_STOPPED:
            # EXITED only once the log file holds everything the container wrote.
            await self._relays.drained(record.id, LOG_DRAIN_WAIT)
        config = cri.ContainerConfig.FromString(record.config)
        state = _state(c)
        status = cri.ContainerStatus(
            id=record.id, metadata=config.metadata, state=state, created_at=record.created_ns,
            image=cri.ImageSpec(image=config.image.image), image_ref=record.image_id,
            labels=config.labels, annotations=config.annotations, mounts=config.mounts,
            log_path=record.log_path)
        if c is not None:
            if c.HasField("started_at"):
                status.started_at = c.started_at.seconds * 1_000_000_000 + c.started_at.nanos
            if state == cri.CONTAINER_EXITED:
                if c.HasField("finished_at"):
                    status.finished_at = c.finished_at.seconds * 1_000_000_000 + c.finished_at.nanos
                status.exit_code = c.exit_code
                status.reason = "OOMKilled" if c.oom_killed else (
                    "Completed" if c.exit_code == 0 else "Error")
                status.message = c.note
            r = c.spec.resources
            status.resources.linux.CopyFrom(cri.LinuxContainerResources(
                memory_limit_in_bytes=r.memory_bytes, cpu_shares=r.cpu_shares,
                cpu_period=confinement.CPU_PERIOD if r.nano_cpus else 0,
                cpu_quota=r.nano_cpus * confinement.CPU_PERIOD // 1_000_000_000,
                cpuset_cpus=r.cpuset_cpus, cpuset_mems=r.cpuset_mems,
                memory_swap_limit_in_bytes=r.memory_swap, oom_score_adj=c.spec.security.oom_score_adj))
        else:
            status.reason = "Unknown"
            status.message = "the container service no longer has this container"
        info = {}
        if verbose and c is not None:
            info["info"] = convert.json_info({"pid": c.pid, "sandbox_id": record.sandbox_id,
                                              "args": list(c.spec.process.args)})
        return cri.ContainerStatusResponse(status=status, info=info)

    async def list(self, flt: cri.ContainerFilter | None) -> list[cri.Container]:
        records = self._store.containers()
        nodes = {c.id: c for c in (await self._container.ListContainers(
            container_pb2.ListContainersRequest())).containers if c.labels.get(CONTAINER_LABEL)}
        out = []
        for record in records:
            config = cri.ContainerConfig.FromString(record.config)
            state = _state(nodes.get(record.id))
            if flt is not None:
                if flt.id and not record.id.startswith(flt.id):
                    continue
                if flt.pod_sandbox_id and not record.sandbox_id.startswith(flt.pod_sandbox_id):
                    continue
                if flt.HasField("state") and flt.state.state != state:
                    continue
                if not convert.labels_match(config.labels, flt.label_selector):
                    continue
            out.append(cri.Container(
                id=record.id, pod_sandbox_id=record.sandbox_id, metadata=config.metadata,
                image=cri.ImageSpec(image=config.image.image), image_ref=record.image_id, state=state,
                created_at=record.created_ns, labels=config.labels, annotations=config.annotations))
        return out

    async def stats(self, ref: str) -> cri.ContainerStats:
        record = self._store.container(ref)
        return await self._stats(record, await self._layer_sizes())

    async def _layer_sizes(self) -> dict[str, int]:
        """Bytes in each container's writable layer (the image service's snapshot usage)."""
        usage = await self._image.GetDiskUsage(image_pb2.GetDiskUsageRequest())
        return {s.key: s.size for s in usage.snapshots}

    async def _stats(self, record: ContainerRecord, layers: dict[str, int]) -> cri.ContainerStats:
        config = cri.ContainerConfig.FromString(record.config)
        out = cri.ContainerStats(attributes=cri.ContainerAttributes(
            id=record.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations))
        sample = None
        try:
            async for reply in self._container.GetContainerStats(
                    container_pb2.GetContainerStatsRequest(id=record.id)):
                sample = reply
                break
        except (errors.NotFound, errors.FailedPrecondition):
            pass
        now = time.time_ns()
        if sample is not None:
            ts = sample.time.seconds * 1_000_000_000 + sample.time.nanos or now
            out.cpu.timestamp = ts
            out.cpu.usage_core_nano_seconds.value = sample.cpu_usage_ns
            out.memory.timestamp = ts
            out.memory.usage_bytes.value = sample.memory_usage
            out.memory.working_set_bytes.value = max(0, sample.memory_usage - sample.memory_cache)
            if sample.memory_limit:
                out.memory.available_bytes.value = max(0, sample.memory_limit - sample.memory_usage)
        else:
            # Not running: a sample of nothing, stamped now, as containerd reports one.
            out.cpu.timestamp = now
            out.memory.timestamp = now
        if record.id in layers:
            # On the image service's filesystem: the fs_id ImageFsInfo reports.
            out.writable_layer.timestamp = now
            out.writable_layer.fs_id.mountpoint = self._image_root
            out.writable_layer.used_bytes.value = layers[record.id]
        return out

    async def list_stats(self, flt: cri.ContainerStatsFilter | None) -> list[cri.ContainerStats]:
        records = []
        for record in self._store.containers():
            config = cri.ContainerConfig.FromString(record.config)
            if flt is not None:
                if flt.id and not record.id.startswith(flt.id):
                    continue
                if flt.pod_sandbox_id and not record.sandbox_id.startswith(flt.pod_sandbox_id):
                    continue
                if not convert.labels_match(config.labels, flt.label_selector):
                    continue
            records.append(record)
        layers = await self._layer_sizes() if records else {}
        return list(await asyncio.gather(*(self._stats(r, layers) for r in records)))

    async def update_resources(self, ref: str, resources: cri.LinuxContainerResources) -> None:
        record = self._store.container(ref)
        c = await self._node(record.id)
        if c is None:
            raise errors.NotFound(f"container {record.id} is gone from the container service")
        await self._container.UpdateContainerResources(container_pb2.UpdateContainerResourcesRequest(
            id=record.id, resources=confinement.update_resources(resources, c.spec),
            update_mask=field_mask_pb2.FieldMask(paths=["memory_bytes", "cpu_shares", "nano_cpus"])))

    def reopen_log(self, ref: str) -> None:
        record = self._store.container(ref)
        if not record.log_path:
            raise errors.FailedPrecondition(f"container {record.id} has no log path")
        self._relays.reopen(record.id)

    # -- exec ------------------------------------------------------------------------

    async def exec_sync(self, ref: str, cmd: list[str], timeout: int) -> cri.ExecSyncResponse:
        record = self._store.container(ref)
        if not cmd:
            raise errors.InvalidArgument("exec command is empty")
        exec_id = secrets.token_hex(32)
        start = container_pb2.ExecProcessRequest(start=container_pb2.ExecStart(
            container_id=record.id, exec_id=exec_id, process=container_pb2.Process(args=cmd)))
        pid = 0
        out, err = bytearray(), bytearray()
        code = None

        async def requests():
            yield start

        async def run():
            nonlocal pid, code
            async for reply in self._container.ExecProcess(requests()):
                kind = reply.WhichOneof("msg")
                if kind == "started":
                    pid = reply.started
                elif kind == "output":
                    (err if reply.output.stream == 2 else out).extend(reply.output.data)
                elif kind == "exit_code":
                    code = reply.exit_code

        task = asyncio.ensure_future(run())
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout if timeout > 0 else None)
        except asyncio.TimeoutError:
            _kill_tree(pid)
            try:
                await asyncio.wait_for(task, 10)
            except (asyncio.TimeoutError, errors.BerthError):
                task.cancel()
            raise errors.DeadlineExceeded(
                f"command {cmd!r} timed out after {timeout}s and was killed") from None
        if code is None:
            raise errors.Unavailable(f"exec in container {record.id} ended without an exit code")
        return cri.ExecSyncResponse(stdout=bytes(out), stderr=bytes(err), exit_code=code)

    def record(self, ref: str) -> ContainerRecord:
        return self._store.container(ref)


def check_config(config: cri.ContainerConfig) -> None:
    """Refuse, by name, what the container service's Spec has no place for (the security
    context's confinement is confinement.py's)."""
    sc = config.linux.security_context
    if sc.HasField("run_as_group") and not sc.HasField("run_as_user") and not sc.run_as_username:
        raise errors.InvalidArgument("security_context.run_as_group needs run_as_user or run_as_username")
    unsupported = []
    if any((sc.selinux_options.user, sc.selinux_options.role, sc.selinux_options.type,
            sc.selinux_options.level)):
        unsupported.append("security_context.selinux_options")
    if sc.namespace_options.network not in (cri.POD, cri.NODE):
        unsupported.append("security_context.namespace_options.network (only POD or NODE)")
    for m in config.mounts:
        if m.selinux_relabel and SELINUX:
            unsupported.append("mounts.selinux_relabel (SELinux labels)")
        if not os.path.isabs(m.container_path) or not os.path.isabs(m.host_path):
            raise errors.InvalidArgument(
                f"mount paths must be absolute: {m.host_path!r} -> {m.container_path!r}")
    if config.HasField("windows"):
        unsupported.append("windows")
    if unsupported:
        raise errors.InvalidArgument(
            "not supported by this node's container service: " + ", ".join(unsupported))


def _args(entrypoint: list[str], cmd: list[str], command: list[str], args: list[str]) -> list[str]:
    """Kubernetes' rule: command replaces the entrypoint (and drops the image's cmd), args the cmd."""
    if command:
        return command + args
    return entrypoint + (args or cmd)


def _env(image_env: list[str], envs) -> list[str]:
    merged = dict(e.split("=", 1) if "=" in e else (e, "") for e in image_env)
    for kv in envs:
        merged[kv.key] = kv.value
    return [f"{k}={v}" for k, v in merged.items()]


def _state(c: container_pb2.Container | None) -> int:
    if c is None:
        return cri.CONTAINER_UNKNOWN
    return {container_pb2.STATUS_CREATED: cri.CONTAINER_CREATED,
            container_pb2.STATUS_RUNNING: cri.CONTAINER_RUNNING,
            container_pb2.STATUS_PAUSED: cri.CONTAINER_RUNNING,
            container_pb2.STATUS_STOPPED: cri.CONTAINER_EXITED}.get(c.status, cri.CONTAINER_UNKNOWN)


def _kill_tree(pid: int) -> None:
    """SIGKILL an exec's process and everything it started (an ExecSync that timed out)."""
    if not pid:
        return
    pending, seen = [pid], []
    while pending:
        p = pending.pop()
        seen.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pending.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    for p in seen:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def _quietly(call) -> None:
    try:
        await call
    except errors.BerthError as exc:
        log.warning("cleanup_failed", error=exc.message)
