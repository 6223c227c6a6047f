"""gRPC servicer of berth.container.v1.ContainerService: decode, call the service, encode."""

from __future__ import annotations

from google.protobuf import empty_pb2

from berth.container.v1 import container_pb2 as pb
from berth.container.v1 import container_pb2_grpc
from services.common import bulk
from services.container import convert
from services.container import task_api
from services.container.service import ContainerService


# cp's archive chunks travel as the serialized messages they are (services.common.bulk).
bulk.serve_bulk("/berth.container.v1.ContainerService/CopyToContainer", request_field=2)
bulk.serve_bulk("/berth.container.v1.ContainerService/CopyFromContainer", response_field=1)
# An exec's and an attach's output: messages serialized by task_api (bulk.output).
bulk.serve_bulk("/berth.container.v1.ContainerService/ExecProcess", response_field=2)
bulk.serve_bulk("/berth.container.v1.ContainerService/AttachContainer", response_field=2)


class ContainerApi(container_pb2_grpc.ContainerServiceServicer):
    def __init__(self, service: ContainerService):
        self.service = service

    async def CreateContainer(
            self, request: pb.CreateContainerRequest, context) -> pb.CreateContainerResponse:
        c = await self.service.create(request.id, request.name, dict(request.labels),
                                      convert.spec_from_pb(request.spec), request.metadata)
        return pb.CreateContainerResponse(container=convert.container_to_pb(c))

    async def StartContainer(self, request: pb.StartContainerRequest, context) -> pb.StartContainerResponse:
        return pb.StartContainerResponse(
            container=convert.container_to_pb(await self.service.start(request.id)))

    async def KillContainer(self, request: pb.KillContainerRequest, context) -> pb.KillContainerResponse:
        await self.service.kill(request.id, request.signal)
        return pb.KillContainerResponse()

    async def StopContainer(self, request: pb.StopContainerRequest, context) -> pb.StopContainerResponse:
        c = await self.service.stop(request.id, request.timeout_seconds, request.signal)
        return pb.StopContainerResponse(container=convert.container_to_pb(c))

    async def WaitContainer(self, request: pb.WaitContainerRequest, context) -> pb.WaitContainerResponse:
        return convert.exit_to_pb(await self.service.wait(request.id))

    async def RemoveContainer(self, request: pb.RemoveContainerRequest, context) -> empty_pb2.Empty:
        await self.service.delete(request.id, request.force)
        return empty_pb2.Empty()

    async def GetContainer(self, request: pb.GetContainerRequest, context) -> pb.GetContainerResponse:
        return pb.GetContainerResponse(container=convert.container_to_pb(self.service.get(request.id)))

    async def ListContainers(self, request: pb.ListContainersRequest, context) -> pb.ListContainersResponse:
        containers = self.service.list(dict(request.labels))
        return pb.ListContainersResponse(containers=[convert.container_to_pb(c) for c in containers])

    async def GetContainerLogs(self, request: pb.GetContainerLogsRequest, context):
        flt = convert.log_filter_from_pb(request)
        async for line in self.service.logs(request.id, request.follow, flt, request.chunked):
            yield pb.GetContainerLogsResponse(chunk=convert.log_line_to_pb(line))

    async def SubscribeTaskEvents(self, request: pb.SubscribeTaskEventsRequest, context):
        after_seq = request.after_seq if request.HasField("after_seq") else None
        async for event in self.service.events(after_seq):
            yield pb.SubscribeTaskEventsResponse(event=convert.event_to_pb(event))

    async def RenameContainer(
            self, request: pb.RenameContainerRequest, context) -> pb.RenameContainerResponse:
        return pb.RenameContainerResponse(
            container=convert.container_to_pb(await self.service.rename(request.id, request.new_name)))

    async def SetContainerMetadata(
            self, request: pb.SetContainerMetadataRequest, context) -> pb.SetContainerMetadataResponse:
        return pb.SetContainerMetadataResponse(
            container=convert.container_to_pb(await self.service.set_metadata(request.id, request.metadata)))

    # Processes, terminals and files: decoding lives in task_api.py.
    async def ExecProcess(self, request_iterator, context):
        async for reply in task_api.exec_(self.service, request_iterator):
            yield reply

    async def GetExec(self, request, context):
        return pb.GetExecResponse(exec=task_api.exec_info_to_pb(self.service.execs.inspect(request.exec_id)))

    async def ListExecs(self, request, context):
        return pb.ListExecsResponse(execs=[task_api.exec_info_to_pb(e)
                                           for e in self.service.execs.list(request.container_id)])

    async def AttachContainer(self, request_iterator, context):
        async for reply in task_api.attach(self.service, request_iterator):
            yield reply

    async def PauseContainer(self, request, context):
        return pb.PauseContainerResponse(container=await task_api.pause(self.service, request.id))

    async def ResumeContainer(self, request, context):
        return pb.ResumeContainerResponse(container=await task_api.resume(self.service, request.id))

    async def ListContainerProcesses(self, request, context):
        return await task_api.top(self.service, request)

    async def GetContainerStats(self, request, context):
        async for reply in task_api.stats(self.service, request):
            yield reply

    async def UpdateContainerResources(self, request, context):
        return pb.UpdateContainerResourcesResponse(container=await task_api.update(self.service, request))

    async def CopyFromContainer(self, request, context):
        async for reply in task_api.copy_out(self.service, request):
            yield reply

    async def CopyToContainer(self, request_iterator, context):
        await task_api.copy_in(self.service, request_iterator)
        return pb.CopyToContainerResponse()

    async def ExportContainer(self, request, context):
        async for reply in task_api.export(self.service, request):
            yield reply


def register(service: ContainerService):
    def add(server) -> list[str]:
        container_pb2_grpc.add_ContainerServiceServicer_to_server(ContainerApi(service), server)
        return [pb.DESCRIPTOR.services_by_name["ContainerService"].full_name]
    return add
