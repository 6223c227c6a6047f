"""The images, registry, networks and volumes backends against fake node clients: what each asks
the node service, what it answers, and which events it publishes (only after the change)."""

from __future__ import annotations

import pytest
from google.protobuf import timestamp_pb2

from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from berth.volume.v1 import volume_pb2
from services.common import errors
from services.gateway.backends.image_configs import ImageConfigs
from services.gateway.backends.images import Images, Registry
from services.gateway.backends.interfaces import ImageBackend, NetworkBackend, RegistryBackend, VolumeBackend
from services.gateway.backends.networks import Networks
from services.gateway.backends.volumes import Volumes
from services.gateway.events import EventLog

OLD, NEW, USED = ("sha256:" + c * 64 for c in "abc")


def _image(image_id: str, seconds: int, *tags: str) -> image_pb2.Image:
    return image_pb2.Image(id=image_id, repo_tags=list(tags), created=timestamp_pb2.Timestamp(seconds=seconds),
                           config=image_pb2.ImageConfig(cmd=[image_id[-1]]))


class FakeImageService:
    def __init__(self):
        self.images = {OLD: _image(OLD, 100, "docker.io/library/old:1"), NEW: _image(NEW, 300),
                       USED: _image(USED, 50)}
        self.calls: list[tuple] = []
        self.fail_remove: set[str] = set()

    def _find(self, ref: str) -> image_pb2.Image:
        image = self.images.get(ref) or next((i for i in self.images.values() if ref in i.repo_tags), None)
        if image is None:
            raise errors.NotFound(f"No such image: {ref}")
        return image

    async def GetImage(self, request):
        self.calls.append(("GetImage", request.reference))
        return self._find(request.reference)

    async def ListImages(self, request):
        return image_pb2.ListImagesResponse(images=list(self.images.values()))

    async def RemoveImage(self, request):
        self.calls.append(("RemoveImage", request.reference, request.force))
        if request.reference in self.fail_remove:
            raise errors.Conflict("image is being used")
        image = self.images.pop(self._find(request.reference).id)
        return image_pb2.RemoveImageResponse(untagged=list(image.repo_tags), deleted=[image.id])

    async def PruneImages(self, request):
        self.calls.append(("PruneImages", request.all))
        return image_pb2.PruneImagesResponse(untagged=["docker.io/library/old:1"], deleted=[OLD],
                                             space_reclaimed=42)

    async def Tag(self, request):
        return self.images[request.source]

    async def Pull(self, request):
        self.calls.append(("Pull", request.reference, request.auth.username))
        yield image_pb2.Progress(id="layer", status="Downloading", current=1, total=2)
        if request.reference != "broken":
            yield image_pb2.Progress(status="Pulled", image_id=NEW)

    async def Login(self, request):
        return image_pb2.LoginResponse(status=f"Login Succeeded ({request.server})")


async def _usage() -> dict[str, int]:
    return {USED: 2}


@pytest.fixture
def images():
    service, events = FakeImageService(), EventLog()
    configs = ImageConfigs(service)
    return Images(service, events.publish, configs, _usage), service, configs, events


def _events(events: EventLog) -> list[tuple[str, str, str, dict]]:
    return [(e.type, e.action, e.actor_id, dict(e.attributes)) for e in events.snapshot()]


def test_the_implementations_have_every_method_of_their_protocol():
    for impl, protocol in ((Images, ImageBackend), (Registry, RegistryBackend), (Networks, NetworkBackend),
                           (Volumes, VolumeBackend)):
        wanted = {n for n in vars(protocol) if not n.startswith("_")}
        assert wanted <= set(dir(impl)), (impl, wanted - set(dir(impl)))


async def test_list_counts_containers_per_image_newest_first(images):
    backend, *_ = images
    infos = await backend.list(True, "")
    assert [(i.id, i.containers) for i in infos] == [(NEW, 0), (OLD, 0), (USED, 2)]
    assert isinstance(infos[0], engine_pb2.ImageInfo)


async def test_remove_publishes_untag_then_delete_and_forgets_the_config(images):
    backend, service, configs, events = images
    await backend.inspect(OLD)        # remembered: a create by full id asks nothing more
    await configs.resolve(OLD)
    assert service.calls.count(("GetImage", OLD)) == 1
    response = await backend.remove("docker.io/library/old:1", force=False)
    assert isinstance(response, engine_pb2.RemoveImageResponse)
    assert (list(response.untagged), list(response.deleted)) == (["docker.io/library/old:1"], [OLD])
    assert _events(events) == [("image", "untag", "", {"name": "old:1"}),
                               ("image", "delete", OLD, {"name": OLD})]
    with pytest.raises(errors.NotFound):
        await configs.resolve(OLD)     # forgotten: asked again, and it is gone


async def test_prune_by_reachability_reports_space_and_publishes_prune_last(images):
    backend, service, _, events = images
    response = await backend.prune(True)
    assert service.calls == [("PruneImages", True)]
    assert (list(response.images_untagged), list(response.images_deleted), response.space_reclaimed) == (
        ["docker.io/library/old:1"], [OLD], 42)
    assert [e[1] for e in _events(events)] == ["untag", "delete", "prune"]
    assert _events(events)[-1][3] == {"reclaimed": "42"}


