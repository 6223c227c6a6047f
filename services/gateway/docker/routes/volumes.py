"""Volume routes: list, create, inspect, remove, prune (the VolumeBackend only)."""

from __future__ import annotations

from aiohttp import web

from berth.engine.v1 import engine_pb2
from services.common import errors
from services.gateway.backends.interfaces import VolumeBackend
from berth_docker import api as convert
from services.gateway.docker.context import backends, json_object, json_response


def register(router) -> None:
    router.add("GET", "/volumes", list_)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)


def _volumes(request: web.Request) -> VolumeBackend:
    return backends(request).volumes


async def list_(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - {"name", "label", "driver", "dangling"})
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    out = []
    for v in await _volumes(request).list():
        if flt.get("name") and not any(x in v.name for x in flt["name"]):
            continue
        if flt.get("driver") and v.driver not in flt["driver"]:
            continue
        if flt.get("label") and not all(v.labels.get(k) == val if eq else k in v.labels
                                        for k, eq, val in (f.partition("=") for f in flt["label"])):
            continue
        if flt.get("dangling"):
            dangling = any(x.lower() in ("1", "true") for x in flt["dangling"])
            if (v.ref_count == 0) != dangling:
                continue
        out.append(convert.volume_json(v))
    return json_response({"Volumes": out, "Warnings": None})


async def create(request: web.Request) -> web.Response:
    body = await json_object(request)
    info = await _volumes(request).create(engine_pb2.CreateVolumeRequest(
        name=body.get("Name") or "", driver=body.get("Driver") or "",
        labels=body.get("Labels") or {}, options=body.get("DriverOpts") or {}))
    return json_response(convert.volume_json(info), status=201)


async def inspect(request: web.Request) -> web.Response:
    return json_response(convert.volume_json(await _volumes(request).inspect(request.match_info["name"])))


async def remove(request: web.Request) -> web.Response:
    try:
        await _volumes(request).remove(request.match_info["name"])
    except errors.NotFound:
        if not convert.flag(request.query, "force"):
            raise
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - {"label", "all"})
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    all_ = any(v.lower() in ("1", "true") for v in flt.get("all", []))
    response = await _volumes(request).prune(all_, flt.get("label", []))
    return json_response({"VolumesDeleted": list(response.deleted) or None,
                          "SpaceReclaimed": response.space_reclaimed})
