"""The gateway's composition logic: the Engine API made from the node services.

A container is made in steps, each on another service:

    GetImage(ref)                        image:     what to run and how
    PrepareSnapshot(cid) || Attach(cid)  image, network (independent: run concurrently)
    Create(cid, spec)                    container: record + runtime create
    Start(cid)                           container

When a step fails, the steps before it are undone in reverse order and the
original error is what the caller sees, so a failed `run` leaves nothing behind.
Events are published only after the step they report succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import platform
import re
import secrets
import signal as signal_mod
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from services.common import errors
from services.common.config import Config
from services.gateway import convert, names
from services.gateway.compat import CompatMixin
from services.gateway import networks as networks_mod
from services.gateway import depth as depth_mod
from services.gateway import health as health_mod
from services.gateway import restart as restart_mod
from services.gateway import volumes as volumes_mod
from services.gateway.backends.image_configs import ImageConfigs
from services.gateway.events import Event, EventLog, unknown_filters

log = structlog.get_logger(__name__)

VERSION = "0.1.0"
API_VERSION = "1.0"
# After the process exited, how long its log stream may take to deliver the rest.
LOG_DRAIN_SECONDS = 2.0
# Reconnect delay for the container service's event stream, growing to the cap.
EVENTS_RETRY = (0.1, 5.0)
_LIST_FILTERS = ("id", "name", "label", "status", "ancestor")

_WAITED = object()
_LOGS_ENDED = object()


@dataclass
class Nodes:
    """Clients of the node services (services.common.rpc.Client: calls raise domain errors)."""

    image: object
    network: object
    volume: object
    container: object


class Gateway(CompatMixin):
    def __init__(self, config: Config, nodes: Nodes, events: EventLog, image_configs: ImageConfigs):
        self._config = config
        self._image = nodes.image
        self._network = nodes.network
        self._volume = nodes.volume
        self._container = nodes.container
        self._mounter = volumes_mod.Mounter(nodes.volume, nodes.image)
        self.events = events
        # Shared with the images backend, which forgets what it deletes.
        self._image_configs = image_configs
        # Name and image of every container we know, for event attributes.
        self._known: dict[str, tuple[str, str]] = {}
        # Detached --rm containers, removed when their exit event arrives.
        self._auto_remove: set[str] = set()
        self._removing: set[str] = set()
        # Containers being started, and exits that arrived before their start was announced:
        # a short process exits before Start returns, and "die" must not precede "start".
        self._starting: set[str] = set()
        self._early_exits: dict[str, container_pb2.TaskEvent] = {}
        self._tasks: set[asyncio.Task] = set()
        self.restarts = restart_mod.Restarts(self)
        # exec, attach, pause, top, stats, update, cp, export (services/gateway/depth.py).
        self.depth = depth_mod.Depth(self)
        self.health = health_mod.Monitors(
            lambda cid, argv, timeout: health_mod.run_probe(self, cid, argv, timeout),
            lambda cid, status: self._publish_container(f"health_status: {status}", cid), self._spawn)
        # Probes run as execs: without exec in the container contract there are none.
        self._probes = health_mod.exec_available()

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._spawn(self._watch_container_events())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- version ------------------------------------------------------------------

    def version(self) -> engine_pb2.VersionResponse:
        return engine_pb2.VersionResponse(
            version=VERSION, api_version=API_VERSION, os=platform.system().lower(),
            arch=platform.machine(), kernel_version=platform.release(),
            runtime=os.path.basename(self._config.runtime))

    # -- create and run -----------------------------------------------------------

    async def create(self, cfg: engine_pb2.ContainerConfig) -> str:
        cid, _ = await self._create(cfg)
        return cid

    async def run(self, cfg: engine_pb2.ContainerConfig, attach: bool) -> AsyncIterator[engine_pb2.RunResponse]:
        cid, meta = await self._create(cfg)
        if not attach and meta.auto_remove:
            self._auto_remove.add(cid)
        try:
            await self._start(cid)
        except BaseException:
            self._auto_remove.discard(cid)
            await self._undo_container(cid, published=True)
            raise
        if not attach:
            yield engine_pb2.RunResponse(id=cid)
            return

        finished = False
        try:
            yield engine_pb2.RunResponse(id=cid)
            status = None
            async for item in self._attach(cid):
                if isinstance(item, container_pb2.WaitResponse):
                    status = item
                else:
                    yield engine_pb2.RunResponse(output=item)
            if meta.auto_remove:
                await self._remove_quietly(cid)
            finished = True
            yield engine_pb2.RunResponse(exit=engine_pb2.ExitStatus(
                exit_code=status.exit_code, oom_killed=status.oom_killed))
        finally:
            if not finished and meta.auto_remove:
                # The client went away: the container lives on as a detached --rm one.
                self._auto_remove.add(cid)
                self._spawn(self._remove_when_exited(cid))

    async def _start(self, cid: str) -> None:
        self._starting.add(cid)
        try:
            await self._container.Start(container_pb2.StartRequest(id=cid))
        finally:
            self._starting.discard(cid)
            early = self._early_exits.pop(cid, None)
        self._publish_container("start", cid)
        if self._probes:
            self._spawn(health_mod.watch(self, cid))
        if early is not None:
            await self._on_task_event(early)

    async def _create(self, cfg: engine_pb2.ContainerConfig) -> tuple[str, convert.Metadata]:
        if cfg.name and not convert.valid_name(cfg.name):
            raise errors.InvalidArgument(
                f"Invalid container name ({cfg.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if not cfg.image:
            raise errors.InvalidArgument("no image specified")
        restart_mod.validate(cfg.restart_policy, cfg.auto_remove)
        image_id, image_config = await self._resolve_image(cfg.image)
        process = convert.resolve_process(image_config, cfg)
        network_mode = cfg.network_mode or networks_mod.DEFAULT_NETWORK
        cid = secrets.token_hex(32)
        labels = {**image_config.labels, **cfg.labels}
        meta = convert.Metadata(
            image=cfg.image, image_id=image_id, config=cfg, network_mode=network_mode,
            auto_remove=cfg.auto_remove,
            stop_timeout=cfg.stop_timeout if cfg.HasField("stop_timeout") else convert.DEFAULT_STOP_TIMEOUT)

        shared = await self._volumes_from(cfg.volumes_from)
        name = cfg.name or names.generate()
        attach = networks_mod.attach_request(cid, name, cfg, image_config)
        snapshot, endpoint = await self._prepare(cid, image_id, network_mode, attach)
        try:
            mounts = await self._mounter.resolve(cid, image_id, cfg.mounts, shared, image_config.volumes)
        except BaseException:
            await self._undo_prepare(cid)
            raise
        meta = dataclasses.replace(meta, mounts=tuple(mounts.points))
        spec = container_pb2.Spec(
            mounts=mounts.mounts,
            rootfs=snapshot.mounts, netns_path=endpoint.netns_path,
            hostname=cfg.hostname or cid[:12],
            process=container_pb2.Process(
                args=process.args, env=process.env, cwd=process.cwd, user=process.user),
            resources=container_pb2.Resources(
                memory_bytes=cfg.memory_bytes, nano_cpus=cfg.nano_cpus,
                cpu_shares=cfg.cpu_shares, pids_limit=cfg.pids_limit),
            stop_signal=cfg.stop_signal or image_config.stop_signal,
            readonly_rootfs=cfg.readonly_rootfs, tty=cfg.tty, open_stdin=cfg.open_stdin,
            stdin_once=cfg.stdin_once)
        # /etc/hosts and /etc/resolv.conf from the network service.
        spec.mounts.extend(endpoint.mounts)
        request = container_pb2.CreateRequest(
            id=cid, name=name, labels=labels, spec=spec, metadata=meta.encode())
        try:
            try:
                created = await self._container.Create(request)
            except errors.AlreadyExists:
                if cfg.name:
                    raise
                # A generated name collided: the user asked for no name in particular.
                request.name = names.generate(taken=lambda n: True)
                created = await self._container.Create(request)
        except BaseException:
            await self._mounter.undo(cid, mounts)
            await self._undo_prepare(cid)
            raise
        points = volumes_mod.with_mounted_sources(meta.mounts, created.spec.mounts)
        if points != list(meta.mounts):
            # A bind source was a symlink: show where it led, as the node resolved it.
            meta = dataclasses.replace(meta, mounts=tuple(points))
            await self._container.SetMetadata(container_pb2.SetMetadataRequest(
                id=cid, metadata=meta.encode()))
        self._known[cid] = (convert.display_name(created.name), cfg.image)
        self._publish_container("create", cid)
        log.info("container_created", container_id=cid, name=created.name, image=cfg.image)
        return cid, meta

    async def _volumes_from(self, refs: Sequence[str]) -> list[engine_pb2.MountSpec]:
        shared = []
        for ref in refs:
            name, _, mode = ref.partition(":")
            c = await self._get(name)
            shared.extend(volumes_mod.shared_specs(convert.Metadata.decode(c.metadata).mounts, mode))
        return shared

    async def _resolve_image(self, ref: str) -> tuple[str, image_pb2.ImageConfig]:
        return await self._image_configs.resolve(ref)

    async def _prepare(self, cid: str, image_id: str, network_mode: str,
                       attach: network_pb2.AttachRequest | None = None):
        """Snapshot and network namespace at once; undo whichever succeeded when the other failed."""
        snapshot, endpoint = await asyncio.gather(
            self._image.PrepareSnapshot(image_pb2.PrepareSnapshotRequest(
                key=cid, image=image_id, labels={convert.CONTAINER_LABEL: cid})),
            self._network.Attach(attach or network_pb2.AttachRequest(container_id=cid, network=network_mode)),
            return_exceptions=True)
        failed = [r for r in (snapshot, endpoint) if isinstance(r, BaseException)]
        if failed:
            undo = []
            if not isinstance(endpoint, BaseException):
                undo.append(self._quietly("detach", self._network.Detach(
                    network_pb2.DetachRequest(container_id=cid))))
            if not isinstance(snapshot, BaseException):
                undo.append(self._quietly("remove_snapshot", self._image.RemoveSnapshot(
                    image_pb2.RemoveSnapshotRequest(key=cid))))
            await asyncio.gather(*undo)
            raise failed[0]
        return snapshot, endpoint

    async def _undo_prepare(self, cid: str) -> None:
        await asyncio.gather(
            self._quietly("detach", self._network.Detach(network_pb2.DetachRequest(container_id=cid))),
            self._quietly("remove_snapshot", self._image.RemoveSnapshot(
                image_pb2.RemoveSnapshotRequest(key=cid))))

    async def _undo_container(self, cid: str, published: bool) -> None:
        await self._quietly("delete", self._container.Delete(container_pb2.DeleteRequest(id=cid, force=True)))
        await self._quietly("release_volumes", self._mounter.release(cid, remove_anonymous=True))
        await self._undo_prepare(cid)
        if published:
            self._publish_container("destroy", cid)
        self._known.pop(cid, None)

    @staticmethod
    async def _quietly(step: str, call: Awaitable) -> None:
        """Undo steps must not hide the error that made them necessary."""
        try:
            await call
        except Exception as exc:  # noqa: BLE001 - logged; the original error wins
            log.warning("undo_failed", step=step, error=str(exc))

    async def _attach(self, cid: str, tail: int = -1) -> AsyncIterator[object]:
        """The container's output from the start (LogChunk), then its WaitResponse.

        The log stream should end when the process exits; in case it lags, it gets
        LOG_DRAIN_SECONDS after Wait returned to deliver the rest.
        """
        queue: asyncio.Queue = asyncio.Queue()

        async def pump() -> None:
            try:
                async for entry in self._container.Logs(container_pb2.LogsRequest(
                        id=cid, follow=True, tail=tail)):
                    queue.put_nowait(_log_chunk(entry))
            except errors.BerthError as exc:
                log.warning("attach_logs_failed", container_id=cid, error=exc.message)
            finally:
                queue.put_nowait(_LOGS_ENDED)

        pump_task = asyncio.ensure_future(pump())
        wait_task = asyncio.ensure_future(self._container.Wait(container_pb2.WaitRequest(id=cid)))
        wait_task.add_done_callback(lambda _: queue.put_nowait(_WAITED))
        loop = asyncio.get_running_loop()
        deadline = None
        logs_ended = False
        try:
            while not (logs_ended and wait_task.done()):
                if deadline is None:
                    item = await queue.get()
                else:
                    try:
                        item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                    except TimeoutError:
                        log.warning("attach_logs_lagging", container_id=cid)
                        break
                if item is _WAITED:
                    if wait_task.exception() is not None:
                        raise wait_task.exception()
                    deadline = loop.time() + LOG_DRAIN_SECONDS
                elif item is _LOGS_ENDED:
                    logs_ended = True
                else:
                    yield item
            yield wait_task.result()
        finally:
            pump_task.cancel()
            if not wait_task.done():
                wait_task.cancel()

    # -- lifecycle of existing containers -------------------------------------------

    async def _get(self, ref: str) -> container_pb2.Container:
        try:
            return await self._container.Get(container_pb2.GetRequest(id=ref))
        except errors.NotFound:
            raise errors.NotFound(f"No such container: {ref}") from None

    async def start_container(self, ref: str) -> None:
        c = await self._get(ref)
        if c.status == container_pb2.STATUS_RUNNING:
            return
        self._remember(c)
        # A stopped container runs again as the same record: the container service
        # keeps its writable layer, network endpoint, log and Created time.
        c = await self.restarts.user_started(c)
        if convert.Metadata.decode(c.metadata).auto_remove:
            # Created with --rm and started apart (docker create + start): removed at exit too.
            self._auto_remove.add(c.id)
        await self._start(c.id)

    async def stop(self, ref: str, timeout: int | None) -> None:
        c = await self._get(ref)
        await self.restarts.user_stopped(c)
        await self._stop(c, timeout)

    async def _stop(self, c: container_pb2.Container, timeout: int | None) -> None:
        meta = convert.Metadata.decode(c.metadata)
        self._remember(c)
        if c.status not in (container_pb2.STATUS_RUNNING, container_pb2.STATUS_PAUSED):
            return
        since = time.time()
        await self._container.Stop(container_pb2.StopRequest(
            id=c.id, timeout_seconds=meta.stop_timeout if timeout is None else timeout))
        # Docker's order is die, then stop; "die" comes from the container
        # service's event stream, which may still be on its way.
        try:
            await asyncio.wait_for(self._next_event(c.id, ("die",), since), 2)
        except asyncio.TimeoutError:
            pass
        self._publish_container("stop", c.id)

    async def restart(self, ref: str, timeout: int | None) -> None:
        c = await self._get(ref)
        await self.restarts.user_stopped(c)
        await self._stop(c, timeout)
        await self.restarts.user_started(await self._get(c.id))
        await self._start(c.id)
        self._publish_container("restart", c.id)

    async def kill(self, ref: str, signal: str) -> None:
        c = await self._get(ref)
        if c.status not in (container_pb2.STATUS_RUNNING, container_pb2.STATUS_PAUSED):
            raise errors.Conflict(f"Container {c.id} is not running")
        signal = signal or "SIGKILL"
        # Refused before anything changes (the restart policy below included).
        depth_mod.check_signal(signal)
        await self.restarts.user_stopped(c)
        await self._container.Kill(container_pb2.KillRequest(id=c.id, signal=signal))
        self._remember(c)
        self._publish_container("kill", c.id, signal=_signal_number(signal))

    async def remove(self, ref: str, force: bool, remove_volumes: bool = False) -> None:
        c = await self._get(ref)
        if c.status in (container_pb2.STATUS_RUNNING, container_pb2.STATUS_PAUSED) and not force:
            raise errors.FailedPrecondition(
                f"cannot remove container \"/{c.name}\": container is running: "
                "stop the container before removing or force remove")
        self._remember(c)
        await self._remove(c.id, force=True, exited=c.status not in (
            container_pb2.STATUS_RUNNING, container_pb2.STATUS_PAUSED),
                           remove_volumes=remove_volumes)

    async def _remove(self, cid: str, force: bool, exited: bool = False,
                      remove_volumes: bool = False) -> None:
        """Delete the container, then its endpoint and snapshot (idempotent both, so a
        second remove finishes what a failed one left)."""
        self._removing.add(cid)
        self.restarts.removed(cid)
        self.health.stop(cid, forget=True)
        try:
            async def delete_then_snapshot():
                await self._container.Delete(container_pb2.DeleteRequest(id=cid, force=force))
                # The snapshot is the rootfs: only once the runtime let go of it.
                await self._image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=cid))
                await self._mounter.release(cid, remove_anonymous=remove_volumes)
            detach = self._network.Detach(network_pb2.DetachRequest(container_id=cid))
            if exited:
                # Nothing runs in the namespace any more, so it can go while the runtime
                # deletes: this is the --rm hot path.
                await asyncio.gather(delete_then_snapshot(), detach)
            else:
                # A Delete that fails must leave a running container its network.
                await delete_then_snapshot()
                await detach
            self._publish_container("destroy", cid)
            log.info("container_removed", container_id=cid)
        finally:
            self._removing.discard(cid)
            self._auto_remove.discard(cid)
            self._known.pop(cid, None)

    async def _remove_quietly(self, cid: str) -> None:
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
            await self._container.Wait(container_pb2.WaitRequest(id=cid))
            await self._remove_quietly(cid)

    async def wait(self, ref: str) -> container_pb2.WaitResponse:
        c = await self._get(ref)
        return await self._container.Wait(container_pb2.WaitRequest(id=c.id))

    def _live_state(self, info: engine_pb2.ContainerInfo) -> engine_pb2.ContainerInfo:
        """What only the gateway knows: a pending policy restart, the healthcheck's state."""
        if self.restarts.restarting(info.id):
            info.state.restarting = True
            info.state.status = "restarting"
        health = self.health.state(info.id)
        if health is not None:
            info.state.health.CopyFrom(health)
        return info

    async def inspect(self, ref: str) -> engine_pb2.ContainerInfo:
        info = self._live_state(convert.container_info(await self._get(ref)))
        await networks_mod.add_endpoints(self._network, [info])
        return info

    async def resolve_id(self, ref: str) -> str:
        """A container reference to its id (the networks backend's ResolveContainer)."""
        return (await self._get(ref)).id

    async def logs(self, ref: str, follow: bool, tail: int, since, until) -> AsyncIterator[engine_pb2.LogChunk]:
        c = await self._get(ref)
        request = container_pb2.LogsRequest(id=c.id, follow=follow, tail=tail)
        if since is not None:
            request.since.CopyFrom(since)
        if until is not None:
            request.until.CopyFrom(until)
        async for entry in self._container.Logs(request):
            yield _log_chunk(entry)

    async def list(self, all_: bool, filters: Mapping[str, Sequence[str]]) -> list[engine_pb2.ContainerInfo]:
        unknown = sorted(set(filters) - set(_LIST_FILTERS))
        if unknown:
            raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
        exact_labels = dict(v.split("=", 1) for v in filters.get("label", ()) if "=" in v)
        response = await self._container.List(container_pb2.ListRequest(labels=exact_labels))
        ancestors = await self._ancestor_ids(filters.get("ancestor", ()))
        # Asking for a status means asking for containers in it, running or not (as docker).
        all_ = all_ or bool(filters.get("status"))
        infos = []
        for c in response.containers:
            info = self._live_state(convert.container_info(c))
            if not all_ and not (info.state.running or info.state.restarting):
                continue
            if _matches(info, c.labels, filters, ancestors):
                infos.append(info)
        await networks_mod.add_endpoints(self._network, infos)
        infos.sort(key=lambda i: (i.created.seconds, i.created.nanos), reverse=True)
        return infos

    async def _ancestor_ids(self, refs: Sequence[str]) -> set[str]:
        ids = set()
        for ref in refs:
            try:
                ids.add((await self._resolve_image(ref))[0])
            except errors.NotFound:
                pass
        return ids

    async def image_usage(self) -> dict[str, int]:
        """Containers per image id (the images backend's ImageUsage)."""
        response = await self._container.List(container_pb2.ListRequest())
        counts: dict[str, int] = {}
        for c in response.containers:
            image_id = convert.Metadata.decode(c.metadata).image_id
            counts[image_id] = counts.get(image_id, 0) + 1
        return counts

    # -- events -----------------------------------------------------------------------

    def subscribe_events(self, since: float | None, until: float | None,
                         filters: Mapping[str, Sequence[str]]) -> AsyncIterator[Event]:
        unknown = unknown_filters(filters)
        if unknown:
            raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
        return self.events.subscribe(since=since, until=until, filters=filters)

    def _remember(self, c: container_pb2.Container) -> None:
        if c.id not in self._known:
            self._known[c.id] = (convert.display_name(c.name), convert.Metadata.decode(c.metadata).image)

    def _publish_container(self, action: str, cid: str, **attributes: str) -> None:
        name, image = self._known.get(cid, ("", ""))
        self.events.publish("container", action, cid, {"name": name, "image": image, **attributes})

    async def _watch_container_events(self) -> None:
        """Follow the container service's task events for die/oom and detached --rm.

        The stream drops when the container service restarts; each reconnect rescans
        the containers, so exits missed while disconnected still get their --rm.
        """
        delay = EVENTS_RETRY[0]
        quiet = False
        while True:
            stream = self._container.Events(container_pb2.EventsRequest())
            rescan = self._spawn(self._reconcile())
            try:
                async for event in stream:
                    delay, quiet = EVENTS_RETRY[0], False
                    await self._on_task_event(event)
            except errors.BerthError as exc:
                # Said once per outage, not once per retry.
                if not quiet:
                    log.info("container_events_disconnected", error=exc.message)
                quiet = True
            except Exception:  # noqa: BLE001 - the watcher must outlive any one bad stream
                log.exception("container_events_failed")
            rescan.cancel()
            await asyncio.sleep(delay)
            delay = min(delay * 2, EVENTS_RETRY[1])

    async def _reconcile(self) -> None:
        try:
            response = await self._container.List(container_pb2.ListRequest())
        except errors.BerthError:
            return
        await self.restarts.reconcile(list(response.containers))
        for c in response.containers:
            self._remember(c)
            if self._probes and c.status == container_pb2.STATUS_RUNNING and self.health.state(c.id) is None:
                self._spawn(health_mod.watch(self, c.id))
            if not convert.Metadata.decode(c.metadata).auto_remove:
                continue
            if c.status == container_pb2.STATUS_STOPPED:
                self._spawn(self._remove_quietly(c.id))
            elif c.status == container_pb2.STATUS_RUNNING:
                self._auto_remove.add(c.id)

    async def _on_task_event(self, event: container_pb2.TaskEvent) -> None:
        cid = event.container_id
        if cid in self._starting and event.type in (
                container_pb2.TaskEvent.TYPE_EXIT, container_pb2.TaskEvent.TYPE_OOM):
            if event.type == container_pb2.TaskEvent.TYPE_OOM:
                self._publish_container("oom", cid)
            else:
                self._early_exits[cid] = event
            return
        if event.type == container_pb2.TaskEvent.TYPE_EXIT:
            self._publish_container("die", cid, exitCode=str(event.exit_code))
            self.health.stop(cid)
            if cid in self._auto_remove:
                self._spawn(self._remove_quietly(cid))
            else:
                self._spawn(self.restarts.on_exit(cid))
        elif event.type == container_pb2.TaskEvent.TYPE_OOM:
            self._publish_container("oom", cid)
        elif event.type == container_pb2.TaskEvent.TYPE_EXEC_EXIT:
            self.depth.on_exec_exit(event)


