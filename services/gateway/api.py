"""The Engine servicer: decode the request, call a backend, encode the reply. Nothing else."""

from __future__ import annotations

from google.protobuf import empty_pb2, timestamp_pb2

from berth.engine.v1 import engine_pb2, engine_pb2_grpc
from services.common import errors
from services.gateway import events as events_mod
from services.gateway import restart, system
from services.gateway.backends import Backends

_EMPTY = empty_pb2.Empty()


def _filters(field) -> dict[str, list[str]]:
    return {key: list(value.values) for key, value in field.items()}


def _seconds(request, name: str) -> float | None:
    if not request.HasField(name):
        return None
    ts = getattr(request, name)
    return ts.seconds + ts.nanos / 1e9


def event_to_pb(event: events_mod.Event) -> engine_pb2.Event:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(event.time * 1e9))
    return engine_pb2.Event(type=event.type, action=event.action, actor_id=event.actor_id,
                            attributes=dict(event.attributes), time=ts)


class EngineApi(engine_pb2_grpc.EngineServicer):
    def __init__(self, backends: Backends):
        self._b = backends
        self._gw = backends.containers

    async def Version(self, request, context):
        return self._gw.version()

    async def CreateContainer(self, request, context):
        return engine_pb2.CreateContainerResponse(id=await self._gw.create(request.config))

    async def Run(self, request, context):
        async for response in self._gw.run(request.config, request.attach):
            yield response

    async def StartContainer(self, request, context):
        await self._gw.start_container(request.id)
        return _EMPTY

    async def StopContainer(self, request, context):
        await self._gw.stop(request.id, request.timeout if request.HasField("timeout") else None)
        return _EMPTY

    async def RestartContainer(self, request, context):
        await self._gw.restart(request.id, request.timeout if request.HasField("timeout") else None)
        return _EMPTY

    async def KillContainer(self, request, context):
        await self._gw.kill(request.id, request.signal)
        return _EMPTY

    async def RemoveContainer(self, request, context):
        await self._gw.remove(request.id, request.force, request.remove_volumes)
        return _EMPTY

    async def WaitContainer(self, request, context):
        status = await self._gw.wait(request.id)
        return engine_pb2.WaitContainerResponse(exit_code=status.exit_code, oom_killed=status.oom_killed)

    async def ListContainers(self, request, context):
        containers = await self._gw.list(request.all, _filters(request.filters))
        return engine_pb2.ListContainersResponse(containers=containers)

    async def InspectContainer(self, request, context):
        return await self._gw.inspect(request.id)

    async def ContainerLogs(self, request, context):
        since = request.since if request.HasField("since") else None
        until = request.until if request.HasField("until") else None
        async for chunk in self._gw.logs(request.id, request.follow, request.tail, since, until):
            yield chunk

    async def LoadImages(self, request_iterator, context):
        async def chunks():
            async for chunk in request_iterator:
                yield chunk.data
        return engine_pb2.LoadImagesResponse(images=await self._b.images.load(chunks()))

    async def ImportImage(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.HasField("header"):
            raise errors.InvalidArgument("import must start with a header")

        async def chunks():
            async for part in request_iterator:
                if part.HasField("header"):
                    raise errors.InvalidArgument("import takes one header, first")
                yield part.chunk
        header = first.header
        return await self._b.images.import_(header.reference, list(header.changes), header.message, chunks())

    async def SaveImages(self, request, context):
        async for data in self._b.images.save(list(request.references)):
            yield engine_pb2.DataChunk(data=data)

    async def ListImages(self, request, context):
        return engine_pb2.ListImagesResponse(images=await self._b.images.list(request.all, request.reference))

    async def InspectImage(self, request, context):
        return await self._b.images.inspect(request.reference)

    async def TagImage(self, request, context):
        await self._b.images.tag(request.source, request.target)
        return _EMPTY

    async def RemoveImage(self, request, context):
        return await self._b.images.remove(request.reference, request.force)

    async def PullImage(self, request, context):
        async for message in self._b.registry.pull(request):
            yield message

    async def PushImage(self, request, context):
        async for message in self._b.registry.push(request):
            yield message

    async def Login(self, request, context):
        return await self._b.registry.login(request)

    async def ListNetworks(self, request, context):
        return engine_pb2.ListNetworksResponse(networks=await self._b.networks.list())

    async def CreateNetwork(self, request, context):
        return await self._b.networks.create(request)

    async def InspectNetwork(self, request, context):
        return await self._b.networks.inspect(request.name)

    async def RemoveNetwork(self, request, context):
        await self._b.networks.remove(request.name)
        return _EMPTY

    async def PruneNetworks(self, request, context):
        return engine_pb2.PruneNetworksResponse(removed=await self._b.networks.prune())

    async def ConnectNetwork(self, request, context):
        await self._b.networks.connect(request)
        return _EMPTY

    async def DisconnectNetwork(self, request, context):
        await self._b.networks.disconnect(request)
        return _EMPTY

    async def ListVolumes(self, request, context):
        return engine_pb2.ListVolumesResponse(volumes=await self._b.volumes.list())

    async def CreateVolume(self, request, context):
        return await self._b.volumes.create(request)

    async def InspectVolume(self, request, context):
        return await self._b.volumes.inspect(request.name)

    async def RemoveVolume(self, request, context):
        await self._b.volumes.remove(request.name)
        return _EMPTY

    async def PruneVolumes(self, request, context):
        return await self._b.volumes.prune(request.all, list(request.labels))

    async def RenameContainer(self, request, context):
        await system.rename(self._gw, request.id, request.new_name)
        return _EMPTY

    async def CommitContainer(self, request, context):
        image_id = await system.commit(self._gw, request.container, request.reference,
                                       list(request.changes), request.message, request.author)
        return engine_pb2.CommitContainerResponse(id=image_id)

    async def ContainerDiff(self, request, context):
        return engine_pb2.ContainerDiffResponse(changes=await system.diff(self._gw, request.id))

    async def PruneContainers(self, request, context):
        return await system.prune_containers(self._gw)

    async def UpdateRestartPolicy(self, request, context):
        await restart.update_policy(self._gw, request.id, request.restart_policy)
        return _EMPTY

    async def SystemDf(self, request, context):
        return await system.df(self._gw)

    async def SystemPrune(self, request, context):
        return await system.system_prune(self._gw, self._b, request.all, request.volumes)

    async def Events(self, request, context):
        async for event in self._gw.subscribe_events(
                _seconds(request, "since"), _seconds(request, "until"), _filters(request.filters)):
            yield event_to_pb(event)

    # -- processes, terminals and files (services/gateway/depth.py) ----------------

    async def ExecCreate(self, request, context):
        return engine_pb2.ExecCreateResponse(id=await self._gw.depth.exec_create(request))

    async def ExecStart(self, request_iterator, context):
        async for response in self._gw.depth.exec_start(request_iterator):
            yield response

    async def ExecInspect(self, request, context):
        return await self._gw.depth.exec_inspect(request.id)

    async def AttachContainer(self, request_iterator, context):
        async for response in self._gw.depth.attach(request_iterator):
            yield response

    async def PauseContainer(self, request, context):
        await self._gw.depth.pause(request.id)
        return _EMPTY

    async def UnpauseContainer(self, request, context):
        await self._gw.depth.unpause(request.id)
        return _EMPTY

    async def TopContainer(self, request, context):
        return await self._gw.depth.top(request)

    async def StatsContainer(self, request, context):
        async for sample in self._gw.depth.stats(request.id, request.stream):
            yield sample

    async def UpdateResources(self, request, context):
        await self._gw.depth.update(request)
        return _EMPTY

    async def CopyFromContainer(self, request, context):
        async for data in self._gw.depth.copy_from(request.id, request.path):
            yield engine_pb2.DataChunk(data=data)

    async def CopyToContainer(self, request_iterator, context):
        await self._gw.depth.copy_to(request_iterator)
        return _EMPTY

    async def ExportContainer(self, request, context):
        async for data in self._gw.depth.export(request.id):
            yield engine_pb2.DataChunk(data=data)
