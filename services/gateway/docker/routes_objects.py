"""Network and volume routes, mapped onto the gateway's networks and volumes backends."""

from __future__ import annotations

from aiohttp import web

from berth.engine.v1 import engine_pb2
from services.common import errors
from berth_docker import api as convert
from services.gateway.docker.context import gateway, json_body, json_response


def register(router) -> None:
    router.add("GET", "/networks", networks_list)
    router.add("POST", "/networks/create", network_create)
    router.add("POST", "/networks/prune", networks_prune)
    router.add("GET", "/networks/{id}", network_inspect)
    router.add("DELETE", "/networks/{id}", network_remove)
    router.add("POST", "/networks/{id}/connect", network_connect)
    router.add("POST", "/networks/{id}/disconnect", network_disconnect)
    router.add("GET", "/volumes", volumes_list)
    router.add("POST", "/volumes/create", volume_create)
    router.add("POST", "/volumes/prune", volumes_prune)
    router.add("GET", "/volumes/{name}", volume_inspect)
    router.add("DELETE", "/volumes/{name}", volume_remove)


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    return body


async def networks_list(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - {"name", "id", "driver"})
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    out = []
    for n in await gateway(request).list_networks():
        if flt.get("name") and not any(v in n.name for v in flt["name"]):
            continue
        if flt.get("id") and not any(n.id.startswith(v) for v in flt["id"]):
            continue
        if flt.get("driver") and n.driver not in flt["driver"]:
            continue
        out.append(convert.network_json(n))
    return json_response(out)


async def network_inspect(request: web.Request) -> web.Response:
    return json_response(convert.network_json(await gateway(request).networks.inspect(request.match_info["id"])))


async def network_create(request: web.Request) -> web.Response:
    body = _object(await json_body(request))
    ipam = ((body.get("IPAM") or {}).get("Config") or [{}])
    if len(ipam) > 1 or body.get("EnableIPv6"):
        raise errors.NotImplementedYet("more than one subnet, and IPv6, are not implemented by berth yet")
    first = ipam[0] if ipam else {}
    info = await gateway(request).networks.create(engine_pb2.CreateNetworkRequest(
        name=body.get("Name") or "", driver=body.get("Driver") or "", subnet=first.get("Subnet") or "",
        gateway=first.get("Gateway") or "", ip_range=first.get("IPRange") or "",
        internal=bool(body.get("Internal")), labels=body.get("Labels") or {}))
    return json_response({"Id": info.id, "Warning": ""}, status=201)


async def network_remove(request: web.Request) -> web.Response:
    await gateway(request).networks.remove(request.match_info["id"])
    return web.Response(status=204)


async def networks_prune(request: web.Request) -> web.Response:
    if convert.filters(request.query):
        raise errors.NotImplementedYet("filters on network prune are not implemented by berth yet")
    removed = await gateway(request).networks.prune()
    return json_response({"NetworksDeleted": removed or None})


async def network_connect(request: web.Request) -> web.Response:
    body = _object(await json_body(request))
    endpoint = body.get("EndpointConfig") or {}
    await gateway(request).networks.connect(engine_pb2.ConnectNetworkRequest(
        network=request.match_info["id"], container=body.get("Container") or "",
        ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address") or "",
        aliases=endpoint.get("Aliases") or []))
    return web.Response(status=200)


async def network_disconnect(request: web.Request) -> web.Response:
    body = _object(await json_body(request))
    await gateway(request).networks.disconnect(engine_pb2.ConnectNetworkRequest(
        network=request.match_info["id"], container=body.get("Container") or ""))
    return web.Response(status=200)


async def volumes_list(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - {"name", "label", "driver", "dangling"})
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    out = []
    for v in await gateway(request).list_volumes():
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


async def volume_create(request: web.Request) -> web.Response:
    body = _object(await json_body(request))
    info = await gateway(request).create_volume(engine_pb2.CreateVolumeRequest(
        name=body.get("Name") or "", driver=body.get("Driver") or "",
        labels=body.get("Labels") or {}, options=body.get("DriverOpts") or {}))
    return json_response(convert.volume_json(info), status=201)


async def volume_inspect(request: web.Request) -> web.Response:
    return json_response(convert.volume_json(await gateway(request).inspect_volume(request.match_info["name"])))


async def volume_remove(request: web.Request) -> web.Response:
    try:
        await gateway(request).remove_volume(request.match_info["name"])
    except errors.NotFound:
        if not convert.flag(request.query, "force"):
            raise
    return web.Response(status=204)


async def volumes_prune(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - {"label", "all"})
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    all_ = any(v.lower() in ("1", "true") for v in flt.get("all", []))
    response = await gateway(request).prune_volumes(all_, flt.get("label", []))
    return json_response({"VolumesDeleted": list(response.deleted) or None,
                          "SpaceReclaimed": response.space_reclaimed})
