"""Containers: the Engine API's containers, made from the node services.

A container is made in steps, each on another service:

    GetImage(ref)                        image:     what to run and how
    PrepareSnapshot(cid) || Attach(cid)  image, network (independent: run concurrently)
    store.put(record)                    gateway:   the public API's record (the commit point)
    Create(cid, spec)                    container: record + runtime create
    Start(cid)                           container

When a step fails, the steps before it are undone in reverse order and the
original error is what the caller sees, so a failed `run` leaves nothing behind.
Events are published only after the step they report succeeded; start and die
come from the container service's ordered task events (backends/task_events.py),
and a call that reports them (run, start, stop) answers once they were published.

Also here: what is done to an existing container (pause, top, stats, update, cp,
export, rename, commit, diff, prune) — each a container service call with the
gateway's names, records and events around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal as signal_mod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import structlog
from google.protobuf import field_mask_pb2

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from berth.types.v1 import file_change_pb2
from berth.types.v1 import healthcheck_pb2
from berth.types.v1 import mount_pb2
from berth.types.v1 import stdio_pb2
from services.common import bulk, errors
from services.gateway import confinement, convert, names
from services.gateway import links as links_mod
from services.gateway import networks as networks_mod
from services.gateway import volumes as volumes_mod
from services.gateway.backends import restarts as restarts_mod
from services.gateway.store import ContainerRecord

log = structlog.get_logger(__name__)

# After the process exited, how long its log stream may take to deliver the rest.
LOG_DRAIN_SECONDS = 2.0
# Every filter docker documents for GET /containers/json (before/since: the route).
_LIST_FILTERS = ("id", "name", "label", "status", "ancestor", "exited", "health", "network", "publish",
                 "expose", "volume", "is-task", "isolation")
WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
# Stats: the pause between the two samples a single (--no-stream) figure needs.
STATS_PREREAD = 0.5
STATS_INTERVAL_MS = 1000

_RUNNING = (container_pb2.STATUS_RUNNING, container_pb2.STATUS_PAUSED)


def record_from_metadata(c: container_pb2.Container) -> ContainerRecord:
    """A container made before the gateway had a store: its record was JSON in the container
    service's opaque metadata (convert.Metadata). Read for the migration only."""
    meta = convert.Metadata.decode(c.metadata)
    return ContainerRecord(
        id=c.id, name=convert.display_name(c.name), image=meta.image, image_id=meta.image_id,
        config=meta.config, network_mode=meta.network_mode, auto_remove=meta.auto_remove,
        stop_timeout=meta.stop_timeout, mounts=meta.mounts, restart_count=meta.restart_count,
        manually_stopped=meta.manually_stopped)


# Files the engine makes in every container's writable layer, as mount points for what the
# network service writes: docker keeps them in an init layer, so `diff` never shows them.
ENGINE_FILES = frozenset({"/etc/hosts", "/etc/resolv.conf", "/etc/hostname"})


def without_engine_files(changes):
    """`changes` without the engine's own files, nor their directory when nothing else in it changed."""
    kept = [ch for ch in changes if ch.path not in ENGINE_FILES]
    dirs = {os.path.dirname(p) for p in ENGINE_FILES}
    return [ch for ch in kept
            if not (ch.path in dirs and ch.kind == "C" and not any(c.path.startswith(ch.path + "/") for c in kept))]


