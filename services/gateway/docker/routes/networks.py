"""Network routes: list, create, inspect, remove, prune, connect, disconnect (the NetworkBackend only)."""

from __future__ import annotations

from aiohttp import web

from berth.engine.v1 import engine_pb2
from services.common import errors
from services.gateway.backends.interfaces import NetworkBackend
from berth_docker import api as convert
from services.gateway.docker.context import backends, json_object, json_response


def register(router) -> None:
    router.add("GET", "/networks", list_)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)


def _networks(request: web.Request) -> NetworkBackend:
    return backends(request).networks


async def list_(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - {"name", "id", "driver"})
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    out = []
    for n in await _networks(request).list():
        if flt.get("name") and not any(v in n.name for v in flt["name"]):
            continue
        if flt.get("id") and not any(n.id.startswith(v) for v in flt["id"]):
            continue
        if flt.get("driver") and n.driver not in flt["driver"]:
            continue
        out.append(convert.network_json(n))
    return json_response(out)


async def inspect(request: web.Request) -> web.Response:
    return json_response(convert.network_json(await _networks(request).inspect(request.match_info["id"])))


async def create(request: web.Request) -> web.Response:
    body = await json_object(request)
    ipam = ((body.get("IPAM") or {}).get("Config") or [{}])
    if len(ipam) > 1 or body.get("EnableIPv6"):
        raise errors.NotImplementedYet("more than one subnet, and IPv6, are not implemented by berth yet")
    first = ipam[0] if ipam else {}
    info = await _networks(request).create(engine_pb2.CreateNetworkRequest(
        name=body.get("Name") or "", driver=body.get("Driver") or "", subnet=first.get("Subnet") or "",
        gateway=first.get("Gateway") or "", ip_range=first.get("IPRange") or "",
        internal=bool(body.get("Internal")), labels=body.get("Labels") or {}))
    return json_response({"Id": info.id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.Response:
    await _networks(request).remove(request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    if convert.filters(request.query):
        raise errors.NotImplementedYet("filters on network prune are not implemented by berth yet")
    removed = await _networks(request).prune()
    return json_response({"NetworksDeleted": removed or None})


async def connect(request: web.Request) -> web.Response:
    body = await json_object(request)
    endpoint = body.get("EndpointConfig") or {}
    await _networks(request).connect(engine_pb2.ConnectNetworkRequest(
        network=request.match_info["id"], container=body.get("Container") or "",
        ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address") or "",
        aliases=endpoint.get("Aliases") or []))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await json_object(request)
    await _networks(request).disconnect(engine_pb2.ConnectNetworkRequest(
        network=request.match_info["id"], container=body.get("Container") or ""))
    return web.Response(status=200)
