"""Pod sandboxes: a pod's network namespace, its sandbox container, and their life.

A sandbox is made of three things from the node services, made in this order
and undone in the reverse order when a step fails:

    1. a snapshot of the sandbox image (pause) from the image service,
       labelled with the sandbox id (reconcile.py finds orphans by it);
    2. an endpoint on the "bridge" network (or the host's network) from the
       network service, keyed by the sandbox id: the pod's network namespace,
       its IP, its published ports, /etc/hosts and /etc/resolv.conf;
    3. the sandbox container, running the image's command in that namespace,
       whose pid, ipc and uts namespaces the pod's containers join (as
       containerd's CRI plugin does with its pause container).

The row in the CRI store is written once all three exist. StopPodSandbox
stops every container of the pod and the sandbox container and gives the
network back; RemovePodSandbox removes them all.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import time

import structlog

from berth.container.v1 import container_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from berth.types.v1 import mount_pb2, port_pb2
from k8s.cri.runtime.v1 import api_pb2 as cri
from services.common import errors
from services.cri import confinement, convert
from services.cri.store import NOTREADY, READY, SandboxNetwork, SandboxRecord, Store

log = structlog.get_logger(__name__)

SANDBOX_LABEL = "io.berth.cri.sandbox"
PROTOCOLS = {cri.TCP: "tcp", cri.UDP: "udp"}


class Sandboxes:
    def __init__(self, store: Store, image, network, container, state_dir: str, sandbox_image: str):
        self._store = store
        self._image = image
        self._network = network
        self._container = container
        self._state_dir = state_dir
        self._sandbox_image = sandbox_image
        self._locks: dict[str, asyncio.Lock] = {}
        # Set by the wiring: stops and removes the containers of a sandbox.
        self.containers = None

    def lock(self, id: str) -> asyncio.Lock:
        return self._locks.setdefault(id, asyncio.Lock())

    # -- run -----------------------------------------------------------------------

    async def run(self, config: cri.PodSandboxConfig, runtime_handler: str) -> str:
        check_config(config, runtime_handler)
        name = convert.sandbox_name(config.metadata)
        # One RunPodSandbox per pod name at a time: the name is checked, then taken, below.
        lock = self.lock(f"name:{name}")
        async with lock:
            sid = await self._run(config, name)
        if not lock.locked():
            self._locks.pop(f"name:{name}", None)
        return sid

    async def _run(self, config: cri.PodSandboxConfig, name: str) -> str:
        for other in self._store.sandboxes():
            if convert.sandbox_name(_config(other).metadata) == name:
                raise errors.AlreadyExists(
                    f"pod sandbox {name!r} already exists as {other.id}; remove it first")
        image_id, image_config = await self._sandbox_image_config()
        sid = secrets.token_hex(32)
        ns = config.linux.security_context.namespace_options
        host_network = ns.network == cri.NODE
        undo = []
        try:
            # The labelled snapshot first: after a crash it is what marks the rest as ours.
            snapshot = await self._image.PrepareSnapshot(image_pb2.PrepareSnapshotRequest(
                key=sid, image=image_id, labels={SANDBOX_LABEL: sid}))
            undo.append(lambda: self._image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=sid)))
            endpoint = (await self._network.CreateEndpoint(network_pb2.CreateEndpointRequest(
                container_id=sid, network="host" if host_network else "bridge",
                name=convert.valid_name(config.metadata.name) or sid[:12],
                hostname=config.hostname or config.metadata.name,
                ports=[] if host_network else [_port(p) for p in config.port_mappings]))).endpoint
            undo.append(lambda: self._network.DeleteEndpoint(
                network_pb2.DeleteEndpointRequest(container_id=sid)))
            mounts = self._pod_files(sid, config, endpoint)
            args = list(image_config.entrypoint) + list(image_config.cmd)
            if not args:
                raise errors.FailedPrecondition(f"sandbox image {self._sandbox_image} has no command")
            spec = container_pb2.Spec(
                rootfs=snapshot.mounts, netns_path=endpoint.netns_path,
                hostname="" if host_network else (config.hostname or config.metadata.name)[:63],
                process=container_pb2.Process(
                    args=args, env=list(image_config.env), cwd=image_config.working_dir or "/",
                    user=convert.user_of(config.linux.security_context, image_config.user),
                    additional_gids=list(config.linux.security_context.supplemental_groups)),
                readonly_rootfs=config.linux.security_context.readonly_rootfs,
                log_config=container_pb2.LogConfig(driver="none"),
                security=confinement.sandbox_security(config))
            await self._container.CreateContainer(container_pb2.CreateContainerRequest(
                id=sid, name=f"k8s_POD_{name}_{sid[:8]}", labels={SANDBOX_LABEL: sid}, spec=spec))
            undo.append(lambda: self._container.RemoveContainer(
                container_pb2.RemoveContainerRequest(id=sid, force=True)))
            await self._container.StartContainer(container_pb2.StartContainerRequest(id=sid))
            record = SandboxRecord(
                id=sid, config=config.SerializeToString(deterministic=True), state=READY,
                created_ns=time.time_ns(),
                network=SandboxNetwork(
                    netns_path=endpoint.netns_path,
                    ip="" if host_network else next(
                        (a.ipv4_address for a in endpoint.attachments if a.ipv4_address), ""),
                    mounts=tuple(mounts),
                    ports=tuple((p.protocol or "tcp", p.host_ip, p.host_port, p.container_port)
                                for p in endpoint.ports)))
            self._store.put_sandbox(record)
        except BaseException:
            for step in reversed(undo):
                try:
                    await step()
                except errors.BerthError as exc:
                    log.warning("sandbox_undo_failed", sandbox_id=sid, error=exc.message)
            _remove_files(self._files_dir(sid))
            raise
        log.info("sandbox_ready", sandbox_id=sid, name=name, ip=record.network.ip)
        return sid

    async def _sandbox_image_config(self):
        ref = self._sandbox_image
        try:
            image = (await self._image.GetImage(image_pb2.GetImageRequest(reference=ref))).image
        except errors.NotFound:
            async for _ in self._image.PullImage(image_pb2.PullImageRequest(reference=ref)):
                pass
            image = (await self._image.GetImage(image_pb2.GetImageRequest(reference=ref))).image
        return image.id, image.config

    def _files_dir(self, sid: str) -> str:
        return os.path.join(self._state_dir, "sandboxes", sid)

    def _pod_files(self, sid: str, config: cri.PodSandboxConfig, endpoint) -> list[tuple[str, str]]:
        """The binds every container of the pod gets: hosts and resolv.conf (the pod's DNS
        config when it has one, else the network service's), and the pod's hostname."""
        d = self._files_dir(sid)
        os.makedirs(d, mode=0o755, exist_ok=True)
        mounts = [(m.source, m.target) for m in endpoint.mounts
                  if not (m.target == "/etc/resolv.conf" and _has_dns(config))]
        if _has_dns(config):
            path = os.path.join(d, "resolv.conf")
            with open(path, "w") as f:
                f.write(convert.resolv_conf(config.dns_config))
            mounts.append((path, "/etc/resolv.conf"))
        if config.linux.security_context.namespace_options.network != cri.NODE:
            path = os.path.join(d, "hostname")
            with open(path, "w") as f:
                f.write((config.hostname or config.metadata.name)[:63] + "\n")
            mounts.append((path, "/etc/hostname"))
        return mounts

    # -- stop and remove -----------------------------------------------------------

    async def stop(self, ref: str) -> None:
        try:
            record = self._store.sandbox(ref)
        except errors.NotFound:
            return  # CRI: stopping what is gone is not an error.
        async with self.lock(record.id):
            await self.containers.stop_all(record.id)
            try:
                # The sandbox container holds namespaces and nothing else: killed, as containerd does.
                await self._container.StopContainer(
                    container_pb2.StopContainerRequest(id=record.id, timeout_seconds=0, signal="SIGKILL"))
            except errors.NotFound:
                pass
            try:
                await self._network.DeleteEndpoint(network_pb2.DeleteEndpointRequest(container_id=record.id))
            except errors.NotFound:
                pass
            if record.state != NOTREADY:
                self._store.put_sandbox(record.replace(state=NOTREADY))
        log.info("sandbox_stopped", sandbox_id=record.id)

    async def remove(self, ref: str) -> None:
        try:
            record = self._store.sandbox(ref)
        except errors.NotFound:
            return
        async with self.lock(record.id):
            await self.containers.remove_all(record.id)
            for step in (
                lambda: self._container.RemoveContainer(
                    container_pb2.RemoveContainerRequest(id=record.id, force=True)),
                lambda: self._network.DeleteEndpoint(
                    network_pb2.DeleteEndpointRequest(container_id=record.id)),
                lambda: self._image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=record.id)),
            ):
                try:
                    await step()
                except errors.NotFound:
                    pass
            _remove_files(self._files_dir(record.id))
            self._store.delete_sandbox(record.id)
        self._locks.pop(record.id, None)
        log.info("sandbox_removed", sandbox_id=record.id)

    # -- status and list -----------------------------------------------------------

    def get(self, ref: str) -> SandboxRecord:
        return self._store.sandbox(ref)

    def ready(self, ref: str) -> SandboxRecord:
        record = self._store.sandbox(ref)
        if record.state != READY:
            raise errors.FailedPrecondition(f"pod sandbox {record.id} is not ready (stopped)")
        return record

    async def sandbox_pid(self, record: SandboxRecord) -> int:
        """The sandbox container's host pid (whose namespaces the pod's containers join)."""
        c = (await self._container.GetContainer(container_pb2.GetContainerRequest(id=record.id))).container
        if c.status != container_pb2.STATUS_RUNNING or not c.pid:
            raise errors.FailedPrecondition(f"pod sandbox {record.id} has no running sandbox container")
        return c.pid

    async def status(self, ref: str, verbose: bool) -> cri.PodSandboxStatusResponse:
        record = self._store.sandbox(ref)
        config = _config(record)
        status = cri.PodSandboxStatus(
            id=record.id, metadata=config.metadata, state=_state(record), created_at=record.created_ns,
            network=cri.PodSandboxNetworkStatus(ip=record.network.ip),
            linux=cri.LinuxPodSandboxStatus(namespaces=cri.Namespace(
                options=config.linux.security_context.namespace_options)),
            labels=config.labels, annotations=config.annotations)
        info = {}
        if verbose:
            info["info"] = convert.json_info({"netns_path": record.network.netns_path,
                                              "ports": record.network.ports,
                                              "sandbox_image": self._sandbox_image})
        return cri.PodSandboxStatusResponse(status=status, info=info)

    def list(self, flt: cri.PodSandboxFilter | None) -> list[cri.PodSandbox]:
        out = []
        for record in self._store.sandboxes():
            config = _config(record)
            if flt is not None:
                if flt.id and not record.id.startswith(flt.id):
                    continue
                if flt.HasField("state") and flt.state.state != _state(record):
                    continue
                if not convert.labels_match(config.labels, flt.label_selector):
                    continue
            out.append(cri.PodSandbox(id=record.id, metadata=config.metadata, state=_state(record),
                                      created_at=record.created_ns, labels=config.labels,
                                      annotations=config.annotations))
        return out

    def config(self, record: SandboxRecord) -> cri.PodSandboxConfig:
        return _config(record)


def check_config(config: cri.PodSandboxConfig, runtime_handler: str) -> None:
    """Refuse, by name, what a sandbox of this node cannot honour."""
    if not config.metadata.name or not config.metadata.namespace or not config.metadata.uid:
        raise errors.InvalidArgument("pod sandbox metadata needs name, namespace and uid")
    if runtime_handler and runtime_handler != "runc":
        raise errors.InvalidArgument(f"runtime handler {runtime_handler!r} is not known (only runc)")
    sc = config.linux.security_context
    if sc.HasField("selinux_options") and any((sc.selinux_options.user, sc.selinux_options.role,
                                               sc.selinux_options.type, sc.selinux_options.level)):
        raise errors.InvalidArgument("selinux_options are not supported: this node has no SELinux")
    if sc.namespace_options.HasField("userns_options") and \
            sc.namespace_options.userns_options.mode not in (cri.NODE,):
        raise errors.InvalidArgument("user namespaces for pods are not supported")
    if sc.namespace_options.pid == cri.TARGET or sc.namespace_options.ipc == cri.TARGET:
        raise errors.InvalidArgument("namespace mode TARGET is for containers, not pod sandboxes")
    if config.HasField("windows"):
        raise errors.InvalidArgument("windows sandbox config given to a Linux node")
    # linux.overhead and linux.resources are sizing hints for VM runtimes: informational here.
    if config.linux.cgroup_parent:
        raise errors.InvalidArgument(
            f"cgroup_parent {config.linux.cgroup_parent!r} is not supported: "
            "this node places each container in its own cgroup")
    for p in config.port_mappings:
        if p.protocol not in PROTOCOLS:
            raise errors.InvalidArgument(
                f"port mapping protocol {cri.Protocol.Name(p.protocol)} is not supported")
        if not 0 < p.container_port < 65536:
            raise errors.InvalidArgument(f"port mapping container_port {p.container_port} is out of range")


def _port(p: cri.PortMapping) -> port_pb2.PortBinding:
    return port_pb2.PortBinding(protocol=PROTOCOLS[p.protocol], host_ip=p.host_ip,
                                host_port=p.host_port, container_port=p.container_port)


def _has_dns(config: cri.PodSandboxConfig) -> bool:
    d = config.dns_config
    return bool(d.servers or d.searches or d.options)


def _config(record: SandboxRecord) -> cri.PodSandboxConfig:
    return cri.PodSandboxConfig.FromString(record.config)


def _state(record: SandboxRecord) -> int:
    return cri.SANDBOX_READY if record.state == READY else cri.SANDBOX_NOTREADY


def _remove_files(d: str) -> None:
    shutil.rmtree(d, ignore_errors=True)


def bind(source: str, target: str, readonly: bool = False) -> mount_pb2.Mount:
    """A bind mount for the container service (the pod's files, the CRI's mounts)."""
    return mount_pb2.Mount(type="bind", source=source, target=target,
                           options=["rbind", "ro" if readonly else "rw", "rprivate"])
