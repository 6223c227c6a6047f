"""The CRI gRPC servicers (runtime.v1 RuntimeService and ImageService): decode, call, encode."""

from __future__ import annotations

import asyncio

from berth.network.v1 import network_pb2
from k8s.cri.runtime.v1 import api_pb2 as cri
from k8s.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from services.common import errors
from services.cri.containers import Containers
from services.cri.images import Images
from services.cri.sandboxes import Sandboxes
from services.cri.streaming import StreamingServer

RUNTIME_NAME = "berth"
RUNTIME_VERSION = "0.1.0"
RUNTIME_API_VERSION = "v1"
# The version of the CRI this service implements (cri-api's Version: "0.1.0" for v1).
KUBE_API_VERSION = "0.1.0"


class RuntimeApi(cri_grpc.RuntimeServiceServicer):
    def __init__(self, sandboxes: Sandboxes, containers: Containers, network, streaming: StreamingServer):
        self.sandboxes = sandboxes
        self.containers = containers
        self.network = network
        self.streaming = streaming

    async def Version(self, request, context):
        return cri.VersionResponse(version=KUBE_API_VERSION, runtime_name=RUNTIME_NAME,
                                   runtime_version=RUNTIME_VERSION, runtime_api_version=RUNTIME_API_VERSION)

    async def Status(self, request, context):
        network_ready = cri.RuntimeCondition(type="NetworkReady", status=True)
        try:
            await self.network.ListNetworks(network_pb2.ListNetworksRequest(), timeout=5)
        except (errors.BerthError, asyncio.TimeoutError) as exc:
            network_ready = cri.RuntimeCondition(type="NetworkReady", status=False,
                                                 reason="NetworkServiceUnavailable", message=str(exc))
        return cri.StatusResponse(status=cri.RuntimeStatus(conditions=[
            cri.RuntimeCondition(type="RuntimeReady", status=True), network_ready]))

    async def UpdateRuntimeConfig(self, request, context):
        if request.runtime_config.network_config.pod_cidr:
            raise errors.InvalidArgument(
                "network_config.pod_cidr cannot be set: pods take addresses from berth's bridge network")
        return cri.UpdateRuntimeConfigResponse()

    # -- pod sandboxes ------------------------------------------------------------------

    async def RunPodSandbox(self, request, context):
        sid = await self.sandboxes.run(request.config, request.runtime_handler)
        return cri.RunPodSandboxResponse(pod_sandbox_id=sid)

    async def StopPodSandbox(self, request, context):
        await self.sandboxes.stop(request.pod_sandbox_id)
        return cri.StopPodSandboxResponse()

    async def RemovePodSandbox(self, request, context):
        await self.sandboxes.remove(request.pod_sandbox_id)
        return cri.RemovePodSandboxResponse()

    async def PodSandboxStatus(self, request, context):
        return await self.sandboxes.status(request.pod_sandbox_id, request.verbose)

    async def ListPodSandbox(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        return cri.ListPodSandboxResponse(items=self.sandboxes.list(flt))

    async def PodSandboxStats(self, request, context):
        return cri.PodSandboxStatsResponse(stats=await self._pod_stats(request.pod_sandbox_id))

    async def ListPodSandboxStats(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        ids = [s.id for s in self.sandboxes.list(None)
               if flt is None or ((not flt.id or s.id.startswith(flt.id))
                                  and all(s.labels.get(k) == v for k, v in flt.label_selector.items()))]
        return cri.ListPodSandboxStatsResponse(stats=[await self._pod_stats(i) for i in ids])

    async def _pod_stats(self, ref: str) -> cri.PodSandboxStats:
        record = self.sandboxes.get(ref)
        config = self.sandboxes.config(record)
        stats = await self.containers.list_stats(cri.ContainerStatsFilter(pod_sandbox_id=record.id))
        out = cri.PodSandboxStats(attributes=cri.PodSandboxAttributes(
            id=record.id, metadata=config.metadata, labels=config.labels, annotations=config.annotations))
        out.linux.containers.extend(stats)
        if stats:
            out.linux.cpu.timestamp = max(s.cpu.timestamp for s in stats)
            out.linux.cpu.usage_core_nano_seconds.value = sum(
                s.cpu.usage_core_nano_seconds.value for s in stats)
            out.linux.memory.timestamp = max(s.memory.timestamp for s in stats)
            out.linux.memory.working_set_bytes.value = sum(s.memory.working_set_bytes.value for s in stats)
            out.linux.memory.usage_bytes.value = sum(s.memory.usage_bytes.value for s in stats)
        return out

    # -- containers ---------------------------------------------------------------------

    async def CreateContainer(self, request, context):
        cid = await self.containers.create(request.pod_sandbox_id, request.config, request.sandbox_config)
        return cri.CreateContainerResponse(container_id=cid)

    async def StartContainer(self, request, context):
        await self.containers.start(request.container_id)
        return cri.StartContainerResponse()

    async def StopContainer(self, request, context):
        await self.containers.stop(request.container_id, request.timeout)
        return cri.StopContainerResponse()

    async def RemoveContainer(self, request, context):
        await self.containers.remove(request.container_id)
        return cri.RemoveContainerResponse()

    async def ListContainers(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        return cri.ListContainersResponse(containers=await self.containers.list(flt))

    async def ContainerStatus(self, request, context):
        return await self.containers.status(request.container_id, request.verbose)

    async def UpdateContainerResources(self, request, context):
        if request.HasField("windows"):
            raise errors.InvalidArgument("windows resources are not supported on this node")
        await self.containers.update_resources(request.container_id, request.linux)
        return cri.UpdateContainerResourcesResponse()

    async def ReopenContainerLog(self, request, context):
        self.containers.reopen_log(request.container_id)
        return cri.ReopenContainerLogResponse()

    async def ExecSync(self, request, context):
        return await self.containers.exec_sync(request.container_id, list(request.cmd), request.timeout)

    async def ContainerStats(self, request, context):
        return cri.ContainerStatsResponse(stats=await self.containers.stats(request.container_id))

    async def ListContainerStats(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        return cri.ListContainerStatsResponse(stats=await self.containers.list_stats(flt))

    # -- streaming ----------------------------------------------------------------------

    async def Exec(self, request, context):
        record = self.containers.record(request.container_id)
        return cri.ExecResponse(url=self.streaming.exec_url(request, record.id))

    async def Attach(self, request, context):
        record = self.containers.record(request.container_id)
        return cri.AttachResponse(url=self.streaming.attach_url(request, record.id))

    async def PortForward(self, request, context):
        record = self.sandboxes.ready(request.pod_sandbox_id)
        # A pod on the host's network has no address of its own: its ports are the host's.
        address = record.network.ip or "127.0.0.1"
        return cri.PortForwardResponse(url=self.streaming.port_forward_url(request, address))

    # -- not offered --------------------------------------------------------------------

    async def CheckpointContainer(self, request, context):
        raise errors.NotImplementedYet("checkpointing containers is not supported")

    async def GetContainerEvents(self, request, context):
        raise errors.NotImplementedYet("container events (evented PLEG) are not supported")
        yield  # an async generator: the RPC streams

    async def ListMetricDescriptors(self, request, context):
        raise errors.NotImplementedYet("pod sandbox metrics are not supported")

    async def ListPodSandboxMetrics(self, request, context):
        raise errors.NotImplementedYet("pod sandbox metrics are not supported")


class ImageApi(cri_grpc.ImageServiceServicer):
    def __init__(self, images: Images):
        self.images = images

    async def ListImages(self, request, context):
        flt = request.filter if request.HasField("filter") else None
        return cri.ListImagesResponse(images=await self.images.list(flt))

    async def ImageStatus(self, request, context):
        return await self.images.status(request.image, request.verbose)

    async def PullImage(self, request, context):
        auth = request.auth if request.HasField("auth") else None
        return cri.PullImageResponse(image_ref=await self.images.pull(request.image, auth))

    async def RemoveImage(self, request, context):
        await self.images.remove(request.image)
        return cri.RemoveImageResponse()

    async def ImageFsInfo(self, request, context):
        return await self.images.fs_info()
