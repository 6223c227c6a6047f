"""The build's hands on the node: images from the image service, RUN steps as
containers of the container service, networks from the network service.

Every step result is an image of the image service:

    metadata step (ENV, CMD, ...)   CreateImage(parent, config)            no layer
    RUN                             PrepareSnapshot -> CreateEndpoint -> CreateContainer
                                    -> Start -> Wait -> CommitSnapshot     one layer
    COPY / ADD                      PrepareSnapshot -> mount its rootfs here, write the
                                    files -> unmount -> CommitSnapshot     one layer

A RUN step's container is created like any other (the container service's
default confinement: namespaces, capabilities, seccomp as it applies them);
the build service never runs a process on its own. On the default bridge, its
endpoint (namespace, veth, address: a good part of a small step's time) was
made ahead, while nothing waited for it, as BuildKit keeps a pool of network
namespaces: the worker keeps one spare, taken by a RUN step and made again when
that build has ended. Each endpoint serves one container only, never two: a step
may change its /etc/hosts, which the next must not see. For COPY it mounts the
snapshot's mounts itself, which is what those mounts are for (the container
service does the same with them), in a directory of its own run root.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from berth.container.v1 import container_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from berth.types.v1 import mount_pb2
from berth_docker import reference
from services.common import errors

log = structlog.get_logger(__name__)

# Labels on what a build makes on the node, so that it can be told apart and cleaned.
BUILD_LABEL = "berth.build"
MS_BIND, MS_REC, MS_RDONLY, MNT_DETACH = 4096, 16384, 1, 2
# The network whose endpoints are made ahead (the one RUN steps use unless told otherwise).
SPARE_NETWORK = "bridge"
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class RunOptions:
    argv: list[str]
    env: list[str]
    cwd: str
    user: str
    network: str            # "bridge", "host", "none" or a network name
    extra_hosts: list[str]
    shm_size: int
    mounts: list[mount_pb2.Mount]


class Worker:
    def __init__(self, image, container, network, run_dir: str):
        self.image = image
        self.container = container
        self.network = network
        self.mnt_dir = os.path.join(run_dir, "mnt")
        self.files_dir = os.path.join(run_dir, "files")
        os.makedirs(self.mnt_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.files_dir, mode=0o700, exist_ok=True)
        self._cleanup_stale()
        # The spare endpoint: its container id and the task making it. Ids of spares
        # are listed in a file until taken or deleted, so that those a killed service
        # left (or whose deletion failed) are deleted by the next one.
        self._spare: tuple[str, asyncio.Task] | None = None
        self._spares_file = os.path.join(run_dir, "spare-endpoints")
        self._background: set[asyncio.Task] = set()
        self._want_spare = False
        self._sweeping = False
        try:
            with open(self._spares_file) as f:
                self._stale_spares = f.read().split()
        except FileNotFoundError:
            self._stale_spares = []

    def _cleanup_stale(self) -> None:
        """Mounts a killed build left behind are detached; never rmtree through one."""
        for name in os.listdir(self.mnt_dir):
            path = os.path.join(self.mnt_dir, name)
            while os.path.ismount(path):
                _libc.umount2(path.encode(), MNT_DETACH)
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.files_dir, ignore_errors=True)
        os.makedirs(self.files_dir, mode=0o700, exist_ok=True)

    # -- images -------------------------------------------------------------------

    async def get_image(self, ref: str) -> image_pb2.Image | None:
        try:
            return (await self.image.GetImage(image_pb2.GetImageRequest(reference=ref))).image
        except errors.NotFound:
            return None

    async def pull(self, ref: str, platform: str, on_progress: Callable[[str], None],
                   auths=None) -> image_pb2.Image:
        image_id = ""
        try:
            domain = reference.parse(ref).domain
        except ValueError as exc:
            raise errors.InvalidArgument(f"invalid image reference {ref!r}: {exc}") from None
        auth = (auths or {}).get(domain)
        if auth is None and domain == "docker.io":
            # docker's config names Docker Hub by its old index address.
            auth = (auths or {}).get("https://index.docker.io/v1/")
        request = image_pb2.PullImageRequest(reference=ref, platform=platform, auth=auth)
        async for reply in self.image.PullImage(request):
            p = reply.progress
            if p.image_id:
                image_id = p.image_id
            if p.status and not p.id:
                on_progress(p.status)
        image = await self.get_image(image_id or ref)
        if image is None:
            raise errors.NotFound(f"pull of {ref} finished without an image", resource="image")
        return image

    async def create_image(self, parent: str, config: image_pb2.ImageConfig, created_by: str) -> str:
        async def requests():
            yield image_pb2.CreateImageRequest(header=image_pb2.CreateImageHeader(
                parent=parent, config=config, created_by=created_by))
        return (await self.image.CreateImage(requests())).image.id

    async def tag(self, image_id: str, name: str) -> str:
        """Names the image; returns the name in full ("docker.io/library/app:latest")."""
        await self.image.TagImage(image_pb2.TagImageRequest(source=image_id, target=name))
        return full_name(name)

    # -- snapshots ------------------------------------------------------------------

    async def _prepare(self, key: str, image_id: str) -> list[mount_pb2.Mount]:
        """The mounts of a new snapshot for one step. Its overlay is volatile: unmounting
        overlayfs otherwise syncs the whole filesystem under it, which on a busy disk costs
        a step milliseconds to tens of them. What a step writes is read back through the
        page cache by its commit, whose layer the image service writes durably; a crash
        before that loses only the unfinished step, which the next build runs again."""
        reply = await self.image.PrepareSnapshot(image_pb2.PrepareSnapshotRequest(
            key=key, image=image_id, labels={BUILD_LABEL: "step"}))
        mounts = []
        for m in reply.mounts:
            if m.type == "overlay" and "volatile" not in m.options:
                m.options.append("volatile")
            mounts.append(m)
        return mounts

    async def _remove_snapshot(self, key: str) -> None:
        try:
            await self.image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=key))
        except errors.BerthError as exc:
            log.warning("build_snapshot_remove_failed", key=key, error=exc.message)

    async def _commit(self, key: str, config: image_pb2.ImageConfig, created_by: str,
                      name: str = "", remove: bool = False) -> str:
        """The snapshot as a new image; named `name` (a build's first tag, when this is
        its last step: one call less than tagging it after); with `remove`, the snapshot is
        removed by the same call (nothing has it mounted any more)."""
        reply = await self.image.CommitSnapshot(image_pb2.CommitSnapshotRequest(
            key=key, config=config, created_by=created_by, reference=name, remove=remove))
        return reply.image.id

    async def with_rootfs(self, image_id: str, work: Callable[[str], Awaitable[object] | object],
                          commit: tuple[image_pb2.ImageConfig, str, str] | None) -> str:
        """Mount a fresh snapshot of `image_id`, let `work` change it, and commit it (when
        `commit` gives the config, created_by and name, see _commit) as a new image. A `work`
        that is a plain function runs in the thread that mounts and unmounts (one hop to a
        thread, not three). A committed snapshot is removed by the commit itself: the step
        leaves no removal behind for the build to wait for."""
        key = "build-" + secrets.token_hex(16)
        target = os.path.join(self.mnt_dir, key)
        mounts = await self._prepare(key, image_id)
        try:
            os.mkdir(target, 0o700)
            try:
                if asyncio.iscoroutinefunction(work):
                    await asyncio.to_thread(_mount_all, mounts, target)
                    try:
                        await work(target)
                    finally:
                        await asyncio.to_thread(_unmount_all, target)
                else:
                    await asyncio.to_thread(_mounted, mounts, target, work)
            finally:
                os.rmdir(target)
            if commit is not None:
                return await self._commit(key, *commit, remove=True)
        except BaseException:
            await asyncio.shield(self._remove_snapshot(key))
            raise
        await self._remove_snapshot(key)
        return ""

    # -- endpoints made ahead ----------------------------------------------------------

    def _endpoint(self, network: str) -> tuple[str, Awaitable]:
        """A container id for a RUN step and (an awaitable of) its endpoint on `network`:
        the spare when there is one, else one made now."""
        if network == SPARE_NETWORK:
            self._want_spare = True
            self._sweep()
            spare, self._spare = self._spare, None
            if spare is not None:
                self._write_spares()
                return spare[0], self._taken(*spare, network)
        cid = secrets.token_hex(32)
        return cid, self._create_endpoint(cid, network)

    def replenish(self) -> None:
        """Makes the spare endpoint when a RUN step took it (or found none). Called when a
        build has ended: made meanwhile, it would slow the steps it is made for."""
        self._sweep()
        if self._want_spare and self._spare is None:
            self._want_spare = False
            cid = secrets.token_hex(32)
            self._spare = (cid, asyncio.create_task(self._create_endpoint(cid, SPARE_NETWORK)))
            self._write_spares()
            # A spare that could not be made is made again when it is taken.
            self._spare[1].add_done_callback(lambda t: t.cancelled() or t.exception())

    def start(self) -> None:
        """Called once the service runs: the spares a killed service left are deleted now
        (and again after a build, if the network service could not be reached)."""
        self._sweep()

    def _sweep(self) -> None:
        """Deletes (in the background) the spares a killed service left."""
        if self._stale_spares and not self._sweeping:
            self._sweeping = True
            self._spawn(self._delete_stale())

    async def _delete_stale(self) -> None:
        try:
            ids = list(self._stale_spares)
            left = await self._delete_spares(ids)
            self._stale_spares = [i for i in self._stale_spares if i not in ids] + left
            self._write_spares()
        finally:
            self._sweeping = False

    def _create_endpoint(self, cid: str, network: str):
        return self.network.CreateEndpoint(network_pb2.CreateEndpointRequest(
            container_id=cid, network=network, name=f"build-{cid[:12]}", hostname=cid[:12]))

    async def _taken(self, cid: str, task: asyncio.Task, network: str):
        try:
            return await asyncio.shield(task)
        except errors.BerthError as exc:
            # Made while something was wrong (the network service restarting): made again.
            log.info("build_spare_endpoint_failed", container_id=cid, error=exc.message)
            return await self._create_endpoint(cid, network)

    def _write_spares(self) -> None:
        ids = ([self._spare[0]] if self._spare else []) + self._stale_spares
        tmp = self._spares_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(i + "\n" for i in ids))
        os.replace(tmp, self._spares_file)

    async def _delete_spares(self, ids: list[str]) -> list[str]:
        """Deletes the endpoints; returns the ids of those it could not (to try again)."""
        left = []
        for cid in ids:
            try:
                await self.network.DeleteEndpoint(network_pb2.DeleteEndpointRequest(container_id=cid))
            except errors.NotFound:
                pass
            except errors.BerthError as exc:
                log.warning("build_spare_endpoint_delete_failed", container_id=cid, error=exc.message)
                left.append(cid)
        return left

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Deletes the spare endpoint (the service stops); an id it could not delete stays
        in the file for the next service."""
        spare, self._spare = self._spare, None
        if spare is not None:
            await asyncio.gather(spare[1], return_exceptions=True)
            self._stale_spares.append(spare[0])
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._stale_spares = await self._delete_spares(self._stale_spares)
        self._write_spares()

    # -- RUN --------------------------------------------------------------------------

    async def run(self, image_id: str, opts: RunOptions, config: image_pb2.ImageConfig,
                  created_by: str, on_output: Callable[[bytes, bool], None],
                  on_container: Callable[[str], None], cleanups: set[asyncio.Task],
                  name: str = "") -> str:
        """Run opts.argv in a container of `image_id`; commit its changes as a new image
        (named `name`, if given).

        Once the image is committed, removing the container, its endpoint and its
        snapshot (a good part of a small step's time) is left to a task put in
        `cleanups`, which the caller awaits before its build ends: the next step
        need not wait for it. A failed step cleans up before it returns."""
        cid, endpoint_call = self._endpoint(opts.network or "bridge")
        rootfs, endpoint = await asyncio.gather(
            self._prepare(cid, image_id), endpoint_call, return_exceptions=True)
        hosts_dir = ""
        created = False
        try:
            for result in (rootfs, endpoint):
                if isinstance(result, BaseException):
                    raise result
            endpoint = endpoint.endpoint
            mounts = list(endpoint.mounts)
            if opts.extra_hosts:
                hosts_dir, mounts = self._with_extra_hosts(cid, mounts, opts.extra_hosts)
            mounts.extend(opts.mounts)
            # Security left as it comes: the container service's defaults (capabilities,
            # seccomp, masked paths), as for `docker run` without options.
            spec = container_pb2.Spec(
                rootfs=rootfs, mounts=mounts, netns_path=endpoint.netns_path, hostname=cid[:12],
                security=container_pb2.Security(shm_size=opts.shm_size),
                process=container_pb2.Process(args=opts.argv, env=opts.env, cwd=opts.cwd or "/",
                                              user=opts.user))
            await self.container.CreateContainer(container_pb2.CreateContainerRequest(
                id=cid, name=f"build-{cid[:12]}", labels={BUILD_LABEL: "run"}, spec=spec))
            created = True
            on_container(cid)
            code, new_image = await self._start_and_follow(
                cid, on_output, lambda: self._commit(cid, config, created_by, name))
            if code != 0:
                raise errors.FailedPrecondition(
                    f"The command '{created_by}' returned a non-zero code: {code}", exit_code=code)
        except BaseException:
            await asyncio.shield(self._cleanup_run(cid, created, hosts_dir))
            raise
        task = asyncio.create_task(self._cleanup_run(cid, created, hosts_dir))
        cleanups.add(task)
        return new_image

    async def _start_and_follow(self, cid: str, on_output: Callable[[bytes, bool], None],
                                commit: Callable[[], Awaitable[str]]) -> tuple[int, str]:
        """Starts the container, passes its output on and, once it exited 0, commits it
        (what `commit` returns comes back with the exit code; "" after a failure).

        The wait and the log stream are asked for while the start goes on (the created
        container's task is there to wait on and its log file to follow): their calls'
        own time is then not added to the step's."""
        async def follow():
            async for reply in self.container.GetContainerLogs(container_pb2.GetContainerLogsRequest(
                    id=cid, follow=True, tail=-1, chunked=True)):
                on_output(reply.chunk.data, reply.chunk.stream == 2)
        follower = asyncio.create_task(follow())
        waiter = asyncio.ensure_future(self.container.WaitContainer(container_pb2.WaitContainerRequest(id=cid)))
        try:
            await self.container.StartContainer(container_pb2.StartContainerRequest(id=cid))
            status = await waiter
            # The log stream ends when the container has exited and its output is read;
            # the commit needs only the exit, so it goes on meanwhile.
            drained = asyncio.wait_for(asyncio.shield(follower), 30)
            if status.exit_code != 0:
                await drained
                return status.exit_code, ""
            image_id, _ = await asyncio.gather(commit(), drained)
        finally:
            follower.cancel()
            waiter.cancel()
            await asyncio.gather(follower, waiter, return_exceptions=True)
        return 0, image_id

    def _with_extra_hosts(self, cid: str, mounts: list[mount_pb2.Mount], extra: list[str]):
        """The network service's /etc/hosts, copied with the --add-host lines appended."""
        d = os.path.join(self.files_dir, cid)
        os.makedirs(d, mode=0o755)
        hosts = os.path.join(d, "hosts")
        base = ""
        out = []
        for m in mounts:
            if m.target == "/etc/hosts":
                try:
                    with open(m.source) as f:
                        base = f.read()
                except OSError:
                    base = ""
                continue
            out.append(m)
        lines = []
        for entry in extra:
            # "name:ip" (the ip may be IPv6, colons and all) or "name=ip".
            name, _, ip = entry.partition("=" if "=" in entry else ":")
            if not name or not ip:
                raise errors.InvalidArgument(f"invalid extra host {entry!r}: use host:ip")
            lines.append(f"{ip}\t{name}\n")
        if not base:
            base = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        with open(hosts, "w") as f:
            f.write(base if base.endswith("\n") else base + "\n")
            f.writelines(lines)
        os.chmod(hosts, 0o644)
        out.append(mount_pb2.Mount(type="bind", source=hosts, target="/etc/hosts",
                                   options=["rbind", "ro"]))
        return d, out

    async def _cleanup_run(self, cid: str, remove_container: bool, hosts_dir: str) -> None:
        async def quietly(what: str, call):
            try:
                await call
            except errors.BerthError as exc:
                if not isinstance(exc, errors.NotFound):
                    log.warning("build_cleanup_failed", step=what, container_id=cid, error=exc.message)
        async def container_then_snapshot():
            # The container's root filesystem is mounted on the snapshot until it is removed.
            if remove_container:
                await quietly("container", self.container.RemoveContainer(
                    container_pb2.RemoveContainerRequest(id=cid, force=True)))
            await quietly("snapshot", self.image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=cid)))
        # The endpoint need not wait for the container: a process still running (a build
        # cut short) only loses its network a moment before it is killed.
        await asyncio.gather(container_then_snapshot(), quietly("endpoint", self.network.DeleteEndpoint(
            network_pb2.DeleteEndpointRequest(container_id=cid))))
        if hosts_dir:
            shutil.rmtree(hosts_dir, ignore_errors=True)


