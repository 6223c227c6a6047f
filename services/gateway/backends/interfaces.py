# -- images, registry, networks, volumes (a section of its own: its imports are its own) -------------

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from berth.engine.v1 import engine_pb2

# events.EventLog.publish(type, action, actor_id, attributes): the one way a backend announces a change.
Publish = Callable[[str, str, str, dict[str, str]], None]
# A container reference (full id, unique id prefix or name) to its full id; NotFound when none matches.
ResolveContainer = Callable[[str], Awaitable[str]]
# How many containers use each image, by image id: an image in use is never pruned.
ImageUsage = Callable[[], Awaitable[dict[str, int]]]


class ImageBackend(Protocol):
    """The images the image service stores, as the engine shows them.

    Each change is announced after the image service made it: load, import, tag,
    untag, delete, prune. For example `docker rmi app:1` on the last tag of an image:

        response = await images.remove("app:1", force=False)
        # response.untagged == ["docker.io/library/app:1"], response.deleted == ["sha256:..."]
        # events: image untag (name app:1), then image delete (the id)
    """

    async def load(self, chunks: AsyncIterator[bytes]) -> list[engine_pb2.ImageInfo]:
        """Images from a `docker save` tar stream."""

    async def import_(self, reference: str, changes: Sequence[str], message: str,
                      chunks: AsyncIterator[bytes]) -> engine_pb2.ImageInfo:
        """A one-layer image from a rootfs tar; `changes` are Dockerfile lines (CMD, ENV, ...)."""

    def save(self, references: Sequence[str]) -> AsyncIterator[bytes]:
        """A `docker save` tar of the images; an unknown one fails before the first chunk."""

    async def list(self, all_: bool, reference: str) -> list[engine_pb2.ImageInfo]:
        """Newest first; `all_` adds untagged intermediate images, `reference` narrows by name."""

    async def inspect(self, reference: str) -> engine_pb2.ImageInfo: ...

    async def tag(self, source: str, target: str) -> None: ...

    async def remove(self, reference: str, force: bool) -> engine_pb2.RemoveImageResponse: ...

    async def prune(self, all_: bool, until: float | None = None) -> engine_pb2.PruneResponse:
        """Remove dangling images (every unused one with `all_`).

        Without `until` the image service decides by reachability and reports the space it
        freed; with it, only images created before `until` (seconds since the epoch) go,
        one by one, and space_reclaimed stays 0.
        """


class RegistryBackend(Protocol):
    """Pull, push and login: the image service talks to the registry, this relays its progress."""

    def pull(self, request: engine_pb2.PullImageRequest) -> AsyncIterator[engine_pb2.ProgressMessage]: ...

    def push(self, request: engine_pb2.PushImageRequest) -> AsyncIterator[engine_pb2.ProgressMessage]: ...

    async def login(self, request: engine_pb2.LoginRequest) -> engine_pb2.LoginResponse: ...


class NetworkBackend(Protocol):
    """Networks of the network service; a container is named by any reference ResolveContainer takes.

        info = await networks.create(engine_pb2.CreateNetworkRequest(name="app"))
        await networks.connect(engine_pb2.ConnectNetworkRequest(network="app", container="web"))
        # events: network create, then network connect (attributes name, type, container)
    """

    async def create(self, request: engine_pb2.CreateNetworkRequest) -> engine_pb2.NetworkInfo: ...

    async def inspect(self, name: str) -> engine_pb2.NetworkInfo:
        """By name, id or unique id prefix."""

    async def list(self) -> list[engine_pb2.NetworkInfo]: ...

    async def remove(self, name: str) -> None: ...

    # Quoted: in this class body `list` is the method above.
    async def prune(self) -> "list[str]":
        """Remove every user network no container uses; the names of those removed."""

    async def connect(self, request: engine_pb2.ConnectNetworkRequest) -> None: ...

    async def disconnect(self, request: engine_pb2.ConnectNetworkRequest) -> None: ...


class VolumeBackend(Protocol):
    """The volume API over the volume service (a container's mounts are resolved elsewhere, at create)."""

    async def create(self, request: engine_pb2.CreateVolumeRequest) -> engine_pb2.VolumeInfo: ...

    async def inspect(self, name: str) -> engine_pb2.VolumeInfo:
        """With its size; NotFound names the volume."""

    async def list(self) -> list[engine_pb2.VolumeInfo]: ...

    async def remove(self, name: str) -> None: ...

    async def prune(self, all_: bool, labels: Sequence[str]) -> engine_pb2.PruneVolumesResponse:
        """Remove unused anonymous volumes (every unused one with `all_`) carrying all `labels`
        ("key" or "key=value")."""
