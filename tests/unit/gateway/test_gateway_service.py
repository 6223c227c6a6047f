"""The gateway's composition against fake node services: steps, undo, --rm, events."""

from __future__ import annotations

import asyncio

import pytest

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from berth.types.v1 import mount_pb2
from berth.volume.v1 import volume_pb2
from services.common import errors
from services.common.config import Config
from services.gateway.backends.image_configs import ImageConfigs
from services.gateway.events import EventLog
from services.gateway.service import Gateway, Nodes

IMAGE_ID = "sha256:" + "1" * 64


class Fake:
    """A node client: records calls; `fail` makes a method raise."""

    def __init__(self, name: str, calls: list, fail: dict):
        self._name, self._calls, self._fail = name, calls, fail

    def _record(self, method: str, request):
        self._calls.append(f"{self._name}.{method}")
        if f"{self._name}.{method}" in self._fail:
            raise self._fail[f"{self._name}.{method}"]


class FakeImage(Fake):
    async def GetImage(self, request):
        self._record("GetImage", request)
        return image_pb2.Image(id=IMAGE_ID, repo_tags=["docker.io/library/busybox:latest"],
                               config=image_pb2.ImageConfig(cmd=["sh"], env=["A=1"]))

    async def PrepareSnapshot(self, request):
        self._record("PrepareSnapshot", request)
        return image_pb2.PrepareSnapshotResponse(
            mounts=[mount_pb2.Mount(type="overlay", source="overlay")], image_id=IMAGE_ID)

    async def RemoveSnapshot(self, request):
        self._record("RemoveSnapshot", request)


class FakeNetwork(Fake):
    async def Attach(self, request):
        self._record("Attach", request)
        return network_pb2.Endpoint(container_id=request.container_id, netns_path="/run/netns/x")

    async def Detach(self, request):
        self._record("Detach", request)


class FakeContainer(Fake):
    def __init__(self, *args):
        super().__init__(*args)
        self.created: container_pb2.CreateRequest | None = None

    async def Create(self, request):
        self._record("Create", request)
        self.created = request
        return container_pb2.Container(id=request.id, name="/" + request.name, metadata=request.metadata)

    async def Start(self, request):
        self._record("Start", request)
        return container_pb2.Container(id=request.id)

    async def Wait(self, request):
        self._record("Wait", request)
        await asyncio.sleep(0.01)
        return container_pb2.WaitResponse(exit_code=3)

    async def Logs(self, request):
        self._record("Logs", request)
        yield container_pb2.LogEntry(stream=container_pb2.LogEntry.STREAM_STDOUT, data=b"hi\n")

    async def Delete(self, request):
        self._record("Delete", request)

    async def Events(self, request):
        if False:
            yield


class FakeVolume:
    """No container here has volumes: removal's Release finds nothing to drop."""

    async def Release(self, request):
        return volume_pb2.ReleaseResponse()


@pytest.fixture
def world():
    calls: list[str] = []
    fail: dict[str, Exception] = {}
    nodes = Nodes(FakeImage("image", calls, fail), FakeNetwork("network", calls, fail),
                  FakeVolume(), FakeContainer("container", calls, fail))
    gw = Gateway(Config(), nodes, EventLog(), ImageConfigs(nodes.image))
    return gw, nodes, calls, fail


def _cfg(**kw):
    return engine_pb2.ContainerConfig(image="busybox", **kw)


async def _run(gw, cfg, attach=False):
    return [r async for r in gw.run(cfg, attach)]


async def test_run_detached_builds_the_spec(world):
    gw, nodes, calls, _ = world
    out = await _run(gw, _cfg(cmd=["echo", "x"], env=["B=2"], name="web", memory_bytes=1 << 26))
    cid = out[0].id
    assert len(cid) == 64
    assert calls == ["image.GetImage", "image.PrepareSnapshot", "network.Attach",
                     "container.Create", "container.Start"]
    req = nodes.container.created
    assert req.name == "web"
    assert list(req.spec.process.args) == ["echo", "x"]
    assert "A=1" in req.spec.process.env and "B=2" in req.spec.process.env
    assert req.spec.hostname == cid[:12]
    assert req.spec.netns_path == "/run/netns/x"
    assert req.spec.resources.memory_bytes == 1 << 26
    assert [e.action for e in gw.events.snapshot()] == ["create", "start"]
    assert gw.events.snapshot()[0].attributes["name"] == "web"


