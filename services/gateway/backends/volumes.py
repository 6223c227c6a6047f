"""Volumes: list, create, inspect, remove, prune over the volume service.

(gwres owns this module; this is the code moved out of the old Gateway object.)
"""

from __future__ import annotations

from collections.abc import Sequence

from berth.engine.v1 import engine_pb2
from berth.volume.v1 import volume_pb2
from services.common import errors
from services.gateway import volumes as volumes_mod


class Volumes:
    def __init__(self, volume, publish):
        self._volume = volume
        self._publish = publish

    async def list(self) -> list[engine_pb2.VolumeInfo]:
        response = await self._volume.ListVolumes(volume_pb2.ListVolumesRequest())
        return [volumes_mod.volume_info(v) for v in response.volumes]

    async def create(self, request: engine_pb2.CreateVolumeRequest) -> engine_pb2.VolumeInfo:
        volume = await self._volume.CreateVolume(volume_pb2.CreateVolumeRequest(
            name=request.name, driver=request.driver, labels=request.labels, options=request.options))
        self._publish("volume", "create", volume.name, {"driver": volume.driver})
        return volumes_mod.volume_info(volume)

    async def inspect(self, name: str) -> engine_pb2.VolumeInfo:
        try:
            volume = await self._volume.GetVolume(volume_pb2.GetVolumeRequest(name=name, with_size=True))
        except errors.NotFound:
            raise errors.NotFound(f"get {name}: no such volume") from None
        return volumes_mod.volume_info(volume)

    async def remove(self, name: str) -> None:
        try:
            await self._volume.RemoveVolume(volume_pb2.RemoveVolumeRequest(name=name))
        except errors.NotFound:
            raise errors.NotFound(f"get {name}: no such volume") from None
        self._publish("volume", "destroy", name, {"driver": "local"})

    async def prune(self, all_: bool, labels: Sequence[str]) -> volume_pb2.PruneVolumesResponse:
        response = await self._volume.PruneVolumes(volume_pb2.PruneVolumesRequest(
            all=all_, labels=volumes_mod.label_filters(labels)))
        for name in response.deleted:
            self._publish("volume", "destroy", name, {"driver": "local"})
        return response
