"""The rest of a container's life and the node's disk: rename, commit, diff, prune, df.

Each function composes node services the way service.Gateway does and publishes
its event only after the step succeeded.

Disk use is counted once, in one place per kind of thing, and prune reports what
that count said about what it removed:

    images       ImageService.DiskUsage / PruneImages (reachability over blobs and layers)
    containers   the writable layer of each snapshot (ImageService.DiskUsage)
    logs         each container's log file (Container.log_size)
    volumes      VolumeService sizes; prune frees unused anonymous ones

So `system df` before, minus `system df` after, is what `system prune` printed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from google.protobuf import empty_pb2

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.volume.v1 import volume_pb2
from services.common import errors
from services.gateway import convert

log = structlog.get_logger(__name__)

ANONYMOUS_LABEL = "com.docker.volume.anonymous"


# -- rename, commit, diff ------------------------------------------------------------

async def rename(gw, ref: str, new_name: str) -> None:
    new_name = new_name.lstrip("/")
    if not new_name:
        raise errors.InvalidArgument("Neither old nor new names may be empty")
    if not convert.valid_name(new_name):
        raise errors.InvalidArgument(
            f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    c = await gw._get(ref)
    old_name = convert.display_name(c.name)
    await gw._container.Rename(container_pb2.RenameRequest(id=c.id, new_name=new_name))
    image = convert.Metadata.decode(c.metadata).image
    gw._known[c.id] = (new_name, image)
    gw._publish_container("rename", c.id, oldName=f"/{old_name}")
    log.info("container_renamed", container_id=c.id, old_name=old_name, name=new_name)


async def commit(gw, ref: str, reference: str, changes: Sequence[str], message: str,
                 author: str) -> str:
    c = await gw._get(ref)
    config = await _container_image_config(gw, c)
    _apply_changes(config, convert.parse_changes(changes))
    image = await gw._image.Commit(image_pb2.CommitRequest(
        key=c.id, config=config, reference=reference, comment=message, author=author))
    gw._image_configs.remember(image)
    gw._remember(c)
    gw._publish_container("commit", c.id, comment=message, imageID=image.id,
                          imageRef=reference or image.id)
    log.info("container_committed", container_id=c.id, image_id=image.id, reference=reference)
    return image.id


async def _container_image_config(gw, c: container_pb2.Container) -> image_pb2.ImageConfig:
    """The container's config as docker commits it: the image's, with what `run` changed."""
    meta = convert.Metadata.decode(c.metadata)
    config = image_pb2.ImageConfig()
    try:
        _, image_config = await gw._resolve_image(meta.image_id)
        config.CopyFrom(image_config)
    except errors.NotFound:
        pass  # the image was removed by force: the container's own settings are all there is
    cfg = meta.config
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
        config.healthcheck.CopyFrom(image_pb2.HealthConfig(
            test=h.test, interval=h.interval, timeout=h.timeout, retries=h.retries,
            start_period=h.start_period, start_interval=h.start_interval))
    return config


def _apply_changes(config: image_pb2.ImageConfig, changes: image_pb2.ImageConfig) -> None:
    """`--change` lines over the container's config: what they set wins, lists are added to."""
    if changes.cmd:
        del config.cmd[:]
        config.cmd.extend(changes.cmd)
    if changes.entrypoint:
        del config.entrypoint[:]
        config.entrypoint.extend(changes.entrypoint)
    if changes.env:
        env = convert.merge_env(config.env, changes.env, default_path=False)
        del config.env[:]
        config.env.extend(env)
    for name in ("working_dir", "user", "stop_signal"):
        if getattr(changes, name):
            setattr(config, name, getattr(changes, name))
    config.labels.update(changes.labels)
    for name in ("exposed_ports", "volumes"):
        have = getattr(config, name)
        have.extend(v for v in getattr(changes, name) if v not in have)


async def diff(gw, ref: str) -> list[engine_pb2.FileChange]:
    c = await gw._get(ref)
    response = await gw._image.Diff(image_pb2.DiffRequest(key=c.id))
    return [engine_pb2.FileChange(kind=ch.kind, path=ch.path) for ch in response.changes]


