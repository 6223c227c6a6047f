"""The mounts of a container: volumes, bind mounts and tmpfs, resolved by the gateway.

What the user asked for (MountSpec: `-v`, `--mount`, `--tmpfs`), what other
containers share (`--volumes-from`) and what the image declares (VOLUME) become
OCI mounts for the container service, which only performs them:

    GetVolume/CreateVolume(name)    volume: a new one gets the anonymous label when unnamed
    AcquireVolume(name, cid)        volume: the container's reference, durable
    ExportImagePath(image, target)  image:  the image's content at the target, as tar ...
      -> PopulateVolume(name, tar)  volume: ... copied into a new volume (docker's copy-up)

The gateway never reads the files of either service: the tar stream passes
through it. Undo releases what was acquired and removes the volumes this
container creation made, so a failed `run` changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import structlog

from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.types.v1 import mount_pb2
from berth.volume.v1 import volume_pb2
from services.common import errors

log = structlog.get_logger(__name__)

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_TYPES = ("volume", "bind", "tmpfs")
_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass
class Resolved:
    """The OCI mounts for the container service and the MountPoints inspect shows."""

    mounts: list[mount_pb2.Mount] = field(default_factory=list)
    points: list[engine_pb2.MountPoint] = field(default_factory=list)
    # Volumes this resolution created (undo removes them) and acquired (undo releases).
    created: list[str] = field(default_factory=list)
    acquired: list[str] = field(default_factory=list)


def _fail(message: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(message)


def _check_target(target: str) -> str:
    if not target.startswith("/"):
        raise _fail(f"invalid mount config: mount path must be absolute: {target!r}")
    normal = os.path.normpath(target)
    if normal == "/":
        raise _fail("invalid mount config: destination can't be '/'")
    return normal


def _check_volume_name(name: str) -> None:
    if len(name) < 2 or not name[0].isascii() or not name[0].isalnum() \
            or not set(name) <= _NAME_CHARS or ".." in name:
        raise _fail(f"create {name}: \"{name}\" includes invalid characters for a local volume name, "
                    "only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. "
                    "If you intended to pass a host directory, use absolute path")


def plan(specs: Sequence[engine_pb2.MountSpec], shared: Sequence[engine_pb2.MountSpec],
         image_volumes: Sequence[str]) -> list[engine_pb2.MountSpec]:
    """One spec per destination: the user's win over --volumes-from, both over the
    image's VOLUME list; checked before anything is created."""
    by_target: dict[str, engine_pb2.MountSpec] = {}
    for spec in shared:
        by_target[spec.target] = spec
    seen: set[str] = set()
    for spec in specs:
        if spec.type not in _TYPES:
            raise _fail(f"invalid mount config: mount type unknown: {spec.type!r}")
        target = _check_target(spec.target)
        if target in seen:
            raise _fail(f"Duplicate mount point: {target}")
        seen.add(target)
        checked = engine_pb2.MountSpec()
        checked.CopyFrom(spec)
        checked.target = target
        if spec.type == "bind":
            if not spec.source.startswith("/"):
                raise _fail(f"invalid mount config for type \"bind\": invalid mount path: "
                            f"'{spec.source}' mount path must be absolute")
            if spec.volume_nocopy:
                raise _fail("invalid mount config for type \"bind\": field VolumeOptions must not be specified")
            for opt in spec.options:
                if opt not in _PROPAGATIONS:
                    raise _fail(f"invalid mount config for type \"bind\": unknown option {opt!r}")
        elif spec.type == "tmpfs":
            if spec.source:
                raise _fail("invalid mount config for type \"tmpfs\": field Source must not be specified")
        elif spec.source:
            _check_volume_name(spec.source)
        if spec.volume_subpath and spec.type != "volume":
            raise _fail(f"invalid mount config for type \"{spec.type}\": field VolumeOptions must not be specified")
        if spec.volume_subpath and (spec.volume_subpath.startswith("/") or ".." in spec.volume_subpath.split("/")):
            raise _fail(f"invalid mount config: subpath {spec.volume_subpath!r} must be a relative path "
                        "within the volume")
        by_target[target] = checked
    for path in image_volumes:
        target = os.path.normpath(path) if path.startswith("/") else None
        if target and target != "/" and target not in by_target:
            by_target[target] = engine_pb2.MountSpec(type="volume", target=target)
    # Parents before children: /data before /data/logs.
    return sorted(by_target.values(), key=lambda s: (s.target.count("/"), s.target))


