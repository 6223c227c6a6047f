"""Network routes: list, create, inspect, remove, prune, connect, disconnect (the NetworkBackend only)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from aiohttp import web

from berth.engine.v1 import engine_pb2
from services.common import errors
from services.gateway.backends.interfaces import NetworkBackend
from berth_docker import api as convert
from berth_docker.query import label_matches
from berth_docker.times import parse_since
from services.gateway.docker.context import backends, json_object, json_response

_BUILTIN = ("bridge", "host", "none")
_LIST_FILTERS = {"name", "id", "driver", "label", "type", "scope", "dangling"}


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


def _bool_filter(values: list[str], name: str) -> bool | None:
    if not values:
        return None
    if any(v.lower() not in ("1", "true", "0", "false") for v in values):
        raise errors.InvalidArgument(f"invalid filter '{name}={values[0]}'")
    return values[-1].lower() in ("1", "true")


def _matches(n: engine_pb2.NetworkInfo, flt: dict[str, list[str]]) -> bool:
    if flt.get("name") and not any(v in n.name for v in flt["name"]):
        return False
    if flt.get("id") and not any(n.id.startswith(v) for v in flt["id"]):
        return False
    if flt.get("driver") and n.driver not in flt["driver"]:
        return False
    if flt.get("label") and not all(label_matches(n.labels, v) for v in flt["label"]):
        return False
    if flt.get("scope") and "local" not in flt["scope"]:
        return False
    builtin = n.name in _BUILTIN
    for kind in flt.get("type", []):
        if kind not in ("custom", "builtin"):
            raise errors.InvalidArgument(f"invalid filter: 'type'='{kind}'")
    if flt.get("type") and ("builtin" if builtin else "custom") not in flt["type"]:
        return False
    dangling = _bool_filter(flt.get("dangling", []), "dangling")
    if dangling is not None and dangling != (not builtin and not n.containers):
        return False
    return True


async def list_(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - _LIST_FILTERS)
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    out = [convert.network_json(n) for n in await _networks(request).list() if _matches(n, flt)]
    return json_response(out)


async def inspect(request: web.Request) -> web.Response:
    scope = request.query.get("scope", "")
    if scope not in ("", "local"):
        raise errors.NotFound(f"network {request.match_info['id']} not found")
    return json_response(convert.network_json(await _networks(request).inspect(request.match_info["id"])))


def _string_map(value, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise errors.InvalidArgument(f"invalid {field}: expected an object of strings")
    return {str(k): str(v) for k, v in value.items()}


def create_request(body: Mapping) -> engine_pb2.CreateNetworkRequest:
    """`POST /networks/create`'s body; what berth cannot do is refused by name."""
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, Mapping):
        raise errors.InvalidArgument("invalid IPAM: expected an object")
    if (ipam.get("Driver") or "default") != "default":
        raise errors.NotImplementedYet(f"IPAM driver {ipam['Driver']!r}: only the default one is available")
    if ipam.get("Options"):
        raise errors.InvalidArgument("IPAM.Options: the default IPAM driver has no options")
    if body.get("Ingress"):
        raise errors.NotImplementedYet("ingress networks (swarm mode) are not available on berth")
    if body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
        raise errors.NotImplementedYet("ConfigOnly/ConfigFrom networks are not available on berth")
    scope = body.get("Scope") or ("global" if body.get("Driver") == "overlay" else "local")
    if scope != ("global" if body.get("Driver") == "overlay" else "local"):
        raise errors.NotImplementedYet(f"network scope {body['Scope']!r}: bridge networks are local, "
                                       "overlay networks global (swarm scope is not available on berth)")
    r = engine_pb2.CreateNetworkRequest(
        name=body.get("Name") or "", driver=body.get("Driver") or "", internal=bool(body.get("Internal")),
        labels=_string_map(body.get("Labels"), "Labels"), enable_ipv6=bool(body.get("EnableIPv6")),
        options=_string_map(body.get("Options"), "Options"), attachable=bool(body.get("Attachable")))
    for pool in ipam.get("Config") or []:
        if not isinstance(pool, Mapping):
            raise errors.InvalidArgument("invalid IPAM.Config entry: expected an object")
        if not pool.get("Subnet") and (pool.get("Gateway") or pool.get("IPRange")):
            raise errors.InvalidArgument("IPAM.Config: Gateway and IPRange need a Subnet")
        if not pool.get("Subnet"):
            continue
        r.pools.append(engine_pb2.NetworkPool(
            subnet=pool["Subnet"], gateway=pool.get("Gateway") or "", ip_range=pool.get("IPRange") or "",
            aux_addresses=_string_map(pool.get("AuxiliaryAddresses") or pool.get("AuxAddress"),
                                      "AuxiliaryAddresses")))
    return r


async def create(request: web.Request) -> web.Response:
    info = await _networks(request).create(create_request(await json_object(request)))
    return json_response({"Id": info.id, "Warning": ""}, status=201)


async def remove(request: web.Request) -> web.Response:
    await _networks(request).remove(request.match_info["id"])
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - {"label", "label!", "until"})
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    r = engine_pb2.PruneNetworksRequest(labels=flt.get("label", []), not_labels=flt.get("label!", []))
    if flt.get("until"):
        until = min(parse_since(v, time.time()) for v in flt["until"])
        r.until = convert.rfc3339(convert.to_pb_time(until))
    removed = await _networks(request).prune(r)
    return json_response({"NetworksDeleted": removed or None})


def endpoint_settings(endpoint: Mapping) -> engine_pb2.NetworkEndpointSettings:
    """An EndpointSettings object (connect's EndpointConfig, create's EndpointsConfig entries)."""
    if not isinstance(endpoint, Mapping):
        raise errors.InvalidArgument("invalid EndpointConfig: expected an object")
    ipam = endpoint.get("IPAMConfig") or {}
    links = endpoint.get("Links") or []
    if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
        raise errors.InvalidArgument("invalid Links: expected a list of \"container:alias\"")
    return engine_pb2.NetworkEndpointSettings(
        ipv6_address=ipam.get("IPv6Address") or "", links=links,
        mac_address=endpoint.get("MacAddress") or "",
        driver_opts=_string_map(endpoint.get("DriverOpts"), "DriverOpts"),
        link_local_ips=list(ipam.get("LinkLocalIPs") or []))


async def connect(request: web.Request) -> web.Response:
    body = await json_object(request)
    endpoint = body.get("EndpointConfig") or {}
    settings = endpoint_settings(endpoint)
    await _networks(request).connect(engine_pb2.ConnectNetworkRequest(
        network=request.match_info["id"], container=body.get("Container") or "",
        ipv4_address=(endpoint.get("IPAMConfig") or {}).get("IPv4Address") or "",
        aliases=endpoint.get("Aliases") or [], settings=settings))
    return web.Response(status=200)


async def disconnect(request: web.Request) -> web.Response:
    body = await json_object(request)
    await _networks(request).disconnect(engine_pb2.DisconnectNetworkRequest(
        network=request.match_info["id"], container=body.get("Container") or "",
        force=bool(body.get("Force"))))
    return web.Response(status=200)