def full_name(name: str) -> str:
    """A name as the image service stores it ("app" is "docker.io/library/app:latest")."""
    return str(reference.parse(name))


def _mount_all(mounts: list[mount_pb2.Mount], target: str) -> None:
    done = 0
    try:
        for m in mounts:
            flags, data = 0, []
            for opt in m.options:
                if opt == "rbind":
                    flags |= MS_BIND | MS_REC
                elif opt == "bind":
                    flags |= MS_BIND
                elif opt == "ro":
                    flags |= MS_RDONLY
                elif opt != "rw":
                    data.append(opt)
            if m.type == "bind":
                flags |= MS_BIND
            source = m.source.encode() or None
            if _libc.mount(source, target.encode(), m.type.encode() if m.type != "bind" else None,
                           flags, ",".join(data).encode() or None) != 0:
                err = ctypes.get_errno()
                raise errors.Internal(f"mounting the step's root filesystem failed: {os.strerror(err)}")
            done += 1
    except BaseException:
        for _ in range(done):
            _libc.umount2(target.encode(), MNT_DETACH)
        raise


def _mounted(mounts: list[mount_pb2.Mount], target: str, work: Callable[[str], object]) -> None:
    _mount_all(mounts, target)
    try:
        work(target)
    finally:
        _unmount_all(target)


def _unmount_all(target: str) -> None:
    for _ in range(8):
        if not os.path.ismount(target):
            return
        if _libc.umount2(target.encode(), 0) != 0:
            _libc.umount2(target.encode(), MNT_DETACH)
