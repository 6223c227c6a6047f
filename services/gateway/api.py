"""The Engine servicer: decode the request, call a backend, encode the reply. Nothing else.

It depends only on the backends' Protocols (services/gateway/backends/interfaces.py)."""

from __future__ import annotations

from google.protobuf import empty_pb2, timestamp_pb2

from berth.engine.v1 import engine_pb2, engine_pb2_grpc
from services.common import bulk, errors
from services.gateway import events as events_mod
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
                            attributes=dict(event.attributes), time=ts, seq=event.seq)


# cp's archive chunks and load's tarball are relayed as the serialized messages they are (services.common.bulk).
bulk.serve_bulk("/berth.engine.v1.EngineService/CopyToContainer", request_field=2)
bulk.serve_bulk("/berth.engine.v1.EngineService/CopyFromContainer", response_field=1)
bulk.serve_bulk("/berth.engine.v1.EngineService/LoadImages", request_field=1)


class EngineApi(engine_pb2_grpc.EngineServiceServicer):
    def __init__(self, backends: Backends):
        self._containers = backends.containers
        self._execs = backends.execs
        self._system = backends.system
        self._images = backends.images
        self._networks = backends.networks
        self._volumes = backends.volumes
        self._registry = backends.registry
        self._builds = backends.builds

    async def GetVersion(self, request, context):
        return self._system.version()

    async def CreateContainer(self, request, context):
        return engine_pb2.CreateContainerResponse(id=await self._containers.create(request.config))

    async def RunContainer(self, request, context):
        async for response in self._containers.run(request.config, request.attach):
            yield response

    async def StartContainer(self, request, context):
        await self._containers.start(request.id)
        return engine_pb2.StartContainerResponse()

    async def StopContainer(self, request, context):
        await self._containers.stop(request.id, request.timeout if request.HasField("timeout") else None)
        return engine_pb2.StopContainerResponse()

    async def RestartContainer(self, request, context):
        await self._containers.restart(request.id, request.timeout if request.HasField("timeout") else None)
        return engine_pb2.RestartContainerResponse()

    async def KillContainer(self, request, context):
        await self._containers.kill(request.id, request.signal)
        return engine_pb2.KillContainerResponse()

    async def RemoveContainer(self, request, context):
        await self._containers.remove(request.id, request.force, request.remove_volumes)
        return _EMPTY

    async def WaitContainer(self, request, context):
        status = await self._containers.wait(request.id)
        return engine_pb2.WaitContainerResponse(exit_code=status.exit_code, oom_killed=status.oom_killed)

    async def ListContainers(self, request, context):
        containers = await self._containers.list(request.all, _filters(request.filters))
        return engine_pb2.ListContainersResponse(containers=containers)

    async def InspectContainer(self, request, context):
        return engine_pb2.InspectContainerResponse(container=await self._containers.inspect(request.id))

    async def GetContainerLogs(self, request, context):
        since = request.since if request.HasField("since") else None
        until = request.until if request.HasField("until") else None
        # Without timestamps no line needs its own time: blocks of up to 1 MiB.
        async for chunk in self._containers.logs(request.id, request.follow, request.tail, since, until,
                                                 chunked=not request.timestamps):
            yield engine_pb2.GetContainerLogsResponse(chunk=chunk)

    async def LoadImages(self, request_iterator, context):
        async def chunks():
            async for chunk in request_iterator:
                if isinstance(chunk, bulk.Raw):
                    yield chunk
                elif chunk.data:
                    yield bulk.Raw.of(1, chunk.data)
        return await self._images.load(chunks())

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
        return engine_pb2.ImportImageResponse(image=await self._images.import_(
            header.reference, list(header.changes), header.message, chunks()))

    async def SaveImages(self, request, context):
        async for data in self._images.save(list(request.references)):
            yield engine_pb2.SaveImagesResponse(data=data)

    async def ListImages(self, request, context):
        return engine_pb2.ListImagesResponse(images=await self._images.list(request.all, request.reference))

    async def InspectImage(self, request, context):
        return engine_pb2.InspectImageResponse(image=await self._images.inspect(request.reference))

    async def TagImage(self, request, context):
        await self._images.tag(request.source, request.target)
        return _EMPTY

    async def RemoveImage(self, request, context):
        return await self._images.remove(request.reference, request.force)

    async def PullImage(self, request, context):
        async for message in self._registry.pull(request):
            yield engine_pb2.PullImageResponse(progress=message)

    async def PushImage(self, request, context):
        async for message in self._registry.push(request):
            yield engine_pb2.PushImageResponse(progress=message)

    async def CheckRegistryAuth(self, request, context):
        return await self._registry.login(request)

    async def ListNetworks(self, request, context):
        return engine_pb2.ListNetworksResponse(networks=await self._networks.list())

    async def CreateNetwork(self, request, context):
        return engine_pb2.CreateNetworkResponse(network=await self._networks.create(request))

    async def InspectNetwork(self, request, context):
        return engine_pb2.InspectNetworkResponse(network=await self._networks.inspect(request.name))

    async def RemoveNetwork(self, request, context):
        await self._networks.remove(request.name)
        return _EMPTY

    async def PruneNetworks(self, request, context):
        return engine_pb2.PruneNetworksResponse(removed=await self._networks.prune(request))

    async def ConnectNetwork(self, request, context):
        await self._networks.connect(request)
        return engine_pb2.ConnectNetworkResponse()

    async def DisconnectNetwork(self, request, context):
        await self._networks.disconnect(request)
        return _EMPTY

    async def ListVolumes(self, request, context):
        return engine_pb2.ListVolumesResponse(volumes=await self._volumes.list())

    async def CreateVolume(self, request, context):
        return engine_pb2.CreateVolumeResponse(volume=await self._volumes.create(request))

    async def InspectVolume(self, request, context):
        return engine_pb2.InspectVolumeResponse(volume=await self._volumes.inspect(request.name))

    async def RemoveVolume(self, request, context):
        await self._volumes.remove(request.name)
        return _EMPTY

    async def PruneVolumes(self, request, context):
        return await self._volumes.prune(request.all, list(request.labels))

    async def RenameContainer(self, request, context):
        await self._containers.rename(request.id, request.new_name)
        return _EMPTY

    async def CommitContainer(self, request, context):
        image_id = await self._containers.commit(request.container, request.reference,
                                              list(request.changes), request.message, request.author)
        return engine_pb2.CommitContainerResponse(id=image_id)

    async def DiffContainer(self, request, context):
        return engine_pb2.DiffContainerResponse(changes=await self._containers.diff(request.id))

    async def PruneContainers(self, request, context):
        return await self._system.prune_containers()

    async def UpdateContainerRestartPolicy(self, request, context):
        await self._containers.update_restart_policy(request.id, request.restart_policy)
        return _EMPTY

    async def GetDiskUsage(self, request, context):
        usage = await self._system.df()
        if self._builds is not None:
            usage.build_cache.extend(await self._builds.cache())
        return usage

    async def PruneSystem(self, request, context):
        return await self._system.prune(request.all, request.volumes)

    async def SubscribeEvents(self, request, context):
        async for event in self._system.subscribe_events(
                _seconds(request, "since"), _seconds(request, "until"), _filters(request.filters),
                request.after_seq if request.HasField("after_seq") else None):
            yield engine_pb2.SubscribeEventsResponse(event=event_to_pb(event))

    # -- processes, terminals and files ------------------------------------------------

    async def CreateExec(self, request, context):
        return engine_pb2.CreateExecResponse(id=await self._execs.create(request))

    async def StartExec(self, request_iterator, context):
        async for response in self._execs.start(request_iterator):
            yield response

    async def InspectExec(self, request, context):
        return engine_pb2.InspectExecResponse(exec=await self._execs.inspect(request.id))

    async def AttachContainer(self, request_iterator, context):
        async for response in self._execs.attach(request_iterator):
            yield response

    async def PauseContainer(self, request, context):
        await self._containers.pause(request.id)
        return engine_pb2.PauseContainerResponse()

    async def UnpauseContainer(self, request, context):
        await self._containers.unpause(request.id)
        return engine_pb2.UnpauseContainerResponse()

    async def ListContainerProcesses(self, request, context):
        return await self._containers.top(request)

    async def GetContainerStats(self, request, context):
        async for sample in self._containers.stats(request.id, request.stream):
            yield sample

    async def UpdateContainerResources(self, request, context):
        await self._containers.update(request)
        return _EMPTY

    async def CopyFromContainer(self, request, context):
        # CopyFromContainerResponse messages as the container service serialized them.
        async for chunk in self._containers.copy_from(request.id, request.path):
            yield chunk

    async def CopyToContainer(self, request_iterator, context):
        await self._containers.copy_to(request_iterator)
        return engine_pb2.CopyToContainerResponse()

    async def ExportContainer(self, request, context):
        async for data in self._containers.export(request.id):
            yield engine_pb2.ExportContainerResponse(data=data)

    # -- builds ---------------------------------------------------------------------------

    async def BuildImage(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "options":
            raise errors.InvalidArgument("build: the first message must carry the options")

        async def chunks():
            async for part in request_iterator:
                if part.WhichOneof("part") != "chunk":
                    raise errors.InvalidArgument("build: options come once, first")
                yield part.chunk
        async for event in self._builds.build(first.options, chunks()):
            yield engine_pb2.BuildImageResponse(event=event)

    async def ListNodes(self, request, context):
        return await self._networks.nodes()

    async def PruneBuildCache(self, request, context):
        deleted, reclaimed = await self._builds.prune(request.all)
        return engine_pb2.PruneBuildCacheResponse(deleted=deleted, space_reclaimed=reclaimed)
