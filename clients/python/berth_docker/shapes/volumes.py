"""Volumes as docker shows them (`volume inspect`, `GET /volumes`)."""

from __future__ import annotations

from berth.engine.v1 import engine_pb2
from berth_docker.times import rfc3339


def volume_json(v: engine_pb2.VolumeInfo) -> dict:
    out = {"Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint,
           "CreatedAt": rfc3339(v.created_at if v.HasField("created_at") else None),
           "Labels": dict(v.labels), "Scope": v.scope or "local", "Options": dict(v.options) or None}
    if v.size >= 0 and v.HasField("created_at"):
        out["UsageData"] = {"Size": v.size, "RefCount": v.ref_count}
    return out