class Containers:
    """`image`, `network`, `container` are node clients; `store` the GatewayStore; `events`
    the EventLog; `image_configs` the ImageConfigs; `mounter` the volumes.Mounter;
    `restarts` the restart manager, `health` the healthcheck monitors, `task_events` the
    follower of the container service's events; `spawn` runs a task the gateway owns."""

    def __init__(self, image, network, container, store, events, image_configs, mounter,
                 restarts, health, task_events, spawn: Callable[[Awaitable], asyncio.Task],
                 probes: bool):
        self._image = image
        self._network = network
        self._container = container
        self._store = store
        self._events = events
        self._image_configs = image_configs
        self._mounter = mounter
        self._restarts = restarts
        self._health = health
        self._task_events = task_events
        self._spawn = spawn
        # Probes run as execs: without exec in the container contract there are none.
        self._probes = probes
        # Attached `run --rm`: the run removes it itself once it has the exit status.
        self._attached: set[str] = set()
        self._removing: set[str] = set()
        # Rows written, Create not answered yet: a listing does not show them yet.
        self._creating: set[str] = set()
        self._port_locks: dict[str, asyncio.Lock] = {}

    # -- records and events ---------------------------------------------------------------

    def attributes(self, cid: str) -> dict[str, str]:
        """The container's labels, name and image, as every container event carries them (and
        `/events?filters={"label":...}`, which compose's `logs` sends, matches)."""
        record = self._store.get(cid)
        if record is None:
            return {"name": "", "image": ""}
        return {**record.config.labels, "name": record.name, "image": record.image}

    def publish(self, action: str, cid: str, **attributes: str) -> None:
        self._events.publish("container", action, cid, {**self.attributes(cid), **attributes})

    def record_of(self, c: container_pb2.Container) -> ContainerRecord:
        record = self._store.get(c.id)
        if record is None:
            record = record_from_metadata(c)
            if c.metadata:
                # Made before the store existed: imported once. Without metadata it is
                # one being removed right now (or not the API's): nothing to keep.
                self._store.put(record)
        return record

    async def get(self, ref: str) -> container_pb2.Container:
        try:
            return (await self._container.GetContainer(container_pb2.GetContainerRequest(id=ref))).container
        except errors.NotFound:
            raise errors.NotFound(f"No such container: {ref}") from None

    async def resolve_id(self, ref: str) -> str:
        return (await self.get(ref)).id

    async def record(self, ref: str) -> tuple[container_pb2.Container, ContainerRecord]:
        c = await self.get(ref)
        return c, self.record_of(c)

    async def image_usage(self) -> dict[str, int]:
        """Containers per image id, for images ls and prune."""
        counts: dict[str, int] = {}
        for record in self._store.all():
            counts[record.image_id] = counts.get(record.image_id, 0) + 1
        return counts

    def busy(self, cid: str) -> bool:
        """Being removed: the restart policy leaves it alone."""
        return cid in self._removing

    # -- create and run -----------------------------------------------------------------

    async def create(self, cfg: engine_pb2.ContainerConfig) -> str:
        return (await self._create(cfg)).id

    async def run(self, cfg: engine_pb2.ContainerConfig, attach: bool) -> AsyncIterator[
            engine_pb2.RunContainerResponse]:
        record = await self._create(cfg)
        cid = record.id
        if not attach:
            try:
                await self._start(cid)
            except BaseException:
                await self._undo_container(cid, published=True)
                raise
            yield engine_pb2.RunContainerResponse(id=cid)
            return
        if record.auto_remove:
            self.attached(cid)
        # Attached before the process starts: its output from the first byte, from its
        # stdio (not its log), with back-pressure all the way to this stream's reader.
        output = self.stdio(cid)
        try:
            await anext(output)  # "attached"
            await self._start(cid)
        except BaseException:
            self._attached.discard(cid)
            await output.aclose()
            await self._undo_container(cid, published=True)
            raise
        finished = False
        try:
            yield engine_pb2.RunContainerResponse(id=cid)
            status = None
            async for reply in output:
                kind = reply.WhichOneof("msg")
                if kind == "output":
                    yield engine_pb2.RunContainerResponse(output=reply.output)
                elif kind == "exit":
                    status = _exit_status(reply.exit)
            if status is None:
                # The stream was cut short (its monitor died): the exit as recorded.
                status = await self.wait(cid)
            if record.auto_remove:
                await self.remove_quietly(cid)
            finished = True
            yield engine_pb2.RunContainerResponse(exit=status)
        finally:
            await output.aclose()
            if record.auto_remove:
                self.detached(cid, remove_at_exit=not finished)

    async def stdio(self, cid: str, requests: AsyncIterator[container_pb2.AttachContainerRequest] | None = None,
                    stdin: bool = False, size: stdio_pb2.TerminalSize | None = None,
                    next_run: bool = False) -> AsyncIterator[container_pb2.AttachContainerResponse]:
        """The container's own stdio, from the container service (conmon's attach socket):
        `attached`, then its output as written, then `exit` after the last byte.

        Nothing is buffered here: each reply is asked for when the last one was taken,
        so a reader that stalls stalls the container's writes, and loses nothing.
        `requests` (stdin, resize, close_stdin) follow the start message; `next_run`
        attaches a stopped container to its next start (docker's start -a)."""
        async def node_requests():
            yield container_pb2.AttachContainerRequest(start=container_pb2.AttachStart(
                container_id=cid, stdin=stdin, size=size, next_run=next_run))
            if requests is not None:
                async for request in requests:
                    yield request

        async for reply in self._container.AttachContainer(node_requests()):
            yield reply

    def attached(self, cid: str) -> None:
        """An attach session that will remove this --rm container itself when it ends."""
        self._attached.add(cid)

    def detached(self, cid: str, remove_at_exit: bool) -> None:
        """The attach session ended; if it did not remove the container (the client went
        away), it lives on as a detached --rm one, removed at its exit."""
        self._attached.discard(cid)
        if remove_at_exit:
            self._spawn(self._remove_when_exited(cid))

    async def _start(self, cid: str) -> None:
        mark = self._task_events.mark(cid)
        # Host ports are bound while the container runs, as docker binds them: a start
        # finds them taken ("port is already allocated") or binds them, then runs.
        if not self._publishes(cid):
            await self._container.StartContainer(container_pb2.StartContainerRequest(id=cid))
        else:
            async with self._ports_lock(cid):
                await self._network.PublishPorts(network_pb2.PublishPortsRequest(container_id=cid))
                try:
                    await self._container.StartContainer(container_pb2.StartContainerRequest(id=cid))
                except BaseException:
                    await _quietly("unpublish_ports", self._network.UnpublishPorts(
                        network_pb2.UnpublishPortsRequest(container_id=cid)))
                    raise
        # "start" comes from the container service's stream; answer once it is published.
        await self._task_events.wait(cid, "start", mark)

    async def _create(self, cfg: engine_pb2.ContainerConfig) -> ContainerRecord:
        if cfg.name and not convert.valid_name(cfg.name):
            raise errors.InvalidArgument(
                f"Invalid container name ({cfg.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if not cfg.image:
            raise errors.InvalidArgument("no image specified")
        restarts_mod.validate(cfg.restart_policy, cfg.auto_remove)
        if cfg.cgroupns_mode not in ("", "host", "private"):
            raise errors.InvalidArgument(f"invalid cgroup namespace mode: {cfg.cgroupns_mode}")
        # Before anything is made: a bad option or a missing container changes nothing.
        security = await confinement.security(cfg, self.resolve_id)
        image_id, image_config = await self._image_configs.resolve(cfg.image)
        process = convert.resolve_process(image_config, cfg)
        network_mode = cfg.network_mode or networks_mod.DEFAULT_NETWORK
        shared_endpoint = None
        if network_mode.startswith(networks_mod.CONTAINER_MODE):
            # `--network container:<ref>` (compose's `network_mode: service:x`): its namespace.
            target, _ = await self.record(network_mode.removeprefix(networks_mod.CONTAINER_MODE))
            network_mode = networks_mod.CONTAINER_MODE + target.id
            shared_endpoint = await networks_mod.shared_endpoint(self._network, target.id)
        cid = secrets.token_hex(32)
        # The image's EXPOSE is the container's, as docker merges it into Config.ExposedPorts.
        cfg.exposed_ports.extend(p for p in image_config.exposed_ports if p not in cfg.exposed_ports)
        labels = {**image_config.labels, **cfg.labels}
        name = cfg.name or names.generate()
        record = ContainerRecord(
            id=cid, name=name, image=cfg.image, image_id=image_id, config=cfg,
            network_mode=network_mode, auto_remove=cfg.auto_remove,
            stop_timeout=cfg.stop_timeout if cfg.HasField("stop_timeout") else convert.DEFAULT_STOP_TIMEOUT)

        shared = await self._volumes_from(cfg.volumes_from)
        link_env = await self._link_env(name, network_mode, cfg)
        attach = networks_mod.attach_request(cid, name, cfg, image_config)
        snapshot, endpoint = await self._prepare(cid, image_id, network_mode, attach, shared_endpoint)
        # The endpoint's veth is made while the container is (plumb_later): awaited once
        # the container service has the container, before anything can start it.
        plumbed = asyncio.ensure_future(self._network.AwaitEndpoint(
            network_pb2.AwaitEndpointRequest(container_id=cid))) if shared_endpoint is None else None
        try:
            mounts = await self._mounter.resolve(cid, image_id, cfg.mounts, shared, image_config.volumes)
        except BaseException:
            await _settle(plumbed)
            await self._undo_prepare(cid)
            raise
        record = record.replace(mounts=tuple(mounts.points))
        spec = container_pb2.Spec(
            mounts=mounts.mounts,
            rootfs=_rootfs(snapshot.mounts, discarded_at_exit=cfg.auto_remove), netns_path=endpoint.netns_path,
            hostname=confinement.hostname(cfg, cid),
            process=container_pb2.Process(
                args=process.args, env=process.env, cwd=process.cwd, user=process.user),
            resources=confinement.resources(cfg),
            stop_signal=cfg.stop_signal or image_config.stop_signal,
            readonly_rootfs=cfg.readonly_rootfs, tty=cfg.tty, open_stdin=cfg.open_stdin,
            stdin_once=cfg.stdin_once, security=security, runtime=cfg.runtime,
            cgroupns_private=cfg.cgroupns_mode == "private",
            # The container service resolves "" to the daemon's mode and refuses the unknown.
            userns=container_pb2.UserNamespace(mode=cfg.userns_mode), link_env=link_env)
        if cfg.HasField("log_config"):
            # Checked by the container service against its drivers (INVALID_ARGUMENT naming
            # what it does not know); absent takes its daemon default.
            spec.log_config.CopyFrom(container_pb2.LogConfig(
                driver=cfg.log_config.driver, options=cfg.log_config.options))
        # /etc/hosts and /etc/resolv.conf from the network service.
        spec.mounts.extend(endpoint.mounts)
        request = container_pb2.CreateContainerRequest(id=cid, name=name, labels=labels, spec=spec)
        self._creating.add(cid)
        try:
            self._store.put(record)
            try:
                created = (await self._container.CreateContainer(request)).container
            except errors.AlreadyExists:
                if cfg.name:
                    raise
                # A generated name collided: the user asked for no name in particular.
                request.name = names.generate(taken=lambda n: True)
                record = record.replace(name=request.name)
                request.spec.link_env[:] = await self._link_env(request.name, network_mode, cfg)
                self._store.put(record)
                created = (await self._container.CreateContainer(request)).container
            if plumbed is not None:
                try:
                    await plumbed
                except BaseException:
                    await _quietly("delete", self._container.RemoveContainer(
                        container_pb2.RemoveContainerRequest(id=cid, force=True)))
                    raise
        except BaseException:
            await _settle(plumbed)
            self._store.delete(cid)
            await self._mounter.undo(cid, mounts)
            await self._undo_prepare(cid)
            raise
        finally:
            self._creating.discard(cid)
        points = volumes_mod.with_mounted_sources(record.mounts, created.spec.mounts)
        if points != list(record.mounts):
            # A bind source was a symlink: show where it led, as the node resolved it.
            record = record.replace(mounts=tuple(points))
            self._store.put(record)
        self.publish("create", cid)
        log.info("container_created", container_id=cid, name=created.name, image=cfg.image)
        return record

    async def _link_env(self, name: str, network_mode: str, cfg: engine_pb2.ContainerConfig) -> list[str]:
        """The environment of the container's legacy links, which docker gives only on the
        default bridge. Each linked container must be on that network too (docker refuses
        the start otherwise; berth, which fixes the environment at create, refuses the create)."""
        wanted = [links_mod.parse(link) for link in cfg.endpoint_settings.links]
        if network_mode != networks_mod.DEFAULT_NETWORK or not wanted:
            return []
        endpoints = (await self._network.ListEndpoints(network_pb2.ListEndpointsRequest())).endpoints
        addresses = {e.container_id: a.ipv4_address for e in endpoints for a in e.attachments
                     if a.network == networks_mod.DEFAULT_NETWORK}
        env = []
        for target, alias in wanted:
            c, record = await self.record(target)
            if c.id not in addresses:
                raise errors.InvalidArgument(f"cannot link to /{convert.display_name(c.name)} as {alias}: "
                                             "it is not on the default bridge network")
            _, image_config = await self._image_configs.resolve(record.image_id)
            ports = links_mod.exposed_ports([*image_config.exposed_ports, *record.config.exposed_ports],
                                            [(p.container_port, p.protocol or "tcp") for p in record.config.ports])
            env += links_mod.link_env(links_mod.Linked(parent=name, alias=alias, address=addresses[c.id],
                                                       env=c.spec.process.env, ports=ports))
        return env

    async def _volumes_from(self, refs: Sequence[str]) -> list[engine_pb2.MountSpec]:
        shared = []
        for ref in refs:
            name, _, mode = ref.partition(":")
            _, record = await self.record(name)
            shared.extend(volumes_mod.shared_specs(record.mounts, mode))
        return shared

    async def _prepare(self, cid: str, image_id: str, network_mode: str,
                       attach: network_pb2.CreateEndpointRequest | None = None,
                       shared_endpoint: network_pb2.Endpoint | None = None):
        """Snapshot and network namespace at once; undo whichever succeeded when the other failed.
        A container that shares another's namespace gets that one's (and no endpoint of its own)."""
        snapshot, endpoint = await asyncio.gather(
            self._image.PrepareSnapshot(image_pb2.PrepareSnapshotRequest(
                key=cid, image=image_id, labels={convert.CONTAINER_LABEL: cid})),
            networks_mod.given(shared_endpoint) if shared_endpoint is not None else
            self._network.CreateEndpoint(
                attach or network_pb2.CreateEndpointRequest(container_id=cid, network=network_mode)),
            return_exceptions=True)
        failed = [r for r in (snapshot, endpoint) if isinstance(r, BaseException)]
        if failed:
            undo = []
            if not isinstance(endpoint, BaseException):
                undo.append(_quietly("detach", self._network.DeleteEndpoint(
                    network_pb2.DeleteEndpointRequest(container_id=cid))))
            if not isinstance(snapshot, BaseException):
                undo.append(_quietly("remove_snapshot", self._image.RemoveSnapshot(
                    image_pb2.RemoveSnapshotRequest(key=cid))))
            await asyncio.gather(*undo)
            raise failed[0]
        return snapshot, endpoint.endpoint

    async def _undo_prepare(self, cid: str) -> None:
        await asyncio.gather(
            _quietly(
                "detach", self._network.DeleteEndpoint(network_pb2.DeleteEndpointRequest(container_id=cid))),
            _quietly("remove_snapshot", self._image.RemoveSnapshot(
                image_pb2.RemoveSnapshotRequest(key=cid))))

    async def _undo_container(self, cid: str, published: bool) -> None:
        await _quietly("delete", self._container.RemoveContainer(
            container_pb2.RemoveContainerRequest(id=cid, force=True)))
        await _quietly("release_volumes", self._mounter.release(cid, remove_anonymous=True))
        await self._undo_prepare(cid)
        if published:
            self.publish("destroy", cid)
        self._store.delete(cid)

    # -- lifecycle of existing containers -------------------------------------------

    async def start(self, ref: str) -> None:
        c = await self.get(ref)
        if c.status == container_pb2.STATUS_RUNNING:
            return
        self.record_of(c)
        # A stopped container runs again as the same record: the container service
        # keeps its writable layer, network endpoint, log and Created time.
        self._restarts.user_started(c.id)
        await self._start(c.id)

    async def start_for_policy(self, cid: str) -> None:
        """The restart policy starts a container that exited."""
        await self._start(cid)
        self.publish("restart", cid)

    async def stop(self, ref: str, timeout: int | None) -> None:
        c, record = await self.record(ref)
        self._restarts.user_stopped(c.id)
        await self._stop(c, record, timeout)

    async def _stop(self, c: container_pb2.Container, record: ContainerRecord, timeout: int | None) -> None:
        if c.status not in _RUNNING:
            return
        mark = self._task_events.mark(c.id)
        await self._container.StopContainer(container_pb2.StopContainerRequest(
            id=c.id, timeout_seconds=record.stop_timeout if timeout is None else timeout))
        # Docker's order is die, then stop; "die" comes from the container service's stream.
        await self._task_events.wait(c.id, "exit", mark, running_before=False)
        self.publish("stop", c.id)

    async def restart(self, ref: str, timeout: int | None) -> None:
        c, record = await self.record(ref)
        self._restarts.user_stopped(c.id)
        await self._stop(c, record, timeout)
        self._restarts.user_started(c.id)
        await self._start(c.id)
        self.publish("restart", c.id)

    async def kill(self, ref: str, signal: str) -> None:
        c, _ = await self.record(ref)
        if c.status not in _RUNNING:
            raise errors.Conflict(f"Container {c.id} is not running")
        signal = signal or "SIGKILL"
        # Refused before anything changes (the restart policy below included).
        check_signal(signal)
        self._restarts.user_stopped(c.id)
        await self._container.KillContainer(container_pb2.KillContainerRequest(id=c.id, signal=signal))
        self.publish("kill", c.id, signal=_signal_number(signal))

    async def remove(self, ref: str, force: bool, remove_volumes: bool = False) -> None:
        c, _ = await self.record(ref)
        if c.status in _RUNNING and not force:
            raise errors.FailedPrecondition(
                f"cannot remove container \"/{c.name}\": container is running: "
                "stop the container before removing or force remove")
        if not force and self._restarts.restarting(c.id):
            # Between two runs of its restart policy it is still a running container to docker.
            raise errors.FailedPrecondition(
                f"cannot remove container \"/{c.name}\": container is restarting: "
                "stop the container before removing or force remove")
        await self._remove(c.id, force=True, exited=c.status not in _RUNNING,
                           remove_volumes=remove_volumes)

    async def linked(self, parent: str, alias: str) -> str:
        c, record = await self.record(parent)
        for link in record.config.endpoint_settings.links:
            target, name = links_mod.parse(link)
            if name == alias:
                return await self.resolve_id(target)
        raise errors.NotFound(f"No such container: {parent}/{alias}")

    async def remove_link(self, parent: str, alias: str) -> None:
        c, record = await self.record(parent)
        links = record.config.endpoint_settings.links
        kept = [link for link in links if links_mod.parse(link)[1] != alias]
        if len(kept) == len(links):
            raise errors.NotFound(f"No such container: {parent}/{alias}")
        # The name stops resolving now; the environment the link gave stays until the
        # container is made again (berth fixes it at create).
        with contextlib.suppress(errors.NotFound):
            await self._network.RemoveLink(network_pb2.RemoveLinkRequest(container_id=c.id, alias=alias))
        config = engine_pb2.ContainerConfig()
        config.CopyFrom(record.config)
        config.endpoint_settings.links[:] = kept
        self._store.put(record.replace(config=config))

    async def _remove(self, cid: str, force: bool, exited: bool = False,
                      remove_volumes: bool = False) -> None:
        """Delete the container, then its endpoint and snapshot (idempotent both, so a
        second remove finishes what a failed one left)."""
        self._removing.add(cid)
        self._restarts.removed(cid)
        self._health.stop(cid, forget=True)
        try:
            async def delete_then_snapshot():
                await self._container.RemoveContainer(
                    container_pb2.RemoveContainerRequest(id=cid, force=force))
                # The snapshot is the rootfs, the volumes are mounted in it: only once the
                # runtime let go of them (both at once, they do not depend on each other).
                await asyncio.gather(
                    self._image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=cid)),
                    self._mounter.release(cid, remove_anonymous=remove_volumes))
            detach = self._network.DeleteEndpoint(network_pb2.DeleteEndpointRequest(container_id=cid))
            if exited:
                # Nothing runs in the namespace any more, so it can go while the runtime
                # deletes: this is the --rm hot path.
                await asyncio.gather(delete_then_snapshot(), detach)
            else:
                # A Delete that fails must leave a running container its network.
                await delete_then_snapshot()
                await detach
            self.publish("destroy", cid)
            self._store.delete(cid)
            self._task_events.forget(cid)
            self._port_locks.pop(cid, None)
            log.info("container_removed", container_id=cid)
        finally:
            self._removing.discard(cid)

    async def remove_quietly(self, cid: str) -> None:
        """Remove an exited --rm container; failures are logged, not raised."""
        if cid in self._removing:
            return
        try:
            # --rm takes the container's anonymous volumes with it, as docker does.
            await self._remove(cid, force=True, exited=True, remove_volumes=True)
        except errors.NotFound:
            pass
        except errors.BerthError as exc:
            log.warning("auto_remove_failed", container_id=cid, error=exc.message)

    async def _remove_when_exited(self, cid: str) -> None:
        with contextlib.suppress(errors.NotFound):
            await self._container.WaitContainer(container_pb2.WaitContainerRequest(id=cid))
            await self.remove_quietly(cid)

    async def wait(self, ref: str) -> engine_pb2.ExitStatus:
        c = await self.get(ref)
        return _exit_status(await self._container.WaitContainer(container_pb2.WaitContainerRequest(id=c.id)))

    async def wait_until(self, ref: str, condition: str) -> engine_pb2.ExitStatus:
        """Docker's `/wait`: the exit status once `condition` holds.

        "removed" also waits for the container to be deleted (by --rm or by a user),
        which is how `docker run --rm` knows the engine has cleaned up.
        """
        condition = condition or "not-running"
        if condition not in WAIT_CONDITIONS:
            raise errors.InvalidArgument(f"invalid condition: {condition!r}")
        c = await self.get(ref)
        # Events after this position are replayed to the waits below, so none slips by.
        since = self._events.last_seq
        if c.status == container_pb2.STATUS_STOPPED and condition == "next-exit":
            await self._next_event(c.id, ("die",), since)
        status = await self._container.WaitContainer(container_pb2.WaitContainerRequest(id=c.id))
        if condition == "removed":
            try:
                await self._container.GetContainer(container_pb2.GetContainerRequest(id=c.id))
            except errors.NotFound:
                return _exit_status(status)
            await self._next_event(c.id, ("destroy",), since)
        return _exit_status(status)

    async def _next_event(self, cid: str, actions: Sequence[str], after_seq: int) -> None:
        async for _ in self._events.subscribe(after_seq=after_seq, filters={
                "type": ["container"], "container": [cid], "event": list(actions)}):
            return

    # -- what the task events mean (called by backends/task_events.py, in stream order) ----

    def on_task_start(self, cid: str) -> None:
        if self._probes:
            self._spawn(self._health.watch(cid))

    def _publishes(self, cid: str) -> bool:
        """Whether the container asked for host ports (-p, -P)."""
        record = self._store.get(cid)
        return record is not None and bool(record.config.ports or record.config.publish_all)

    def _ports_lock(self, cid: str) -> asyncio.Lock:
        """Orders a start's binding of host ports and an exit's release of them."""
        return self._port_locks.setdefault(cid, asyncio.Lock())

    async def _release_ports(self, cid: str) -> None:
        """The process exited: its host ports are free at once, unless a start (a restart
        policy's, a user's) ran it again meanwhile."""
        async with self._ports_lock(cid):
            try:
                c = await self.get(cid)
            except errors.NotFound:
                self._port_locks.pop(cid, None)
                return
            if c.status not in _RUNNING:
                await _quietly("unpublish_ports", self._network.UnpublishPorts(
                    network_pb2.UnpublishPortsRequest(container_id=cid)))

    async def _release_ports_of_exited(self, containers: list[container_pb2.Container]) -> None:
        """Containers that exited while the gateway was away lose their host ports, as their
        exit would have taken them."""
        stopped = {c.id for c in containers if c.status not in _RUNNING}
        try:
            endpoints = (await self._network.ListEndpoints(network_pb2.ListEndpointsRequest())).endpoints
        except errors.BerthError as exc:
            log.warning("release_ports_failed", error=exc.message)
            return
        for e in endpoints:
            if e.ports and e.container_id in stopped:
                await self._release_ports(e.container_id)

    def on_task_exit(self, cid: str) -> None:
        self._health.stop(cid)
        if self._publishes(cid):
            self._spawn(self._release_ports(cid))
        record = self._store.get(cid)
        if record is not None and record.auto_remove:
            if cid not in self._attached:
                self._spawn(self.remove_quietly(cid))
        else:
            self._spawn(self._restarts.on_exit(cid))

    async def reconcile(self, containers: list[container_pb2.Container]) -> None:
        """After (re)connecting to the container service: records of containers made before
        the store existed are imported, rows without a container dropped; exits missed
        meanwhile get their --rm and restart policy; running containers their healthcheck."""
        known = {c.id for c in containers}
        for record in self._store.all():
            if record.id not in known and record.id not in self._creating:
                # A create cut short (the row is written first) or a remove cut short.
                self._store.delete(record.id)
        for c in containers:
            self.record_of(c)
        self._spawn(self._release_ports_of_exited(containers))
        self._restarts.reconcile(containers)
        for c in containers:
            record = self._store.get(c.id)
            if (self._probes and c.status == container_pb2.STATUS_RUNNING
                    and not self._health.watching(c.id)):
                self._spawn(self._health.watch(c.id))
            if not record.auto_remove or c.id in self._attached:
                continue
            if c.status == container_pb2.STATUS_STOPPED:
                self._spawn(self.remove_quietly(c.id))

    # -- reading ------------------------------------------------------------------------

    def _live_state(self, info: engine_pb2.ContainerInfo,
                    record: ContainerRecord | None = None) -> engine_pb2.ContainerInfo:
        """What only the gateway knows: a pending policy restart, the healthcheck's state."""
        if self._restarts.restarting(info.id):
            info.state.restarting = True
            info.state.status = "restarting"
        health = self._health.state(info.id, record)
        if health is not None:
            info.state.health.CopyFrom(health)
        return info

    def _info(self, c: container_pb2.Container,
              record: ContainerRecord | None = None) -> engine_pb2.ContainerInfo:
        record = record or self.record_of(c)
        return self._live_state(convert.container_info(c, record), record)

    async def inspect(self, ref: str) -> engine_pb2.ContainerInfo:
        info = self._info(await self.get(ref))
        await networks_mod.add_endpoints(self._network, [info])
        return info

    async def logs(
            self, ref: str, follow: bool, tail: int, since, until,
            chunked: bool = False) -> AsyncIterator[stdio_pb2.OutputChunk]:
        """The container's log; `chunked` (when no line needs its own time) in blocks of
        up to 1 MiB of one stream rather than a message a line."""
        c = await self.get(ref)
        request = container_pb2.GetContainerLogsRequest(id=c.id, follow=follow, tail=tail, chunked=chunked)
        if since is not None:
            request.since.CopyFrom(since)
        if until is not None:
            request.until.CopyFrom(until)
        async for reply in self._container.GetContainerLogs(request):
            yield reply.chunk

    async def list(self, all_: bool, filters: Mapping[str, Sequence[str]]) -> list[engine_pb2.ContainerInfo]:
        unknown = sorted(set(filters) - set(_LIST_FILTERS))
        if unknown:
            raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
        exact_labels = dict(v.split("=", 1) for v in filters.get("label", ()) if "=" in v)
        response = await self._container.ListContainers(
            container_pb2.ListContainersRequest(labels=exact_labels))
        ancestors = await self._ancestor_ids(filters.get("ancestor", ()))
        # Asking for a status means asking for containers in it, running or not (as docker).
        all_ = all_ or bool(filters.get("status"))
        # The gateway's records in one query, not one a container.
        records = {r.id: r for r in self._store.all()}
        candidates = []
        for c in response.containers:
            info = self._info(c, records.get(c.id))
            if all_ or info.state.running or info.state.restarting:
                candidates.append((info, c.labels))
        await networks_mod.add_endpoints(self._network, [info for info, _ in candidates])
        infos = [info for info, labels in candidates if convert.matches_filters(info, labels, filters, ancestors)]
        infos.sort(key=lambda i: (i.created.seconds, i.created.nanos), reverse=True)
        return infos

    async def _ancestor_ids(self, refs: Sequence[str]) -> set[str]:
        ids = set()
        for ref in refs:
            try:
                ids.add((await self._image_configs.resolve(ref))[0])
            except errors.NotFound:
                pass
        return ids

    # -- pause, top, stats, update ------------------------------------------------------

    async def pause(self, ref: str) -> None:
        c = await self.get(ref)
        await self._container.PauseContainer(container_pb2.PauseContainerRequest(id=c.id))
        self.publish("pause", c.id)

    async def unpause(self, ref: str) -> None:
        c = await self.get(ref)
        await self._container.ResumeContainer(container_pb2.ResumeContainerRequest(id=c.id))
        self.publish("unpause", c.id)

    async def top(self, request: engine_pb2.ListContainerProcessesRequest
                  ) -> engine_pb2.ListContainerProcessesResponse:
        c = await self.get(request.id)
        if c.status not in _RUNNING:
            raise errors.FailedPrecondition(f"container {c.id} is not running")
        reply = await self._container.ListContainerProcesses(
            container_pb2.ListContainerProcessesRequest(id=c.id, ps_args=request.ps_args))
        self.publish("top", c.id)
        return engine_pb2.ListContainerProcessesResponse(titles=reply.titles, processes=[
            engine_pb2.StringList(values=row.columns) for row in reply.processes])

    async def stats(self, ref: str, stream: bool) -> AsyncIterator[engine_pb2.GetContainerStatsResponse]:
        c = await self.get(ref)
        name = convert.display_name(c.name)
        previous = None
        interval = STATS_INTERVAL_MS if stream else int(STATS_PREREAD * 1000)
        count = 0
        async for s in self._container.GetContainerStats(
                container_pb2.GetContainerStatsRequest(id=c.id, interval_ms=interval)):
            count += 1
            out = convert.stats_from_node(c.id, name, s, previous)
            previous = s
            if stream or count == 2 or c.status not in _RUNNING:
                yield out
                if not stream:
                    return
        if not stream and count == 1:
            yield out

    async def update(self, request: engine_pb2.UpdateContainerResourcesRequest,
                     policy: engine_pb2.RestartPolicy | None = None) -> None:
        """New resource limits (the fields set in `request`) and/or a new restart policy: both
        are checked before either is applied, so a bad one changes nothing."""
        if policy is not None:
            restarts_mod.validate(policy)
        fields, resources = [], container_pb2.Resources()
        for field in ("memory_bytes", "nano_cpus", "cpu_shares", "pids_limit"):
            if request.HasField(field):
                value = getattr(request, field)
                if value < 0:
                    raise errors.InvalidArgument(
                        f"invalid {field.replace('_', ' ')} {value}: must not be negative")
                fields.append(field)
                setattr(resources, field, value)
        if not fields and policy is None:
            raise errors.InvalidArgument("you must provide one or more flags when using this command")
        if not fields:
            await self.update_restart_policy(request.id, policy)
            return
        c, record = await self.record(request.id)
        await self._container.UpdateContainerResources(
            container_pb2.UpdateContainerResourcesRequest(
                id=c.id, resources=resources, update_mask=field_mask_pb2.FieldMask(paths=fields)))
        # The new limits are the container's config from now on: inspect shows
        # them and a later start applies them.
        config = engine_pb2.ContainerConfig()
        config.CopyFrom(record.config)
        for field in fields:
            setattr(config, field, getattr(request, field))
        self._store.put(record.replace(config=config))
        self.publish("update", c.id)
        if policy is not None:
            await self.update_restart_policy(c.id, policy)

    async def update_restart_policy(self, ref: str, policy: engine_pb2.RestartPolicy) -> None:
        """`update --restart`: a new policy for an existing container, running or not."""
        restarts_mod.validate(policy)
        c, record = await self.record(ref)
        restarts_mod.validate(policy, record.auto_remove)
        config = engine_pb2.ContainerConfig()
        config.CopyFrom(record.config)
        config.restart_policy.CopyFrom(policy)
        self._store.put(record.replace(config=config))
        self.publish("update", c.id)
        log.info("restart_policy_updated", container_id=c.id, policy=policy.name,
                 maximum_retry_count=policy.maximum_retry_count)

    # -- files ----------------------------------------------------------------------------

    async def copy_from(self, ref: str, path: str) -> AsyncIterator[bulk.Raw]:
        c = await self.get(ref)
        # Each chunk as the serialized message it came in (its bytes in `data`): the engine's
        # CopyFromContainerResponse is the same message, so it is relayed without protobuf.
        async for chunk in bulk.bulk_unary_stream(
                self._container.channel, "/berth.container.v1.ContainerService/CopyFromContainer",
                container_pb2.CopyFromContainerRequest(id=c.id, path=path),
                container_pb2.CopyFromContainerResponse, field=1):
            yield chunk if isinstance(chunk, bulk.Raw) else bulk.Raw.of(1, chunk.data)
        self.publish("archive-path", c.id)

    async def copy_to(self, requests) -> None:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("msg") != "header":
            raise errors.InvalidArgument("the first message must be header")
        c = await self.get(first.header.id)

        async def node_requests():
            yield container_pb2.CopyToContainerRequest(header=container_pb2.CopyToContainerHeader(
                id=c.id, path=first.header.path))
            async for req in requests:
                # A chunk that came as its serialized message goes on as it is: the container
                # service's CopyToContainerRequest has the chunk in the same field.
                yield req if isinstance(req, bulk.Raw) else container_pb2.CopyToContainerRequest(chunk=req.chunk)
        await bulk.bulk_stream_unary(self._container.channel, "/berth.container.v1.ContainerService/CopyToContainer",
                                     container_pb2.CopyToContainerResponse)(node_requests())
        self.publish("extract-to-dir", c.id)

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        c = await self.get(ref)
        async for chunk in self._container.ExportContainer(container_pb2.ExportContainerRequest(id=c.id)):
            yield chunk.data
        self.publish("export", c.id)

    # -- rename, commit, diff -----------------------------------------------------------

    async def rename(self, ref: str, new_name: str) -> None:
        new_name = new_name.lstrip("/")
        if not new_name:
            raise errors.InvalidArgument("Neither old nor new names may be empty")
        if not convert.valid_name(new_name):
            raise errors.InvalidArgument(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        c, record = await self.record(ref)
        old_name = convert.display_name(c.name)
        await self._container.RenameContainer(
            container_pb2.RenameContainerRequest(id=c.id, new_name=new_name))
        self._store.put(record.replace(name=new_name))
        self.publish("rename", c.id, oldName=f"/{old_name}")
        log.info("container_renamed", container_id=c.id, old_name=old_name, name=new_name)

    async def commit(self, ref: str, reference: str, changes: Sequence[str], message: str,
                     author: str) -> str:
        c, record = await self.record(ref)
        config = await self._image_config_of(c, record)
        convert.apply_changes(config, convert.parse_changes(changes))
        userns = c.spec.userns
        image = (await self._image.CommitSnapshot(image_pb2.CommitSnapshotRequest(
            key=c.id, config=config, reference=reference, comment=message, author=author,
            uid_mappings=[image_pb2.IdRange(container_id=m.container_id, host_id=m.host_id, size=m.size)
                          for m in userns.uid_mappings],
            gid_mappings=[image_pb2.IdRange(container_id=m.container_id, host_id=m.host_id, size=m.size)
                          for m in userns.gid_mappings]))).image
        self._image_configs.remember(image)
        self.publish("commit", c.id, comment=message, imageID=image.id, imageRef=reference or image.id)
        log.info("container_committed", container_id=c.id, image_id=image.id, reference=reference)
        return image.id

    async def _image_config_of(self, c: container_pb2.Container, record: ContainerRecord) -> image_pb2.ImageConfig:
        """The container's config as docker commits it: the image's, with what `run` changed."""
        config = image_pb2.ImageConfig()
        try:
            _, image_config = await self._image_configs.resolve(record.image_id)
            config.CopyFrom(image_config)
        except errors.NotFound:
            pass  # the image was removed by force: the container's own settings are all there is
        cfg = record.config
        if cfg.HasField("entrypoint"):
            del config.entrypoint[:]
            config.entrypoint.extend(cfg.entrypoint.values)
            if not cfg.cmd:
                # A new entrypoint drops the image's cmd, as it did when the container ran.
                del config.cmd[:]
        if cfg.cmd:
            del config.cmd[:]
            config.cmd.extend(cfg.cmd)
        del config.env[:]
        config.env.extend(c.spec.process.env)
        if cfg.working_dir:
            config.working_dir = cfg.working_dir
        if cfg.user:
            config.user = cfg.user
        config.labels.update(cfg.labels)
        if cfg.stop_signal:
            config.stop_signal = cfg.stop_signal
        if cfg.HasField("healthcheck"):
            h = cfg.healthcheck
            config.healthcheck.CopyFrom(healthcheck_pb2.HealthConfig(
                test=h.test, interval=h.interval, timeout=h.timeout, retries=h.retries,
                start_period=h.start_period, start_interval=h.start_interval))
        return config

    async def diff(self, ref: str) -> list[file_change_pb2.FileChange]:
        c = await self.get(ref)
        response = await self._image.DiffSnapshot(image_pb2.DiffSnapshotRequest(key=c.id))
        return [file_change_pb2.FileChange(kind=ch.kind, path=ch.path)
                for ch in without_engine_files(response.changes)]

    # -- prune ----------------------------------------------------------------------------

    def prunable(self, c: container_pb2.Container) -> bool:
        # A container waiting for its restart policy counts as running, as in docker.
        return c.status != container_pb2.STATUS_RUNNING and not self._restarts.restarting(c.id)

    async def prune(self, sizes: Mapping[str, int]) -> engine_pb2.PruneSystemResponse:
        """Remove every container that is not running; `sizes` (writable layer per id) says
        what each reclaimed, with its log."""
        response = engine_pb2.PruneSystemResponse()
        for c in (await self._container.ListContainers(container_pb2.ListContainersRequest())).containers:
            if not self.prunable(c):
                continue
            self.record_of(c)
            try:
                await self._remove(c.id, force=True, exited=True)
            except errors.NotFound:
                continue
            except errors.BerthError as exc:
                log.warning("prune_container_failed", container_id=c.id, error=exc.message)
                continue
            response.containers_deleted.append(c.id)
            response.space_reclaimed += sizes.get(c.id, 0) + c.log_size
        self._events.publish("container", "prune", "", {"reclaimed": str(response.space_reclaimed)})
        return response

    async def prune_filtered(self, filters: Mapping[str, Sequence[str]]) -> list[str]:
        """Docker's prune with filters: every container that is not running; `label` and
        `until` narrow it."""
        unknown = sorted(set(filters) - {"label", "until"})
        if unknown:
            raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
        label = {"label": list(filters["label"])} if filters.get("label") else {}
        until = min((_until_seconds(u) for u in filters.get("until", ())), default=None)
        removed = []
        for info in await self.list(True, label):
            if info.state.running:
                continue
            if until is not None and info.created.seconds >= until:
                continue
            try:
                await self.remove(info.id, force=False)
            except errors.NotFound:
                continue
            removed.append(info.id)
        return removed


def _rootfs(mounts, discarded_at_exit: bool) -> list[mount_pb2.Mount]:
    """The snapshot's mounts as the container's rootfs. The writable layer of a --rm
    container is removed at its exit, so it is mounted `volatile`: overlayfs then skips
    the syncs of the upper filesystem, the one at unmount included, which on a busy disk
    is most of a removal. (A machine crash while it runs leaves a layer overlayfs will
    not mount again; the container is removed then anyway.)"""
    out = []
    for m in mounts:
        if discarded_at_exit and m.type == "overlay" and "volatile" not in m.options:
            copy = mount_pb2.Mount()
            copy.CopyFrom(m)
            copy.options.append("volatile")
            m = copy
        out.append(m)
    return out


async def _settle(call: asyncio.Future | None) -> None:
    """A call whose outcome no longer matters (the create failed first): cancelled, waited
    for, its error (if any) dropped."""
    if call is not None:
        call.cancel()
        await asyncio.wait([call])
        if not call.cancelled():
            call.exception()


async def _quietly(step: str, call: Awaitable) -> None:
    """Undo steps must not hide the error that made them necessary."""
    try:
        await call
    except Exception as exc:  # noqa: BLE001 - logged; the original error wins
        log.warning("undo_failed", step=step, error=str(exc))


def _exit_status(status: container_pb2.WaitContainerResponse) -> engine_pb2.ExitStatus:
    return engine_pb2.ExitStatus(exit_code=status.exit_code, oom_killed=status.oom_killed)


def check_signal(text: str) -> None:
    """InvalidArgument for a signal that is neither a known name nor a valid number."""
    s = text.strip().upper()
    if s.isdigit():
        if 0 < int(s) <= signal_mod.SIGRTMAX:
            return
    elif (s if s.startswith("SIG") else f"SIG{s}") in signal_mod.Signals.__members__:
        return
    raise errors.InvalidArgument(f"Invalid signal: {text}")


def _signal_number(signal: str) -> str:
    """Docker's kill event carries the signal as a number."""
    if signal.isdigit():
        return signal
    name = signal.upper()
    try:
        return str(int(signal_mod.Signals[name if name.startswith("SIG") else f"SIG{name}"]))
    except KeyError:
        return signal


def _until_seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise errors.InvalidArgument(f"invalid until value: {value!r}") from None
