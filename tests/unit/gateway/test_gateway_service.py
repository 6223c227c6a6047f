"""The gateway's backends, wired as __main__ wires them, against fake node services:
steps, undo, --rm, events from the ordered task event stream, the store."""

from __future__ import annotations

import asyncio

import pytest

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from berth.types.v1 import mount_pb2
from berth.volume.v1 import volume_pb2
from berth.types.v1 import stdio_pb2
from services.common import errors
from services.common.config import Config
from services.gateway.__main__ import wire
from services.gateway.store import GatewayStore

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
        return image_pb2.GetImageResponse(
            image=image_pb2.Image(id=IMAGE_ID, repo_tags=["docker.io/library/busybox:latest"],
                                  config=image_pb2.ImageConfig(cmd=["sh"], env=["A=1"])))

    async def PrepareSnapshot(self, request):
        self._record("PrepareSnapshot", request)
        return image_pb2.PrepareSnapshotResponse(
            mounts=[mount_pb2.Mount(type="overlay", source="overlay")], image_id=IMAGE_ID)

    async def RemoveSnapshot(self, request):
        self._record("RemoveSnapshot", request)


class FakeNetwork(Fake):
    async def CreateEndpoint(self, request):
        self._record("CreateEndpoint", request)
        return network_pb2.CreateEndpointResponse(
            endpoint=network_pb2.Endpoint(container_id=request.container_id, netns_path="/run/netns/x"))

    async def AwaitEndpoint(self, request):
        # Not in `calls`: it runs beside CreateContainer, in no fixed order with it.
        if "network.AwaitEndpoint" in self._fail:
            raise self._fail["network.AwaitEndpoint"]

    async def DeleteEndpoint(self, request):
        self._record("DeleteEndpoint", request)

    async def PublishPorts(self, request):
        self._record("PublishPorts", request)
        return network_pb2.PublishPortsResponse()

    async def UnpublishPorts(self, request):
        self._record("UnpublishPorts", request)

    async def ListEndpoints(self, request):
        self._record("ListEndpoints", request)
        return network_pb2.ListEndpointsResponse()


class FakeContainer(Fake):
    """Start reports the task's START on the event stream before it answers, as the
    container service commits it before runc start returns to it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.created: container_pb2.CreateContainerRequest | None = None
        self.task_events = None
        self.seq = 0

    def emit(self, type_, cid, **fields):
        self.seq += 1
        self.task_events.handle(container_pb2.TaskEvent(type=type_, container_id=cid, seq=self.seq, **fields))

    async def CreateContainer(self, request):
        self._record("CreateContainer", request)
        self.created = request
        return container_pb2.CreateContainerResponse(container=container_pb2.Container(
            id=request.id, name="/" + request.name, metadata=request.metadata))

    async def GetContainer(self, request):
        return container_pb2.GetContainerResponse(
            container=container_pb2.Container(id=request.id, name="/x", status=container_pb2.STATUS_STOPPED))

    async def StartContainer(self, request):
        self._record("StartContainer", request)
        self.emit(container_pb2.TaskEvent.TYPE_START, request.id)
        return container_pb2.StartContainerResponse(container=container_pb2.Container(id=request.id))

    async def WaitContainer(self, request):
        self._record("WaitContainer", request)
        await asyncio.sleep(0.01)
        return container_pb2.WaitContainerResponse(exit_code=3)

    async def AttachContainer(self, requests):
        """Attached, then (once started) the output and the exit, as conmon's socket gives them."""
        first = await anext(aiter(requests))
        self._record("AttachContainer", first)
        yield container_pb2.AttachContainerResponse(attached=True)
        while "container.StartContainer" not in self._calls:
            await asyncio.sleep(0.01)
        yield container_pb2.AttachContainerResponse(
            output=stdio_pb2.OutputChunk(stream=stdio_pb2.OUTPUT_STREAM_STDOUT, data=b"hi\n"))
        yield container_pb2.AttachContainerResponse(exit=container_pb2.WaitContainerResponse(exit_code=3))

    async def RemoveContainer(self, request):
        self._record("RemoveContainer", request)

    async def SubscribeTaskEvents(self, request):
        if False:
            yield


class FakeVolume:
    """No container here has volumes: removal's Release finds nothing to drop."""

    async def ReleaseVolumes(self, request):
        return volume_pb2.ReleaseVolumesResponse()


class Nodes:
    def __init__(self, calls, fail):
        self.image = FakeImage("image", calls, fail)
        self.network = FakeNetwork("network", calls, fail)
        self.volume = FakeVolume()
        self.container = FakeContainer("container", calls, fail)


class World:
    def __init__(self, wiring, store):
        self.events, self.store = wiring.events, store
        self.containers = wiring.backends.containers

    def run(self, cfg, attach):
        return self.containers.run(cfg, attach)


@pytest.fixture
async def world(tmp_path):
    calls: list[str] = []
    fail: dict[str, Exception] = {}
    nodes = Nodes(calls, fail)
    store = GatewayStore(str(tmp_path / "gateway.db"))
    wiring = wire(Config(), nodes.image, nodes.network, nodes.volume, nodes.container, store)
    nodes.container.task_events = wiring.task_events
    yield World(wiring, store), nodes, calls, fail
    await wiring.tasks.close()
    store.close()


def _cfg(**kw):
    return engine_pb2.ContainerConfig(image="busybox", **kw)


