"""Pull, push and login through the gateway: the image service does the transfer,
the gateway relays its progress to the caller and publishes the engine events
(image pull / push) once the transfer succeeded."""

from __future__ import annotations

from collections.abc import AsyncIterator

from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2


def _auth(auth: engine_pb2.RegistryAuth) -> image_pb2.RegistryAuth:
    return image_pb2.RegistryAuth(username=auth.username, password=auth.password,
                                  identity_token=auth.identity_token)


def _progress(p: image_pb2.Progress) -> engine_pb2.ProgressMessage:
    return engine_pb2.ProgressMessage(id=p.id, status=p.status, current=p.current, total=p.total,
                                      image_id=p.image_id, digest=p.digest)


async def pull(image_client, publish_image, request: engine_pb2.PullImageRequest) -> AsyncIterator[engine_pb2.ProgressMessage]:
    image_id = ""
    async for p in image_client.Pull(image_pb2.PullRequest(
            reference=request.reference, platform=request.platform, auth=_auth(request.auth))):
        image_id = p.image_id or image_id
        yield _progress(p)
    if image_id:
        publish_image("pull", image_id, request.reference)


async def push(image_client, publish_image, request: engine_pb2.PushImageRequest) -> AsyncIterator[engine_pb2.ProgressMessage]:
    image_id = ""
    async for p in image_client.Push(image_pb2.PushRequest(
            reference=request.reference, auth=_auth(request.auth))):
        image_id = p.image_id or image_id
        yield _progress(p)
    if image_id:
        publish_image("push", image_id, request.reference)


async def login(image_client, request: engine_pb2.LoginRequest) -> engine_pb2.LoginResponse:
    response = await image_client.Login(image_pb2.LoginRequest(
        server=request.server, auth=_auth(request.auth)))
    return engine_pb2.LoginResponse(status=response.status)
