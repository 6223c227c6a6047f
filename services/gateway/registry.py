"""Pull, push and login through the gateway: the image service does the transfer,
the gateway relays its progress to the caller and publishes the engine events
(image pull / push) once the transfer succeeded."""

from __future__ import annotations

from collections.abc import AsyncIterator

from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from berth.types.v1 import registry_pb2


async def pull(gateway, request: engine_pb2.PullImageRequest) -> AsyncIterator[registry_pb2.Progress]:
    image_id = ""
    async for reply in gateway._image.PullImage(image_pb2.PullImageRequest(
            reference=request.reference, platform=request.platform, auth=request.auth)):
        image_id = reply.progress.image_id or image_id
        yield reply.progress
    if image_id:
        gateway._publish_image("pull", image_id, request.reference)


async def push(gateway, request: engine_pb2.PushImageRequest) -> AsyncIterator[registry_pb2.Progress]:
    image_id = ""
    async for reply in gateway._image.PushImage(image_pb2.PushImageRequest(
            reference=request.reference, auth=request.auth)):
        image_id = reply.progress.image_id or image_id
        yield reply.progress
    if image_id:
        gateway._publish_image("push", image_id, request.reference)


async def login(
    gateway, request: engine_pb2.CheckRegistryAuthRequest) -> engine_pb2.CheckRegistryAuthResponse:
    response = await gateway._image.CheckRegistryAuth(image_pb2.CheckRegistryAuthRequest(
        server=request.server, auth=request.auth))
    return engine_pb2.CheckRegistryAuthResponse(status=response.status)