# -- prune and df ------------------------------------------------------------------------

async def _containers(gw) -> list[container_pb2.Container]:
    return list((await gw._container.List(container_pb2.ListRequest())).containers)


async def _snapshot_sizes(gw) -> tuple[image_pb2.DiskUsageResponse, dict[str, int]]:
    usage = await gw._image.DiskUsage(empty_pb2.Empty())
    return usage, {s.key: s.size for s in usage.snapshots}


def _prunable(gw, c: container_pb2.Container) -> bool:
    # A container waiting for its restart policy counts as running, as in docker.
    return c.status != container_pb2.STATUS_RUNNING and not gw.restarts.restarting(c.id)


async def prune_containers(gw) -> engine_pb2.PruneResponse:
    (_, sizes), containers = await asyncio.gather(_snapshot_sizes(gw), _containers(gw))
    response = engine_pb2.PruneResponse()
    for c in containers:
        if not _prunable(gw, c):
            continue
        gw._remember(c)
        try:
            await gw._remove(c.id, force=True, exited=True)
        except errors.NotFound:
            continue
        except errors.BerthError as exc:
            log.warning("prune_container_failed", container_id=c.id, error=exc.message)
            continue
        response.containers_deleted.append(c.id)
        response.space_reclaimed += sizes.get(c.id, 0) + c.log_size
    gw.events.publish("container", "prune", "", {"reclaimed": str(response.space_reclaimed)})
    return response


async def system_prune(gw, backends, all_: bool, volumes: bool) -> engine_pb2.PruneResponse:
    # Containers first: what they used becomes unused for the steps after.
    response = await prune_containers(gw)
    response.networks_deleted.extend(await backends.networks.prune())
    if volumes:
        pruned = await backends.volumes.prune(False, [])
        response.volumes_deleted.extend(pruned.deleted)
        response.space_reclaimed += pruned.space_reclaimed
    images = await backends.images.prune(all_)
    response.images_untagged.extend(images.images_untagged)
    response.images_deleted.extend(images.images_deleted)
    response.space_reclaimed += images.space_reclaimed
    return response


async def df(gw) -> engine_pb2.SystemDfResponse:
    (usage, sizes), containers, images, volumes = await asyncio.gather(
        _snapshot_sizes(gw), _containers(gw),
        gw._image.ListImages(image_pb2.ListImagesRequest(all=True)),
        gw._volume.ListVolumes(volume_pb2.ListVolumesRequest()))
    out = engine_pb2.SystemDfResponse()
    per_image: dict[str, int] = {}
    for c in containers:
        meta = convert.Metadata.decode(c.metadata)
        per_image[meta.image_id] = per_image.get(meta.image_id, 0) + 1
        out.containers.append(engine_pb2.ContainerUsage(
            id=c.id, name=convert.display_name(c.name), image=meta.image,
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
        gw._volume.GetVolume(volume_pb2.GetVolumeRequest(name=v.name, with_size=True))
        for v in volumes.volumes), return_exceptions=True)
    for v in sized:
        if isinstance(v, BaseException):
            continue  # removed meanwhile
        out.volumes.append(engine_pb2.VolumeUsage(name=v.name, ref_count=len(v.refs), size=max(v.size, 0)))
    anonymous = {v.name for v in sized
                 if not isinstance(v, BaseException) and ANONYMOUS_LABEL in v.labels}

    stopped = [c for c in out.containers if _prunable(gw, _by_id(containers, c.id))]
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
                            and not _used_by_running(v, sized, containers, gw))),
    ])
    return out


def _by_id(containers: list[container_pb2.Container], cid: str) -> container_pb2.Container:
    return next(c for c in containers if c.id == cid)


def _used_by_running(v: engine_pb2.VolumeUsage, sized, containers, gw) -> bool:
    refs = next((list(s.refs) for s in sized if not isinstance(s, BaseException) and s.name == v.name), [])
    running = {c.id for c in containers if not _prunable(gw, c)}
    return any(r in running for r in refs)
