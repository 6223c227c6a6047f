"""The routes a non-swarm dockerd answers, answered as it does: status codes and messages
that clients (docker-py's tearDown, `docker node ls`, compose) tell apart from failures."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from services.gateway.backends import Backends
from services.gateway.docker.routes.cluster import NOT_A_MANAGER, NOT_IN_SWARM
from services.gateway.docker.server import make_app


@pytest.fixture
async def call(tmp_path):
    b = Backends(containers=object(), execs=object(), system=object(), images=object(),
                 networks=object(), volumes=object(), registry=object())
    runner = web.AppRunner(make_app(b), handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    path = str(tmp_path / "d.sock")
    await web.UnixSite(runner, path).start()
    session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path))

    async def request(method: str, url: str):
        async with session.request(method, "http://d" + url) as r:
            return r.status, json.loads(await r.read())
    try:
        yield request
    finally:
        await session.close()
        await runner.cleanup()


@pytest.mark.parametrize("method, url", [
    ("GET", "/v1.41/swarm"), ("GET", "/nodes"), ("GET", "/v1.45/services"), ("POST", "/services/create"),
    ("GET", "/tasks"), ("GET", "/secrets"), ("DELETE", "/secrets/abc"), ("POST", "/configs/create"),
    ("GET", "/swarm/unlockkey"), ("POST", "/nodes/n1/update"),
])
async def test_cluster_routes_answer_not_a_manager(call, method, url):
    assert await call(method, url) == (503, {"message": NOT_A_MANAGER})


async def test_swarm_leave_answers_not_part_of_a_swarm(call):
    assert await call("POST", "/v1.45/swarm/leave?force=True") == (503, {"message": NOT_IN_SWARM})


async def test_swarm_init_is_refused_naming_it(call):
    status, body = await call("POST", "/swarm/init")
    assert status == 501 and "swarm init" in body["message"]


async def test_plugins_none_installed(call):
    assert await call("GET", "/plugins") == (200, [])
    assert await call("GET", "/plugins/vieux/sshfs:latest/json") == (
        404, {"message": 'plugin "vieux/sshfs:latest" not found'})
    status, body = await call("POST", "/plugins/pull?remote=vieux/sshfs")
    assert status == 501 and "plugin install" in body["message"]


async def test_distribution_inspect_is_refused_naming_it(call):
    status, body = await call("GET", "/distribution/docker.io/library/alpine:3.10/json")
    assert status == 501 and "distribution inspect" in body["message"]
