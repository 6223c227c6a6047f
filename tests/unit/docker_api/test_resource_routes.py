"""The image, network and volume routes against fake backends: what each route asks its backend
(only through its Protocol), its filters and bad input, and the JSON it answers."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web

from berth.engine.v1 import engine_pb2
from services.common import errors
from services.gateway.backends import Backends
from services.gateway.docker.server import make_app

IMAGE = "sha256:" + "1" * 64


class FakeImages:
    def __init__(self):
        self.calls: list[tuple] = []

    async def prune(self, all_, until=None, labels=(), not_labels=()):
        if labels or not_labels:
            self.calls.append(("prune", all_, until, list(labels), list(not_labels)))
            return engine_pb2.PruneSystemResponse()
        self.calls.append(("prune", all_, until))
        return engine_pb2.PruneSystemResponse(
            images_untagged=["docker.io/library/old:1"], images_deleted=[IMAGE],
            space_reclaimed=0 if until else 5)

    async def list(self, all_, reference):
        self.calls.append(("list", all_))
        return [engine_pb2.ImageInfo(id=IMAGE, repo_tags=["docker.io/library/app:1"])]

    async def remove(self, reference, force):
        self.calls.append(("remove", reference, force))
        return engine_pb2.RemoveImageResponse(untagged=["docker.io/library/app:1"], deleted=[IMAGE])

    async def load(self, chunks):
        data = b"".join([bytes(c.data) async for c in chunks])  # serialized LoadImagesRequests (bulk.Raw)
        if data == b"abc":
            raise errors.InvalidArgument("not a valid image tarball")
        tags = ["docker.io/library/alpine:3.10", "docker.io/library/busybox:latest"]
        return engine_pb2.LoadImagesResponse(
            images=[engine_pb2.ImageInfo(id=IMAGE, repo_tags=tags), engine_pb2.ImageInfo(id="sha256:" + "2" * 64)],
            loaded_names=[engine_pb2.LoadedNames(names=tags[:1]), engine_pb2.LoadedNames()])


class FakeNetworks:
    def __init__(self):
        self.calls: list[tuple] = []

    async def prune(self, request=None):
        self.calls.append(("prune", tuple(request.labels) if request else ()))
        return []

    async def create(self, request):
        self.calls.append(("create", request.name, *(p.subnet for p in request.pools)))
        return engine_pb2.NetworkInfo(id="n" * 64, name=request.name)

    async def connect(self, request):
        self.calls.append(("connect", request.network, request.container, request.ipv4_address,
                           tuple(request.aliases)))


class FakeVolumes:
    def __init__(self):
        self.calls: list[tuple] = []

    async def prune(self, all_, labels):
        self.calls.append(("prune", all_, list(labels)))
        return engine_pb2.PruneVolumesResponse(deleted=["v1"], space_reclaimed=3)

    async def remove(self, name):
        self.calls.append(("remove", name))
        raise errors.NotFound(f"get {name}: no such volume")


@pytest.fixture
async def api(tmp_path):
    b = Backends(containers=object(), execs=object(), system=object(), images=FakeImages(),
                 networks=FakeNetworks(), volumes=FakeVolumes(), registry=object())
    runner = web.AppRunner(make_app(b), handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    path = str(tmp_path / "d.sock")
    await web.UnixSite(runner, path).start()
    session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path))

    async def call(method: str, url: str, body=None, **filters):
        params = {"filters": json.dumps(filters)} if filters else {}
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        async with session.request(method, "http://d" + url, params=params, data=data) as r:
            text = await r.read()
            return r.status, (json.loads(text) if text else None)
    try:
        yield call, b
    finally:
        await session.close()
        await runner.cleanup()


async def test_image_prune_without_until_asks_for_reachability_and_reports_space(api):
    call, b = api
    status, body = await call("POST", "/v1.47/images/prune", dangling=["false"])
    assert status == 200 and b.images.calls == [("prune", True, None)]
    assert body == {"ImagesDeleted": [{"Untagged": "old:1"}, {"Deleted": IMAGE}], "SpaceReclaimed": 5}


@pytest.mark.parametrize("filters, called", [
    ({"until": ["200", "100"]}, ("prune", False, 100.0)),
    ({"until": ["100"], "dangling": ["false"]}, ("prune", True, 100.0)),
    ({"until": ["100"], "dangling": ["true"]}, ("prune", False, 100.0)),
    ({"until": ["1970-01-01T00:01:40Z"]}, ("prune", False, 100.0)),
])
async def test_image_prune_until_passes_the_earliest_time(api, filters, called):
    call, b = api
    status, body = await call("POST", "/images/prune", **filters)
    assert status == 200 and b.images.calls == [called]
    assert body["SpaceReclaimed"] == 0


async def test_image_prune_by_label(api):
    call, b = api
    status, body = await call("POST", "/images/prune", **{"label": ["a=1"], "label!": ["keep"]})
    assert (status, body) == (200, {"ImagesDeleted": None, "SpaceReclaimed": 0})
    assert b.images.calls == [("prune", False, None, ["a=1"], ["keep"])]


@pytest.mark.parametrize("filters, message", [
    ({"colour": ["a"]}, "invalid filter 'colour'"),
    ({"until": ["soon"]}, "invalid time value: 'soon'"),
])
async def test_image_prune_bad_filters_are_400_and_remove_nothing(api, filters, message):
    call, b = api
    status, body = await call("POST", "/images/prune", **filters)
    assert (status, body["message"]) == (400, message)
    assert b.images.calls == []


async def test_load_answers_one_json_message_per_line_for_the_names_loaded(api, tmp_path):
    call, b = api
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(tmp_path / "d.sock"))) as s:
        async with s.post("http://d/v1.45/images/load", data=b"tar") as r:
            assert r.status == 200 and r.headers["Transfer-Encoding"] == "chunked"
            lines = [json.loads(line) for line in (await r.read()).splitlines()]
        assert lines == [{"stream": "Loaded image: alpine:3.10\n"}, {"stream": f"Loaded image ID: {'sha256:' + '2' * 64}\n"}]
        async with s.post("http://d/images/load", data=b"abc") as r:
            assert r.status == 200
            assert json.loads(await r.read())["error"] == "not a valid image tarball"


async def test_image_remove_answers_familiar_names(api):
    call, b = api
    status, body = await call("DELETE", "/images/app:1?force=1")
    assert status == 200 and body == [{"Untagged": "app:1"}, {"Deleted": IMAGE}]
    assert b.images.calls == [("remove", "app:1", True)]


async def test_network_routes(api):
    call, b = api
    status, body = await call("POST", "/networks/create", {"Name": "app", "IPAM": {"Config": [{"Subnet": "10.9.0.0/24"}]}})
    assert (status, body) == (201, {"Id": "n" * 64, "Warning": ""})
    status, _ = await call("POST", "/networks/app/connect", {
        "Container": "web", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.9.0.5"}, "Aliases": ["db"]}})
    assert status == 200
    assert b.networks.calls == [("create", "app", "10.9.0.0/24"), ("connect", "app", "web", "10.9.0.5", ("db",))]
    status, body = await call("POST", "/networks/create", ["not", "an", "object"])
    assert (status, body["message"]) == (400, "invalid JSON: the body must be an object")
    status, body = await call("POST", "/networks/prune", label=["x"])
    assert (status, body) == (200, {"NetworksDeleted": None})
    status, body = await call("POST", "/networks/prune", color=["x"])
    assert (status, body["message"]) == (400, "invalid filter 'color'")
    status, body = await call("POST", "/networks/prune")
    assert (status, body) == (200, {"NetworksDeleted": None})
    assert b.networks.calls[2:] == [("prune", ("x",)), ("prune", ())]
    # What berth cannot do is refused by name, never dropped.
    status, body = await call("POST", "/networks/create", {"Name": "x", "IPAM": {"Driver": "other"}})
    assert status == 501 and "IPAM driver" in body["message"]
    status, body = await call("POST", "/networks/create", {"Name": "x", "Scope": "swarm"})
    assert status == 501 and "scope" in body["message"]
    # As a dockerd outside swarm mode (docker-py's network tests call it in every tearDown).
    status, body = await call("POST", "/swarm/leave?force=True")
    assert (status, body["message"]) == (503, "This node is not part of a swarm")


async def test_volume_prune_and_forced_remove_of_a_missing_volume(api):
    call, b = api
    status, body = await call("POST", "/volumes/prune", all=["true"], label=["team=a"])
    assert (status, body) == (200, {"VolumesDeleted": ["v1"], "SpaceReclaimed": 3})
    status, body = await call("POST", "/volumes/prune", dangling=["true"])
    assert (status, body["message"]) == (400, "invalid filter 'dangling'")
    assert (await call("DELETE", "/volumes/gone?force=1"))[0] == 204
    status, body = await call("DELETE", "/volumes/gone")
    assert (status, body["message"]) == (404, "get gone: no such volume")
    assert b.volumes.calls == [("prune", True, ["team=a"]), ("remove", "gone"), ("remove", "gone")]
