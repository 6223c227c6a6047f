"""Protobuf <-> domain types for the volume service; protobuf stops here."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from berth.types.v1 import mount_pb2
from berth.volume.v1 import volume_pb2 as pb
from services.volume.store import Volume


def volume_to_pb(volume: Volume) -> pb.Volume:
    created = timestamp_pb2.Timestamp()
    if volume.created_at:
        created.FromDatetime(datetime.fromisoformat(volume.created_at))
    return pb.Volume(
        name=volume.name, driver=volume.driver, mountpoint=volume.mountpoint,
        labels=volume.labels, created_at=created, options=volume.options,
        refs=list(volume.refs), size=volume.size,
        # The caller sets the target from the user's -v flag, and adds "ro" when asked.
        mount=mount_pb2.Mount(type="bind", source=volume.mountpoint,
                              options=["rbind", "rw"]),
    )
