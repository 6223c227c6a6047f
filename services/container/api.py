"""gRPC servicer of berth.container.v1.ContainerService: decode, call the service, encode."""

from __future__ import annotations

from google.protobuf import empty_pb2

from berth.container.v1 import container_pb2 as pb
from berth.container.v1 import container_pb2_grpc
from services.container import convert
from services.container import task_api
from services.container.service import ContainerService


class ContainerApi(container_pb2_grpc.ContainerServiceServicer):
    def __init__(self, service: ContainerService):
        self.service = service

    async def Create(self, request: pb.CreateRequest, context) -> pb.Container:
        c = await self.service.create(request.id, request.name, dict(request.labels),
                                      convert.spec_from_pb(request.spec), request.metadata)
        return convert.container_to_pb(c)

    async def Start(self, request: pb.StartRequest, context) -> pb.Container:
        return convert.container_to_pb(await self.service.start(request.id))

    async def Kill(self, request: pb.KillRequest, context) -> empty_pb2.Empty:
        await self.service.kill(request.id, request.signal)
        return empty_pb2.Empty()

    async def Stop(self, request: pb.StopRequest, context) -> pb.Container:
        c = await self.service.stop(request.id, request.timeout_seconds, request.signal)
        return convert.container_to_pb(c)

    async def Wait(self, request: pb.WaitRequest, context) -> pb.WaitResponse:
        return convert.exit_to_pb(await self.service.wait(request.id))

    async def Delete(self, request: pb.DeleteRequest, context) -> empty_pb2.Empty:
        await self.service.delete(request.id, request.force)
        return empty_pb2.Empty()

    async def Get(self, request: pb.GetRequest, context) -> pb.Container:
        return convert.container_to_pb(self.service.get(request.id))

    async def List(self, request: pb.ListRequest, context) -> pb.ListResponse:
        containers = self.service.list(dict(request.labels))
        return pb.ListResponse(containers=[convert.container_to_pb(c) for c in containers])

    async def Logs(self, request: pb.LogsRequest, context):
        flt = convert.log_filter_from_pb(request)
        async for line in self.service.logs(request.id, request.follow, flt, request.chunked):
            yield convert.log_line_to_pb(line)

    async def Events(self, request: pb.EventsRequest, context):
        after_seq = request.after_seq if request.HasField("after_seq") else None
        async for event in self.service.events(after_seq):
            yield convert.event_to_pb(event)

    async def Rename(self, request: pb.RenameRequest, context) -> pb.Container:
        return convert.container_to_pb(await self.service.rename(request.id, request.new_name))

    async def SetMetadata(self, request: pb.SetMetadataRequest, context) -> pb.Container:
        return convert.container_to_pb(await self.service.set_metadata(request.id, request.metadata))

    # Processes, terminals and files: decoding lives in task_api.py.
    async def Exec(self, request_iterator, context):
        async for reply in task_api.exec_(self.service, request_iterator):
            yield reply

    async def ExecInspect(self, request, context):
        return task_api.exec_info_to_pb(self.service.execs.inspect(request.exec_id))

    async def ListExecs(self, request, context):
        return pb.ListExecsResponse(execs=[task_api.exec_info_to_pb(e)
                                           for e in self.service.execs.list(request.container_id)])

    async def Attach(self, request_iterator, context):
        async for reply in task_api.attach(self.service, request_iterator):
            yield reply

    async def Pause(self, request, context):
        return await task_api.pause(self.service, request.id)

    async def Resume(self, request, context):
        return await task_api.resume(self.service, request.id)

    async def Top(self, request, context):
        return await task_api.top(self.service, request)

    async def Stats(self, request, context):
        async for reply in task_api.stats(self.service, request):
            yield reply

    async def Update(self, request, context):
        return await task_api.update(self.service, request)

    async def CopyOut(self, request, context):
        async for reply in task_api.copy_out(self.service, request):
            yield reply

    async def CopyIn(self, request_iterator, context):
        await task_api.copy_in(self.service, request_iterator)
        return empty_pb2.Empty()

    async def Export(self, request, context):
        async for reply in task_api.export(self.service, request):
            yield reply


def register(service: ContainerService):
    def add(server) -> list[str]:
        container_pb2_grpc.add_ContainerServiceServicer_to_server(ContainerApi(service), server)
        return [pb.DESCRIPTOR.services_by_name["ContainerService"].full_name]
    return add