class Mounter:
    def __init__(self, volume, image):
        self._volume = volume
        self._image = image

    async def resolve(self, cid: str, image_id: str, specs: Sequence[engine_pb2.MountSpec],
                      shared: Sequence[engine_pb2.MountSpec], image_volumes: Sequence[str]) -> Resolved:
        planned = plan(specs, shared, image_volumes)
        out = Resolved()
        try:
            for spec in planned:
                await self._resolve_one(cid, image_id, spec, out)
        except BaseException:
            await self.undo(cid, out)
            raise
        return out

    async def _resolve_one(self, cid: str, image_id: str, spec: engine_pb2.MountSpec,
                           out: Resolved) -> None:
        # A read-only bind is read-only all the way down (mount_setattr with AT_RECURSIVE,
        # runc's "rro"), as docker >= 25 makes it: `-v /:/host:ro` leaves no writable
        # submount such as /host/dev/shm. The kernel has it since 5.12.
        bind_modes = ["ro", "rro"] if spec.readonly else ["rw"]
        if spec.type == "bind":
            # The container service checks the source (and makes it for -v) where it mounts.
            source = spec.source
            propagation = spec.options[0] if spec.options else "rprivate"
            out.mounts.append(mount_pb2.Mount(type="bind", source=source, target=spec.target,
                                              options=["rbind", *bind_modes, propagation],
                                              create_source=spec.create_source))
            out.points.append(engine_pb2.MountPoint(
                type="bind", source=source, destination=spec.target, mode="ro" if spec.readonly else "",
                rw=not spec.readonly, propagation=propagation))
        elif spec.type == "tmpfs":
            options = ["nosuid", "nodev", "noexec", *spec.options]
            if spec.readonly:
                options.append("ro")
            out.mounts.append(mount_pb2.Mount(type="tmpfs", source="tmpfs", target=spec.target,
                                              options=options))
            out.points.append(engine_pb2.MountPoint(
                type="tmpfs", destination=spec.target, mode=",".join(spec.options),
                rw=not spec.readonly))
        else:
            volume, created = await self._volume_for(spec)
            if created:
                out.created.append(volume.name)
            volume = (await self._volume.AcquireVolume(
                volume_pb2.AcquireVolumeRequest(name=volume.name, ref=cid))).volume
            out.acquired.append(volume.name)
            if created and not spec.volume_nocopy:
                await self._copy_up(image_id, spec.target, volume.name)
            # "idmap": in a remapped container a volume's files keep their owners' meaning.
            out.mounts.append(mount_pb2.Mount(type="bind", source=volume.mountpoint, target=spec.target,
                                              options=["rbind", *bind_modes, "rprivate", "idmap"],
                                              sub_path=spec.volume_subpath))
            out.points.append(engine_pb2.MountPoint(
                type="volume", name=volume.name, source=volume.mountpoint, destination=spec.target,
                driver=volume.driver, mode="ro" if spec.readonly else "",
                rw=not spec.readonly))

    async def _volume_for(self, spec: engine_pb2.MountSpec) -> tuple[volume_pb2.Volume, bool]:
        """The named volume, created when missing (as docker does for -v and --mount), or a
        new anonymous one."""
        if spec.source:
            try:
                return (
                    await self._volume.GetVolume(volume_pb2.GetVolumeRequest(name=spec.source))).volume, False
            except errors.NotFound:
                pass
            labels = dict(spec.volume_labels)
        else:
            labels = {**spec.volume_labels, ANONYMOUS_LABEL: ""}
        volume = (await self._volume.CreateVolume(volume_pb2.CreateVolumeRequest(
            name=spec.source, labels=labels))).volume
        log.info("volume_created_for_mount", name=volume.name, target=spec.target)
        return volume, True

    async def _copy_up(self, image_id: str, target: str, name: str) -> None:
        exported = self._image.ExportImagePath(image_pb2.ExportImagePathRequest(image=image_id, path=target))

        async def requests():
            yield volume_pb2.PopulateVolumeRequest(header=volume_pb2.PopulateVolumeHeader(name=name))
            async for part in exported:
                yield volume_pb2.PopulateVolumeRequest(chunk=part.chunk)
        await self._volume.PopulateVolume(requests())

    async def release(self, cid: str, remove_anonymous: bool) -> None:
        """Drop the container's references; with remove_anonymous, remove its anonymous
        volumes that nothing else uses (`rm -v`, `--rm`)."""
        response = await self._volume.ReleaseVolumes(volume_pb2.ReleaseVolumesRequest(ref=cid))
        if not remove_anonymous:
            return
        for volume in response.volumes:
            if ANONYMOUS_LABEL in volume.labels and not volume.refs:
                await _quietly(self._volume.RemoveVolume(volume_pb2.RemoveVolumeRequest(name=volume.name)))

    async def undo(self, cid: str, resolved: Resolved) -> None:
        if resolved.acquired:
            await _quietly(self._volume.ReleaseVolumes(
                volume_pb2.ReleaseVolumesRequest(ref=cid, names=resolved.acquired)))
        for name in resolved.created:
            await _quietly(self._volume.RemoveVolume(volume_pb2.RemoveVolumeRequest(name=name)))


def with_mounted_sources(points: Sequence[engine_pb2.MountPoint],
                         mounted: Sequence[mount_pb2.Mount]) -> list[engine_pb2.MountPoint]:
    """The mount points with each bind's source as the container service resolved it
    (symlinks followed on the node that mounts), matched by destination."""
    sources = {m.target: m.source for m in mounted if m.type == "bind"}
    out = []
    for p in points:
        if p.type == "bind" and sources.get(p.destination, p.source) != p.source:
            resolved = engine_pb2.MountPoint()
            resolved.CopyFrom(p)
            resolved.source = sources[p.destination]
            p = resolved
        out.append(p)
    return out


def shared_specs(points: Sequence[engine_pb2.MountPoint], mode: str) -> list[engine_pb2.MountSpec]:
    """`--volumes-from c[:ro|:rw]`: c's volumes and binds, read-only when asked, else as c has them."""
    if mode not in ("", "ro", "rw"):
        raise _fail(f"invalid mode for volumes-from: {mode}")
    out = []
    for p in points:
        if p.type not in ("volume", "bind"):
            continue
        readonly = (mode == "ro") or (mode == "" and not p.rw)
        out.append(engine_pb2.MountSpec(
            type=p.type, source=p.name if p.type == "volume" else p.source, target=p.destination,
            readonly=readonly, volume_nocopy=True,
            options=[p.propagation] if p.type == "bind" and p.propagation else []))
    return out


async def _quietly(call: Awaitable) -> None:
    try:
        await call
    except errors.BerthError as exc:
        log.warning("volume_undo_failed", error=exc.message)
