"""Volumes: the VolumeBackend (the volume API) over the volume service.

A container's mounts are resolved at create by services/gateway/volumes.py (the Mounter);
this is what users do with volumes themselves, each change published as a volume event.
"""

from __future__ import annotations

from collections.abc import Sequence

from berth.engine.v1 import engine_pb2
from berth.volume.v1 import volume_pb2
from services.common import errors
from services.gateway.backends.interfaces import Publish


def volume_info(v: volume_pb2.Volume) -> engine_pb2.VolumeInfo:
    info = engine_pb2.VolumeInfo(name=v.name, driver=v.driver, mountpoint=v.mountpoint,
                                 labels=dict(v.labels), options=dict(v.options), scope="local",
                                 ref_count=len(v.refs), size=v.size)
    if v.HasField("created_at"):
        info.created_at.CopyFrom(v.created_at)
    return info


def label_filters(labels: Sequence[str]) -> dict[str, str]:
    """"key" or "key=value", as docker's label filter takes them."""
    return dict((item.split("=", 1) + [""])[:2] for item in labels)


class Volumes:
    def __init__(self, volume_client, publish: Publish):
        self._volume = volume_client
        self._publish = publish

    async def create(self, request: engine_pb2.CreateVolumeRequest) -> engine_pb2.VolumeInfo:
        volume = await self._volume.CreateVolume(volume_pb2.CreateVolumeRequest(
            name=request.name, driver=request.driver, labels=request.labels, options=request.options))
        self._publish("volume", "create", volume.name, {"driver": volume.driver})
        return volume_info(volume)

    async def inspect(self, name: str) -> engine_pb2.VolumeInfo:
        try:
            volume = await self._volume.GetVolume(volume_pb2.GetVolumeRequest(name=name, with_size=True))
        except errors.NotFound:
            raise errors.NotFound(f"get {name}: no such volume") from None
        return volume_info(volume)

    async def list(self) -> list[engine_pb2.VolumeInfo]:
        response = await self._volume.ListVolumes(volume_pb2.ListVolumesRequest())
        return [volume_info(v) for v in response.volumes]

    async def remove(self, name: str) -> None:
        try:
            await self._volume.RemoveVolume(volume_pb2.RemoveVolumeRequest(name=name))
        except errors.NotFound:
            raise errors.NotFound(f"get {name}: no such volume") from None
        self._publish("volume", "destroy", name, {"driver": "local"})

    async def prune(self, all_: bool, labels: Sequence[str]) -> engine_pb2.PruneVolumesResponse:
        response = await self._volume.PruneVolumes(volume_pb2.PruneVolumesRequest(
            all=all_, labels=label_filters(labels)))
        for name in response.deleted:
            self._publish("volume", "destroy", name, {"driver": "local"})
        return engine_pb2.PruneVolumesResponse(deleted=response.deleted,
                                               space_reclaimed=response.space_reclaimed)