async def _run(gw, cfg, attach=False):
    return [r async for r in gw.run(cfg, attach)]


async def test_run_detached_builds_the_spec(world):
    gw, nodes, calls, _ = world
    out = await _run(gw, _cfg(cmd=["echo", "x"], env=["B=2"], name="web", memory_bytes=1 << 26))
    cid = out[0].id
    assert len(cid) == 64
    assert calls == ["image.GetImage", "image.PrepareSnapshot", "network.CreateEndpoint",
                     "container.CreateContainer", "container.StartContainer"]
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
    ("image.PrepareSnapshot", ["network.DeleteEndpoint"]),
    ("network.CreateEndpoint", ["image.RemoveSnapshot"]),
    ("container.CreateContainer", ["network.DeleteEndpoint", "image.RemoveSnapshot"]),
    ("container.StartContainer", [
        "container.RemoveContainer", "network.DeleteEndpoint", "image.RemoveSnapshot"]),
])
async def test_failed_step_undoes_the_ones_before(world, failing, undone):
    gw, _, calls, fail = world
    fail[failing] = errors.AlreadyExists("original error")
    with pytest.raises(errors.AlreadyExists, match="original error"):
        await _run(gw, _cfg(name="web"))
    after = calls[calls.index(failing) + 1:] if failing != "image.PrepareSnapshot" else [
        c for c in calls if c not in ("image.GetImage", "image.PrepareSnapshot", "network.CreateEndpoint")]
    assert sorted(after) == sorted(undone)
    actions = [e.action for e in gw.events.snapshot()]
    assert "start" not in actions
    assert actions in ([], ["create", "destroy"])


async def test_endpoint_plumbing_failure_undoes_the_create(world):
    """The veth is plumbed while the container is created: its failure removes the container
    made meanwhile and everything before it, and nothing starts."""
    gw, _, calls, fail = world
    fail["network.AwaitEndpoint"] = errors.Internal("no veth")
    with pytest.raises(errors.Internal, match="no veth"):
        await _run(gw, _cfg(name="web"))
    after = calls[calls.index("container.CreateContainer") + 1:]
    assert sorted(after) == sorted(["container.RemoveContainer", "network.DeleteEndpoint", "image.RemoveSnapshot"])
    assert [e.action for e in gw.events.snapshot()] == []


async def test_undo_failure_does_not_hide_the_original_error(world):
    gw, _, _, fail = world
    fail["container.CreateContainer"] = errors.InvalidArgument("bad spec")
    fail["network.DeleteEndpoint"] = errors.Unavailable("network down")
    with pytest.raises(errors.InvalidArgument, match="bad spec"):
        await _run(gw, _cfg())


async def test_attached_rm_streams_output_then_removes_then_exits(world):
    gw, _, calls, _ = world
    out = await _run(gw, _cfg(auto_remove=True), attach=True)
    kinds = [r.WhichOneof("event") for r in out]
    assert kinds == ["id", "output", "exit"]
    assert out[1].output.data == b"hi\n"
    assert out[2].exit.exit_code == 3
    assert {"container.RemoveContainer", "network.DeleteEndpoint", "image.RemoveSnapshot"} <= set(calls)
    assert gw.events.snapshot()[-1].action == "destroy"


async def test_exit_before_start_returns_is_published_after_start(world):
    """A process that exits at once: the stream has its START before its EXIT."""
    gw, nodes, _, _ = world
    start = nodes.container.StartContainer

    async def start_and_exit(request):
        reply = await start(request)
        nodes.container.emit(container_pb2.TaskEvent.TYPE_EXIT, request.id, exit_code=0)
        return reply
    nodes.container.StartContainer = start_and_exit
    await _run(gw, _cfg())
    assert [e.action for e in gw.events.snapshot()] == ["create", "start", "die"]
    assert gw.events.snapshot()[-1].attributes["exitCode"] == "0"


async def test_detached_rm_is_removed_on_exit_event(world):
    gw, nodes, calls, _ = world
    cid = (await _run(gw, _cfg(auto_remove=True)))[0].id
    nodes.container.emit(container_pb2.TaskEvent.TYPE_EXIT, cid, exit_code=0)
    await asyncio.sleep(0.01)
    assert "container.RemoveContainer" in calls
    assert [e.action for e in gw.events.snapshot()][-2:] == ["die", "destroy"]


async def test_reconcile_imports_old_containers_and_drops_rows_without_one(world):
    """A data root from before the store: the record is read from the node's metadata once;
    a row whose container is gone (a create or remove cut short) is dropped."""
    from services.gateway import convert
    from services.gateway.store import ContainerRecord
    gw, _, _, _ = world
    cfg = engine_pb2.ContainerConfig(image="busybox", labels={"a": "b"})
    meta = convert.Metadata("busybox", IMAGE_ID, cfg, "bridge", False, 7, restart_count=2)
    old = container_pb2.Container(id="d" * 64, name="/old", metadata=meta.encode(),
                                  status=container_pb2.STATUS_RUNNING)
    gw.store.put(ContainerRecord(id="e" * 64, name="gone", image="busybox", image_id=IMAGE_ID,
                                 config=cfg, network_mode="bridge"))
    await gw.containers.reconcile([old])
    record = gw.store.get("d" * 64)
    assert (record.name, record.image_id, record.stop_timeout, record.restart_count) == (
        "old", IMAGE_ID, 7, 2)
    assert record.config == cfg
    assert gw.store.get("e" * 64) is None
