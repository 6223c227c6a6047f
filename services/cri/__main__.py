"""Entry point: `python -m services.cri`. The wiring: the CRI's parts and the node services they use."""

from __future__ import annotations

import os

from berth.container.v1 import container_pb2_grpc
from berth.image.v1 import image_pb2_grpc
from berth.network.v1 import network_pb2_grpc
from k8s.cri.runtime.v1 import api_pb2 as cri
from k8s.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from services.common import process, rpc
from services.common.config import Config
from services.cri.api import ImageApi, RuntimeApi
from services.cri.containers import Containers
from services.cri.images import Images
from services.cri.logs import LogRelays
from services.cri.reconcile import reconcile
from services.cri.sandboxes import Sandboxes
from services.cri.store import CriStore
from services.cri.streaming import StreamingServer


async def build(config: Config):
    clients = [
        image := rpc.connect(config, "image", image_pb2_grpc.ImageServiceStub),
        network := rpc.connect(config, "network", network_pb2_grpc.NetworkServiceStub),
        container := rpc.connect(config, "container", container_pb2_grpc.ContainerServiceStub),
    ]
    state_dir = config.state_dir("cri")
    store = CriStore(os.path.join(state_dir, "cri.db"))
    relays = LogRelays(container)
    sandboxes = Sandboxes(store, image, network, container, state_dir, config.cri_sandbox_image)
    # Image and writable-layer usage are reported on the image service's filesystem.
    image_root = config.state_dir("image")
    containers = Containers(store, image, container, sandboxes, relays, image_root)
    sandboxes.containers = containers
    images = Images(image, image_root)
    streaming = StreamingServer(container)
    await streaming.start()
    runtime = RuntimeApi(sandboxes, containers, network, streaming)

    # Before serving: no request can be midway while orphans are looked for.
    containers.resume_logs(await reconcile(store, image, network, container))

    def register(server):
        cri_grpc.add_RuntimeServiceServicer_to_server(runtime, server)
        cri_grpc.add_ImageServiceServicer_to_server(ImageApi(images), server)
        return [cri.DESCRIPTOR.services_by_name["RuntimeService"].full_name,
                cri.DESCRIPTOR.services_by_name["ImageService"].full_name]

    async def on_stop():
        await streaming.close()
        await relays.close()
        for client in clients:
            await client.channel.close()
        store.close()

    return register, on_stop


if __name__ == "__main__":
    process.run_service("cri", build)