def _log_chunk(entry: container_pb2.LogEntry) -> engine_pb2.LogChunk:
    chunk = engine_pb2.LogChunk(stream=entry.stream, data=entry.data)
    if entry.HasField("time"):
        chunk.time.CopyFrom(entry.time)
    return chunk


def _signal_number(signal: str) -> str:
    """Docker's kill event carries the signal as a number."""
    if signal.isdigit():
        return signal
    name = signal.upper()
    try:
        return str(int(signal_mod.Signals[name if name.startswith("SIG") else f"SIG{name}"]))
    except KeyError:
        return signal


def _matches(info: engine_pb2.ContainerInfo, labels: Mapping[str, str],
             filters: Mapping[str, Sequence[str]], ancestors: set[str]) -> bool:
    """docker ps filters: values of one key are OR-ed, keys AND-ed."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "id":
            ok = any(info.id.startswith(v) for v in values)
        elif key == "name":
            ok = any(_name_matches(v, info.name) for v in values)
        elif key == "label":
            # Every label filter must hold, as docker does for labels.
            ok = all(labels.get(k) == v if eq else k in labels
                     for k, eq, v in (f.partition("=") for f in values))
        elif key == "status":
            ok = info.state.status in values
        elif key == "ancestor":
            ok = info.image_id in ancestors or info.image in values
        else:
            ok = False
        if not ok:
            return False
    return True


def _name_matches(pattern: str, name: str) -> bool:
    pattern = pattern.removeprefix("/")
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name
