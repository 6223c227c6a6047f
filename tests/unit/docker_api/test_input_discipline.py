"""Bad input at the Docker API: the right status, a message naming what was wrong, nothing changed,
never a Python error; fields berth does not honour refused by name; bodies bounded as they arrive."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from berth.engine.v1 import engine_pb2
from berth_docker import create
from services.gateway.backends import Backends
from services.gateway.docker.context import MAX_JSON_BODY
from services.gateway.docker.server import make_app


class FakeContainers:
    def __init__(self):
        self.created: list[engine_pb2.ContainerConfig] = []
        self.tails: list[int] = []
        self.stops: list = []

    async def create(self, cfg):
        self.created.append(cfg)
        return "c" * 64

    async def inspect(self, ref):
        return engine_pb2.ContainerInfo(id="c" * 64, name="web")

    async def logs(self, ref, follow, tail, since, until, **_):
        self.tails.append(tail)
        return
        yield

    async def stop(self, ref, timeout):
        self.stops.append(timeout)

    async def kill(self, ref, signal):
        self.stops.append(("kill", signal))

    async def wait_until(self, ref, condition):
        self.stops.append(("waited", condition))
        return engine_pb2.ExitStatus(exit_code=137)


@pytest.fixture
async def call(tmp_path):
    containers = FakeContainers()
    b = Backends(containers=containers, execs=object(), system=object(), images=object(),
                 networks=object(), volumes=object(), registry=object())
    runner = web.AppRunner(make_app(b), handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    path = str(tmp_path / "d.sock")
    await web.UnixSite(runner, path).start()
    session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path))

    async def request(method: str, url: str, body=None, raw: bytes | None = None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with session.request(method, "http://d" + url, data=data) as r:
            text = await r.read()
            try:
                return r.status, json.loads(text) if text else None
            except json.JSONDecodeError:
                return r.status, text
    try:
        yield request, containers
    finally:
        await session.close()
        await runner.cleanup()


@pytest.mark.parametrize("body, status, words", [
    ({"Image": "busybox", "HostConfig": {"Memory": "x"}}, 400, "HostConfig.Memory: expected an integer, got a string"),
    ({"Image": "busybox", "HostConfig": {"Privileged": "yes"}}, 400, "HostConfig.Privileged: expected a boolean"),
    ({"Image": "busybox", "HostConfig": []}, 400, "HostConfig: expected an object"),
    ({"Image": "busybox", "Labels": {"a": 1}}, 400, "invalid Labels"),
    ({"Image": "busybox", "StopTimeout": 1 << 40}, 400, "StopTimeout"),
    ({"Image": "busybox", "HostConfig": {"Memory": 1 << 64}}, 400, "out of range"),
    ({"Image": "busybox", "Healthcheck": {"Test": ["CMD", "true"], "Interval": "5s"}}, 400, "Healthcheck.Interval"),
    ({"Image": "busybox", "HostConfig": {"CpuQuota": 50000}}, 501, "HostConfig.CpuQuota is not implemented"),
    ({"Image": "busybox", "HostConfig": {"Dns": ["1.1.1.1"]}}, 501, "HostConfig.Dns is not implemented"),
    ({"Image": "busybox", "HostConfig": {"LogConfig": {"Type": 3}}}, 400, "HostConfig.LogConfig.Type"),
    ({"Image": "busybox", "HostConfig": {"CgroupnsMode": "shared"}}, 400, "invalid cgroup namespace mode: shared"),
    ({"Image": "busybox", "HostConfig": {"Isolation": "hyperv"}}, 400, "invalid isolation"),
    ({"Image": "busybox", "Domainname": "example.com"}, 501, "Config.Domainname"),
    ({"Image": "busybox", "Labels": {"big": "x" * (create.MAX_LABEL_BYTES + 1)}}, 400, "invalid Labels"),
    ({"Image": "busybox", "HostConfig": {"VolumeDriver": "foo"}, "Volumes": {"/data": {}}}, 400, "volume driver"),
])
async def test_bad_create_bodies_are_refused_naming_the_field(call, body, status, words):
    request, containers = call
    got, answer = await request("POST", "/v1.45/containers/create", body)
    assert got == status and words in answer["message"]
    assert containers.created == []


async def test_defaults_as_clients_send_them_are_accepted(call):
    """The docker CLI and the SDK send every field, mostly with zero values: those are no request."""
    request, containers = call
    host = {k: None for k in create._HOST_TYPES} | {
        "CgroupnsMode": "host", "Isolation": "default",
        "LogConfig": {"Type": "json-file", "Config": {}}, "MemorySwappiness": 40, "VolumeDriver": "foo",
        "ConsoleSize": [24, 80], "CapDrop": [], "ShmSize": 0}
    status, answer = await request("POST", "/containers/create", {"Image": "busybox", "Env": ["Foo"], "HostConfig": host})
    assert status == 201 and "swappiness" in answer["Warnings"][0]
    cfg = containers.created[0]
    assert (cfg.isolation, cfg.cgroupns_mode, cfg.volume_driver, list(cfg.env)) == ("default", "host", "foo", ["Foo"])


async def test_a_json_body_is_capped_as_it_arrives(call):
    request, containers = call
    status, answer = await request("POST", "/containers/create", raw=b"{" + b" " * MAX_JSON_BODY + b"}")
    assert status == 413 and "too large" in answer["message"]
    assert containers.created == []


async def test_query_bounds(call):
    request, containers = call
    status, _ = await request("GET", "/containers/web/logs?stdout=1&tail=999999999999")
    assert status == 200 and containers.tails == [-1]
    status, answer = await request("POST", "/containers/web/stop?t=99999999999")
    assert status == 400 and "out of range" in answer["message"] and containers.stops == []


async def test_a_sigkill_is_answered_once_the_container_stopped(call):
    request, containers = call
    assert (await request("POST", "/containers/web/kill"))[0] == 204
    assert (await request("POST", "/containers/web/kill?signal=HUP"))[0] == 204
    assert containers.stops == [("kill", ""), ("waited", "not-running"), ("kill", "HUP")]