async def test_generated_name(world):
    gw, nodes, _, _ = world
    await _run(gw, _cfg())
    assert "_" in nodes.container.created.name


@pytest.mark.parametrize("cfg,message", [
    (_cfg(name="bad name"), "Invalid container name"),
    (engine_pb2.ContainerConfig(), "no image"),
])
async def test_invalid_input_prepares_nothing(world, cfg, message):
    gw, _, calls, _ = world
    with pytest.raises(errors.InvalidArgument, match=message):
        await _run(gw, cfg)
    assert calls == []


async def test_no_command(world):
    gw, nodes, calls, _ = world
    cfg = _cfg()
    cfg.entrypoint.SetInParent()
    with pytest.raises(errors.InvalidArgument, match="no command specified"):
        await _run(gw, cfg)
    assert calls == ["image.GetImage"]


@pytest.mark.parametrize("failing,undone", [
    ("image.PrepareSnapshot", ["network.Detach"]),
    ("network.Attach", ["image.RemoveSnapshot"]),
    ("container.Create", ["network.Detach", "image.RemoveSnapshot"]),
    ("container.Start", ["container.Delete", "network.Detach", "image.RemoveSnapshot"]),
])
async def test_failed_step_undoes_the_ones_before(world, failing, undone):
    gw, _, calls, fail = world
    fail[failing] = errors.AlreadyExists("original error")
    with pytest.raises(errors.AlreadyExists, match="original error"):
        await _run(gw, _cfg(name="web"))
    after = calls[calls.index(failing) + 1:] if failing != "image.PrepareSnapshot" else [
        c for c in calls if c not in ("image.GetImage", "image.PrepareSnapshot", "network.Attach")]
    assert sorted(after) == sorted(undone)
    actions = [e.action for e in gw.events.snapshot()]
    assert "start" not in actions
    assert actions in ([], ["create", "destroy"])


async def test_undo_failure_does_not_hide_the_original_error(world):
    gw, _, _, fail = world
    fail["container.Create"] = errors.InvalidArgument("bad spec")
    fail["network.Detach"] = errors.Unavailable("network down")
    with pytest.raises(errors.InvalidArgument, match="bad spec"):
        await _run(gw, _cfg())


async def test_attached_rm_streams_output_then_removes_then_exits(world):
    gw, _, calls, _ = world
    out = await _run(gw, _cfg(auto_remove=True), attach=True)
    kinds = [r.WhichOneof("event") for r in out]
    assert kinds == ["id", "output", "exit"]
    assert out[1].output.data == b"hi\n"
    assert out[2].exit.exit_code == 3
    assert {"container.Delete", "network.Detach", "image.RemoveSnapshot"} <= set(calls)
    assert gw.events.snapshot()[-1].action == "destroy"


async def test_exit_event_before_start_returns_is_published_after_start(world):
    gw, nodes, _, _ = world
    start = nodes.container.Start

    async def start_and_exit(request):
        await gw._on_task_event(container_pb2.TaskEvent(
            type=container_pb2.TaskEvent.TYPE_EXIT, container_id=request.id, exit_code=0))
        return await start(request)
    nodes.container.Start = start_and_exit
    await _run(gw, _cfg())
    assert [e.action for e in gw.events.snapshot()] == ["create", "start", "die"]
    assert gw.events.snapshot()[-1].attributes["exitCode"] == "0"


async def test_detached_rm_is_removed_on_exit_event(world):
    gw, _, calls, _ = world
    cid = (await _run(gw, _cfg(auto_remove=True)))[0].id
    await gw._on_task_event(container_pb2.TaskEvent(
        type=container_pb2.TaskEvent.TYPE_EXIT, container_id=cid, exit_code=0))
    await asyncio.sleep(0.01)
    assert "container.Delete" in calls
    assert [e.action for e in gw.events.snapshot()][-2:] == ["die", "destroy"]
