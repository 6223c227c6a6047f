"""Entry point: `python -m services.gateway`."""

from __future__ import annotations

from berth.container.v1 import container_pb2_grpc
from berth.engine.v1 import engine_pb2, engine_pb2_grpc
from berth.image.v1 import image_pb2_grpc
from berth.network.v1 import network_pb2_grpc
from berth.volume.v1 import volume_pb2_grpc
from services.common import process, rpc
from services.common.config import Config
from services.gateway.api import EngineApi
from services.gateway.backends import Backends
from services.gateway.backends.image_configs import ImageConfigs
from services.gateway.backends.images import Images, Registry
from services.gateway.backends.networks import Networks
from services.gateway.backends.volumes import Volumes
from services.gateway.docker.server import DockerApiServer
from services.gateway.events import EventLog
from services.gateway.service import Gateway, Nodes


async def build(config: Config):
    nodes = Nodes(
        image=rpc.connect(config, "image", image_pb2_grpc.ImageServiceStub),
        network=rpc.connect(config, "network", network_pb2_grpc.NetworkServiceStub),
        volume=rpc.connect(config, "volume", volume_pb2_grpc.VolumeServiceStub),
        container=rpc.connect(config, "container", container_pb2_grpc.ContainerServiceStub),
    )
    events = EventLog()
    image_configs = ImageConfigs(nodes.image)
    gateway = Gateway(config, nodes, events, image_configs)
    backends = Backends(
        containers=gateway, execs=gateway.depth, system=gateway,
        images=Images(nodes.image, events.publish, image_configs, gateway.image_usage),
        networks=Networks(nodes.network, events.publish, gateway.resolve_id),
        volumes=Volumes(nodes.volume, events.publish),
        registry=Registry(nodes.image, events.publish))
    gateway.start()
    # The Docker Engine API in this same loop, over the same backends the gRPC API uses.
    docker_api = DockerApiServer(config, backends)
    await docker_api.start()

    def register(server):
        engine_pb2_grpc.add_EngineServicer_to_server(EngineApi(backends), server)
        return [engine_pb2.DESCRIPTOR.services_by_name["Engine"].full_name]

    async def on_stop():
        await docker_api.stop()
        await gateway.close()
        for client in (nodes.image, nodes.network, nodes.volume, nodes.container):
            await client.channel.close()

    return register, on_stop


if __name__ == "__main__":
    process.run_service("gateway", build)
