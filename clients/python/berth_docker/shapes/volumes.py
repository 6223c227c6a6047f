"""Volumes as docker shows them (`volume inspect`, `GET /volumes`)."""

from __future__ import annotations

from berth.engine.v1 import engine_pb2
from berth_docker.times import rfc3339


def volume_json(v: engine_pb2.VolumeInfo) -> dict:
    """A volume as create, inspect and list answer it: without UsageData, which dockerd
    reports only in `system df` (routes/system.py adds it there)."""
    return {"Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint,
            "CreatedAt": rfc3339(v.created_at if v.HasField("created_at") else None),
            "Labels": dict(v.labels), "Scope": v.scope or "local", "Options": dict(v.options) or None}
