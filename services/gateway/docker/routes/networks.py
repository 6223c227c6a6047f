"""Network routes over the networks backend."""

from __future__ import annotations

from aiohttp import web

from berth.engine.v1 import engine_pb2
from services.common import errors
from services.gateway.docker import convert
from services.gateway.docker.context import backends, json_body, json_response


def register(router) -> None:
    router.add("GET", "/networks", networks_list)
    router.add("POST", "/networks/create", network_create)
    router.add("POST", "/networks/prune", networks_prune)
    router.add("GET", "/networks/{id}", network_inspect)
    router.add("DELETE", "/networks/{id}", network_remove)
    router.add("POST", "/networks/{id}/connect", network_connect)
    router.add("POST", "/networks/{id}/disconnect", network_disconnect)


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
    for n in await backends(request).networks.list():
        if flt.get("name") and not any(v in n.name for v in flt["name"]):
            continue
        if flt.get("id") and not any(n.id.startswith(v) for v in flt["id"]):
            continue
        if flt.get("driver") and n.driver not in flt["driver"]:
            continue
        out.append(convert.network_json(n))
    return json_response(out)


async def network_inspect(request: web.Request) -> web.Response:
    return json_response(convert.network_json(await backends(request).networks.inspect(request.match_info["id"])))


async def network_create(request: web.Request) -> web.Response:
    body = _object(await json_body(request))
    ipam = ((body.get("IPAM") or {}).get("Config") or [{}])
    if len(ipam) > 1 or body.get("EnableIPv6"):
        raise errors.NotImplementedYet("more than one subnet, and IPv6, are not implemented by berth yet")
    first = ipam[0] if ipam else {}
    info = await backends(request).networks.create(engine_pb2.CreateNetworkRequest(
        name=body.get("Name") or "", driver=body.get("Driver") or "", subnet=first.get("Subnet") or "",
        gateway=first.get("Gateway") or "", ip_range=first.get("IPRange") or "",
        internal=bool(body.get("Internal")), labels=body.get("Labels") or {}))
    return json_response({"Id": info.id, "Warning": ""}, status=201)


async def network_remove(request: web.Request) -> web.Response:
    await backends(request).networks.remove(request.match_info["id"])
    return web.Response(status=204)


async def networks_prune(request: web.Request) -> web.Response:
    if convert.filters(request.query):
        raise errors.NotImplementedYet("filters on network prune are not implemented by berth yet")
    removed = await backends(request).networks.prune()
    return json_response({"NetworksDeleted": removed or None})


async def network_connect(request: web.Request) -> web.Response:
    body = _object(await json_body(request))
    endpoint = body.get("EndpointConfig") or {}
    await backends(request).networks.connect(engine_pb2.ConnectNetworkRequest(
        network=request.match_info["id"], container=body.get("Container") or "",
        ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address") or "",
        aliases=endpoint.get("Aliases") or []))
    return web.Response(status=200)


async def network_disconnect(request: web.Request) -> web.Response:
    body = _object(await json_body(request))
    await backends(request).networks.disconnect(engine_pb2.ConnectNetworkRequest(
        network=request.match_info["id"], container=body.get("Container") or ""))
    return web.Response(status=200)