@pytest.mark.parametrize("all_, until, removed", [
    (False, 1000, [NEW]),              # dangling only: the tagged one stays
    (True, 1000, [NEW, OLD]),          # all unused: the tagged one goes too (by force)
    (True, 200, [OLD]),                # created before `until` only
])
async def test_prune_until_removes_unused_images_one_by_one(images, all_, until, removed):
    backend, service, _, events = images
    response = await backend.prune(all_, until)
    assert [c[1] for c in service.calls if c[0] == "RemoveImage"] == removed
    assert USED not in [c[1] for c in service.calls if c[0] == "RemoveImage"]   # in use: never
    assert list(response.images_deleted) == removed and response.space_reclaimed == 0
    assert ("RemoveImage", OLD, True) in service.calls or OLD not in removed
    assert "prune" not in [e[1] for e in _events(events)]


async def test_prune_until_skips_what_the_image_service_refuses(images):
    backend, service, _, _ = images
    service.fail_remove.add(NEW)
    response = await backend.prune(True, 1000)
    assert list(response.images_deleted) == [OLD]


async def test_pull_relays_progress_and_publishes_only_a_finished_pull():
    service, events = FakeImageService(), EventLog()
    registry = Registry(service, events.publish)
    request = engine_pb2.PullImageRequest(reference="busybox:1", auth=engine_pb2.RegistryAuth(username="u"))
    out = [m async for m in registry.pull(request)]
    assert [(m.status, m.current, m.total) for m in out] == [("Downloading", 1, 2), ("Pulled", 0, 0)]
    assert service.calls == [("Pull", "busybox:1", "u")]
    assert _events(events) == [("image", "pull", NEW, {"name": "busybox:1"})]
    [m async for m in registry.pull(engine_pb2.PullImageRequest(reference="broken"))]
    assert len(_events(events)) == 1
    login = await registry.login(engine_pb2.LoginRequest(server="r.example"))
    assert login.status == "Login Succeeded (r.example)"


class FakeNetworkService:
    def __init__(self):
        self.calls: list[tuple] = []

    async def GetNetwork(self, request):
        if request.name not in ("app", "n" * 64):
            raise errors.NotFound(f"no network {request.name}")
        return network_pb2.Network(id="n" * 64, name="app", driver="bridge")

    async def Connect(self, request):
        self.calls.append(("Connect", request.container_id, request.network, tuple(request.aliases)))

    async def Disconnect(self, request):
        self.calls.append(("Disconnect", request.container_id, request.network))

    async def PruneNetworks(self, request):
        return network_pb2.PruneNetworksResponse(removed=["a", "b"])

    async def ListNetworks(self, request):
        return network_pb2.ListNetworksResponse(networks=[network_pb2.Network(id="n" * 64, name="app")])


async def _resolve(ref: str) -> str:
    if ref != "web":
        raise errors.NotFound(f"No such container: {ref}")
    return "c" * 64


async def test_connect_resolves_the_container_and_names_a_missing_network():
    service, events = FakeNetworkService(), EventLog()
    networks = Networks(service, events.publish, _resolve)
    await networks.connect(engine_pb2.ConnectNetworkRequest(network="app", container="web", aliases=["db"]))
    await networks.disconnect(engine_pb2.ConnectNetworkRequest(network="app", container="web"))
    assert service.calls == [("Connect", "c" * 64, "n" * 64, ("db",)), ("Disconnect", "c" * 64, "n" * 64)]
    attrs = {"name": "app", "type": "bridge", "container": "c" * 64}
    assert _events(events) == [("network", "connect", "n" * 64, attrs), ("network", "disconnect", "n" * 64, attrs)]
    with pytest.raises(errors.NotFound, match="^network nope not found$"):
        await networks.connect(engine_pb2.ConnectNetworkRequest(network="nope", container="web"))
    with pytest.raises(errors.NotFound, match="No such container: ghost"):
        await networks.connect(engine_pb2.ConnectNetworkRequest(network="app", container="ghost"))
    assert len(service.calls) == 2 and len(_events(events)) == 2   # nothing changed


async def test_network_prune_and_list():
    events = EventLog()
    networks = Networks(FakeNetworkService(), events.publish, _resolve)
    assert await networks.prune() == ["a", "b"]
    assert [(e[1], e[3]["name"]) for e in _events(events)] == [("destroy", "a"), ("destroy", "b")]
    assert [n.name for n in await networks.list()] == ["app"]


class FakeVolumeService:
    def __init__(self):
        self.prune_request = None

    async def GetVolume(self, request):
        if request.name != "data" or not request.with_size:
            raise errors.NotFound("not found")
        return volume_pb2.Volume(name="data", driver="local", refs=["c1", "c2"], size=7)

    async def RemoveVolume(self, request):
        raise errors.NotFound("not found")

    async def PruneVolumes(self, request):
        self.prune_request = request
        return volume_pb2.PruneVolumesResponse(deleted=["x"], space_reclaimed=9)


async def test_volumes_inspect_remove_and_prune():
    service, events = FakeVolumeService(), EventLog()
    volumes = Volumes(service, events.publish)
    info = await volumes.inspect("data")
    assert (info.ref_count, info.size, info.scope) == (2, 7, "local")
    with pytest.raises(errors.NotFound, match="^get gone: no such volume$"):
        await volumes.inspect("gone")
    with pytest.raises(errors.NotFound, match="^get gone: no such volume$"):
        await volumes.remove("gone")
    assert _events(events) == []
    response = await volumes.prune(True, ["team=a", "temp"])
    assert isinstance(response, engine_pb2.PruneVolumesResponse)
    assert (list(response.deleted), response.space_reclaimed) == (["x"], 9)
    assert service.prune_request.all and dict(service.prune_request.labels) == {"team": "a", "temp": ""}
    assert _events(events) == [("volume", "destroy", "x", {"driver": "local"})]
