"""What a dockerd that is not in a swarm answers: swarm, nodes, services, tasks, secrets, configs;
plugins (none installed) and distribution.

berth is one node and never joins a swarm, so every cluster route answers as a
non-swarm dockerd does, with its status codes and messages: clients tell "no
swarm here" from a real failure by exactly these. docker-py's tearDown calls
`POST /swarm/leave?force=1` after every network test and ignores only this 503;
`docker info`, `docker node ls` and compose read the same answers. Creating or
joining a swarm is refused with 501, naming what is missing.
"""

from __future__ import annotations

from aiohttp import web

from berth_errors import not_implemented
from services.common import errors
from services.gateway.docker.context import json_response

# dockerd's errors for a node outside any swarm (daemon/cluster/errors.go).
NOT_A_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
                 'to connect this node to swarm and try again.')
NOT_IN_SWARM = "This node is not part of a swarm"

# Routes of the swarm API that need a manager: every one answers NOT_A_MANAGER.
_MANAGER_ROUTES = (
    ("GET", "/swarm"), ("POST", "/swarm/update"), ("GET", "/swarm/unlockkey"), ("POST", "/swarm/unlock"),
    ("GET", "/nodes"), ("GET", "/nodes/{id}"), ("DELETE", "/nodes/{id}"), ("POST", "/nodes/{id}/update"),
    ("GET", "/services"), ("POST", "/services/create"), ("GET", "/services/{id}"),
    ("DELETE", "/services/{id}"), ("POST", "/services/{id}/update"), ("GET", "/services/{id}/logs"),
    ("GET", "/tasks"), ("GET", "/tasks/{id}"), ("GET", "/tasks/{id}/logs"),
    ("GET", "/secrets"), ("POST", "/secrets/create"), ("GET", "/secrets/{id}"),
    ("DELETE", "/secrets/{id}"), ("POST", "/secrets/{id}/update"),
    ("GET", "/configs"), ("POST", "/configs/create"), ("GET", "/configs/{id}"),
    ("DELETE", "/configs/{id}"), ("POST", "/configs/{id}/update"),
)

# Plugin routes that act on an installed plugin: with none installed, each is "not found".
_PLUGIN_ROUTES = (
    ("GET", "/plugins/{name:.+}/json"), ("DELETE", "/plugins/{name:.+}"), ("POST", "/plugins/{name:.+}/enable"),
    ("POST", "/plugins/{name:.+}/disable"), ("POST", "/plugins/{name:.+}/push"), ("POST", "/plugins/{name:.+}/set"),
    ("POST", "/plugins/{name:.+}/upgrade"),
)


def register(router) -> None:
    for method, path in _MANAGER_ROUTES:
        router.add(method, path, not_a_manager)
    router.add("POST", "/swarm/leave", leave)
    router.add("POST", "/swarm/init", _refused("swarm mode (swarm init)"))
    router.add("POST", "/swarm/join", _refused("swarm mode (swarm join)"))
    router.add("GET", "/plugins", plugins)
    for method, path in _PLUGIN_ROUTES:
        router.add(method, path, plugin_not_found)
    router.add("GET", "/plugins/privileges", _refused("plugins (plugin privileges)"))
    router.add("POST", "/plugins/pull", _refused("plugins (plugin install)"))
    router.add("POST", "/plugins/create", _refused("plugins (plugin create)"))
    router.add("GET", "/distribution/{name:.+}/json", _refused("distribution inspect"))


async def not_a_manager(request: web.Request) -> web.Response:
    raise errors.Unavailable(NOT_A_MANAGER)


async def leave(request: web.Request) -> web.Response:
    raise errors.Unavailable(NOT_IN_SWARM)


async def plugins(request: web.Request) -> web.Response:
    return json_response([])


async def plugin_not_found(request: web.Request) -> web.Response:
    raise errors.NotFound(f'plugin "{request.match_info["name"]}" not found')


def _refused(what: str):
    async def handler(request: web.Request) -> web.Response:
        raise not_implemented(what)
    return handler
