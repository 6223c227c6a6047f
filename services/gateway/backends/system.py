"""System: version, the node's disk (df, prune) and the engine's event stream.

Disk use is counted once, in one place per kind of thing, and prune reports what
that count said about what it removed:

    images       ImageService.GetDiskUsage / PruneImages (reachability over blobs and layers)
    containers   the writable layer of each snapshot (ImageService.GetDiskUsage)
    logs         each container's log file (Container.log_size)
    volumes      VolumeService sizes; prune frees unused anonymous ones

So `system df` before, minus `system df` after, is what `system prune` printed.
"""

from __future__ import annotations

import asyncio
import os
import platform
from collections.abc import AsyncIterator, Mapping, Sequence


from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.volume.v1 import volume_pb2
from services.common import errors
from services.gateway import convert
from services.gateway.events import Event, unknown_filters

VERSION = "0.1.0"
API_VERSION = "1.0"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"


class System:
    """`runtime` is the OCI runtime's path (for version); `image`, `container`, `volume` node
    clients; `containers` the containers backend (records, prune), `images`, `networks`,
    `volumes` the backends whose prune system prune runs; `events` the EventLog."""

    def __init__(self, runtime: str, image, container, volume, containers, images, networks,
                 volumes, events):
        self._runtime = runtime
        self._image = image
        self._container = container
        self._volume = volume
        self._containers = containers
        self._images = images
        self._networks = networks
        self._volumes = volumes
        self._events = events

    def version(self) -> engine_pb2.GetVersionResponse:
        return engine_pb2.GetVersionResponse(
            version=VERSION, api_version=API_VERSION, os=platform.system().lower(),
            arch=platform.machine(), kernel_version=platform.release(),
            runtime=os.path.basename(self._runtime))

    # -- events -------------------------------------------------------------------------

    def subscribe_events(self, since: float | None, until: float | None,
                         filters: Mapping[str, Sequence[str]],
                         after_seq: int | None = None) -> AsyncIterator[Event]:
        unknown = unknown_filters(filters)
        if unknown:
            raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
        return self._events.subscribe(since=since, until=until, filters=filters, after_seq=after_seq)

    # -- prune and df -------------------------------------------------------------------

    async def _containers_list(self) -> list[container_pb2.Container]:
        return list((await self._container.ListContainers(container_pb2.ListContainersRequest())).containers)

    async def _snapshot_sizes(self) -> tuple[image_pb2.GetDiskUsageResponse, dict[str, int]]:
        usage = await self._image.GetDiskUsage(image_pb2.GetDiskUsageRequest())
        return usage, {s.key: s.size for s in usage.snapshots}

    async def prune_containers(self) -> engine_pb2.PruneSystemResponse:
        _, sizes = await self._snapshot_sizes()
        return await self._containers.prune(sizes)

    async def container_usage(self) -> dict[str, int]:
        """Writable layer plus log, per container id (what a prune of it reclaims)."""
        return {c.id: c.size_rw + c.log_size for c in (await self.df()).containers}

    async def prune(self, all_: bool, volumes: bool) -> engine_pb2.PruneSystemResponse:
        # Containers first: what they used becomes unused for the steps after.
        response = await self.prune_containers()
        response.networks_deleted.extend(await self._networks.prune())
        if volumes:
            pruned = await self._volumes.prune(False, [])
            response.volumes_deleted.extend(pruned.deleted)
            response.space_reclaimed += pruned.space_reclaimed
        images = await self._images.prune(all_)
        response.images_untagged.extend(images.images_untagged)
        response.images_deleted.extend(images.images_deleted)
        response.space_reclaimed += images.space_reclaimed
        return response

    async def df(self) -> engine_pb2.GetDiskUsageResponse:
        (usage, sizes), containers, images, volumes = await asyncio.gather(
            self._snapshot_sizes(), self._containers_list(),
            self._image.ListImages(image_pb2.ListImagesRequest(all=True)),
            self._volume.ListVolumes(volume_pb2.ListVolumesRequest()))
        out = engine_pb2.GetDiskUsageResponse()
        per_image: dict[str, int] = {}
        for c in containers:
            record = self._containers.record_of(c)
            per_image[record.image_id] = per_image.get(record.image_id, 0) + 1
            out.containers.append(engine_pb2.ContainerUsage(
                id=c.id, name=convert.display_name(c.name), image=record.image,
                status=convert.status_name(c.status), size_rw=sizes.get(c.id, 0), log_size=c.log_size))
        info = {i.id: i for i in images.images}
        for u in usage.images:
            row = engine_pb2.ImageUsage(id=u.id, size=u.size, shared_size=u.shared_size,
                                        containers=per_image.get(u.id, 0))
            if u.id in info:
                row.repo_tags.extend(info[u.id].repo_tags)
                row.created.CopyFrom(info[u.id].created)
            out.images.append(row)
        sized = await asyncio.gather(*(
            self._volume.GetVolume(volume_pb2.GetVolumeRequest(name=v.name, with_size=True))
            for v in volumes.volumes), return_exceptions=True)
        sized = [r.volume for r in sized if not isinstance(r, BaseException)]  # removed meanwhile
        for v in sized:
            out.volumes.append(engine_pb2.VolumeUsage(name=v.name, ref_count=len(v.refs), size=max(v.size, 0)))
        anonymous = {v.name for v in sized if ANONYMOUS_LABEL in v.labels}

        prunable = {c.id for c in containers if self._containers.prunable(c)}
        running = {c.id for c in containers} - prunable
        refs = {v.name: list(v.refs) for v in sized}
        stopped = [c for c in out.containers if c.id in prunable]
        out.summary.extend([
            engine_pb2.DiskUsageSummary(
                type="Images", total=len(out.images), active=sum(1 for u in usage.images if u.snapshots),
                size=usage.images_size, reclaimable=usage.images_reclaimable),
            engine_pb2.DiskUsageSummary(
                type="Containers", total=len(out.containers),
                active=len(out.containers) - len(stopped),
                size=sum(c.size_rw for c in out.containers), reclaimable=sum(c.size_rw for c in stopped)),
            engine_pb2.DiskUsageSummary(
                type="Container logs", total=len(out.containers),
                active=len(out.containers) - len(stopped),
                size=sum(c.log_size for c in out.containers), reclaimable=sum(c.log_size for c in stopped)),
            engine_pb2.DiskUsageSummary(
                type="Local Volumes", total=len(out.volumes),
                active=sum(1 for v in out.volumes if v.ref_count),
                size=sum(v.size for v in out.volumes),
                # Once the stopped containers are gone, their anonymous volumes are unused too.
                reclaimable=sum(v.size for v in out.volumes if v.name in anonymous
                                and not any(r in running for r in refs.get(v.name, ())))),
        ])
        return out
