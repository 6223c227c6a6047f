"""What the API edges need from each backend: one Protocol per resource.

The gRPC Engine servicer (services/gateway/api.py) and the Docker routes
(services/gateway/docker/routes/) depend on these only; the classes in this
package implement them, and unit tests can give an edge a fake.
Backends return engine.v1 messages or plain values: no node type crosses here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from berth.engine.v1 import engine_pb2
from berth.types.v1 import build_pb2
from berth.types.v1 import file_change_pb2
from berth.types.v1 import registry_pb2
from berth.types.v1 import stdio_pb2
from services.common import bulk
from services.gateway.events import Event

Filters = Mapping[str, Sequence[str]]


# -- containers, execs and attach, system (gwcore) -------------------------------------

class ContainerBackend(Protocol):
    async def create(self, cfg: engine_pb2.ContainerConfig) -> str: ...
    def run(self, cfg: engine_pb2.ContainerConfig, attach: bool) -> AsyncIterator[
        engine_pb2.RunContainerResponse]: ...
    async def start(self, ref: str) -> None: ...
    async def stop(self, ref: str, timeout: int | None) -> None: ...
    async def restart(self, ref: str, timeout: int | None) -> None: ...
    async def kill(self, ref: str, signal: str) -> None: ...
    async def remove(self, ref: str, force: bool, remove_volumes: bool = False) -> None: ...
    async def linked(self, parent: str, alias: str) -> str:
        """The id of the container `parent`'s legacy link `alias` names."""
    async def remove_link(self, parent: str, alias: str) -> None:
        """Remove `parent`'s legacy link `alias` (docker's `rm --link parent/alias`)."""
    async def wait(self, ref: str) -> engine_pb2.ExitStatus: ...
    async def wait_until(self, ref: str, condition: str) -> engine_pb2.ExitStatus: ...
    async def inspect(self, ref: str) -> engine_pb2.ContainerInfo: ...
    async def list(self, all_: bool, filters: Filters) -> list[engine_pb2.ContainerInfo]: ...
    def logs(self, ref: str, follow: bool, tail: int, since: Timestamp | None,
             until: Timestamp | None, chunked: bool = False) -> AsyncIterator[stdio_pb2.OutputChunk]: ...
    async def pause(self, ref: str) -> None: ...
    async def unpause(self, ref: str) -> None: ...
    async def top(self, request: engine_pb2.ListContainerProcessesRequest
                  ) -> engine_pb2.ListContainerProcessesResponse: ...
    def stats(self, ref: str, stream: bool) -> AsyncIterator[engine_pb2.GetContainerStatsResponse]: ...
    async def update(self, request: engine_pb2.UpdateContainerResourcesRequest,
                     policy: engine_pb2.RestartPolicy | None = None) -> None:
        """The resource fields set in `request` and/or a new restart policy, checked together."""
    async def update_restart_policy(self, ref: str, policy: engine_pb2.RestartPolicy) -> None: ...
    # Chunks as bulk.Raw CopyFromContainerResponse / CopyToContainerRequest messages (or, for
    # copy_to, parsed requests).
    def copy_from(self, ref: str, path: str) -> AsyncIterator[bulk.Raw]: ...
    async def copy_to(self, requests: AsyncIterator[engine_pb2.CopyToContainerRequest | bulk.Raw]) -> None: ...
    def export(self, ref: str) -> AsyncIterator[bytes]: ...
    async def rename(self, ref: str, new_name: str) -> None: ...
    async def commit(self, ref: str, reference: str, changes: Sequence[str], message: str,
                     author: str) -> str: ...
    async def diff(self, ref: str) -> list[file_change_pb2.FileChange]: ...
    async def prune_filtered(self, filters: Filters) -> list[str]:
        """Docker's prune with label/until filters: the ids removed."""
    def publish(self, action: str, cid: str, **attributes: str) -> None:
        """Announce a container event the API edge saw ("detach", "exec_detach")."""


class ExecBackend(Protocol):
    async def create(self, request: engine_pb2.CreateExecRequest) -> str: ...
    async def inspect(self, exec_id: str) -> engine_pb2.ExecInfo: ...
    def start(self, requests: AsyncIterator[
            engine_pb2.StartExecRequest]) -> AsyncIterator[engine_pb2.StartExecResponse]:
        """The first request is `start`; then stdin, resize, close_stdin."""
    def attach(self, requests: AsyncIterator[engine_pb2.AttachContainerRequest], next_run: bool = False
               ) -> AsyncIterator[engine_pb2.AttachContainerResponse]:
        """The container's own stdio; the first request is `start`; `next_run` attaches a
        stopped container to its next run."""


class SystemBackend(Protocol):
    def version(self) -> engine_pb2.GetVersionResponse: ...
    async def df(self) -> engine_pb2.GetDiskUsageResponse: ...
    async def prune(self, all_: bool, volumes: bool) -> engine_pb2.PruneSystemResponse: ...
    async def prune_containers(self) -> engine_pb2.PruneSystemResponse: ...
    async def container_usage(self) -> dict[str, int]: ...
    def subscribe_events(self, since: float | None, until: float | None, filters: Filters,
                         after_seq: int | None = None) -> AsyncIterator[Event]: ...


# -- images, registry, networks, volumes (gwres) -----------------------------------------

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

    async def load(self, chunks: AsyncIterator[bulk.Raw]) -> engine_pb2.LoadImagesResponse:
        """Images from a `docker save` tar stream, with the names the stream gave them."""

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

    async def prune(self, all_: bool, until: float | None = None, labels: Sequence[str] = (),
                    not_labels: Sequence[str] = ()) -> engine_pb2.PruneSystemResponse:
        """Remove dangling images (every unused one with `all_`).

        Without `until` the image service decides by reachability and reports the space it
        freed; with it, only images created before `until` (seconds since the epoch) go,
        one by one, and space_reclaimed stays 0.
        """


class RegistryBackend(Protocol):
    """Pull, push and login: the image service talks to the registry, this relays its progress."""

    def pull(self, request: engine_pb2.PullImageRequest) -> AsyncIterator[registry_pb2.Progress]: ...

    def push(self, request: engine_pb2.PushImageRequest) -> AsyncIterator[registry_pb2.Progress]: ...

    async def login(
        self, request: engine_pb2.CheckRegistryAuthRequest) -> engine_pb2.CheckRegistryAuthResponse: ...


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
    async def prune(self, request: engine_pb2.PruneNetworksRequest | None = None) -> "list[str]":
        """Remove every user network no container uses (that matches the request's filters);
        the names of those removed."""

    async def connect(self, request: engine_pb2.ConnectNetworkRequest) -> None: ...

    async def disconnect(self, request: engine_pb2.DisconnectNetworkRequest) -> None: ...

    async def nodes(self) -> engine_pb2.ListNodesResponse:
        """The cluster's live nodes; FailedPrecondition when the engine is in no cluster."""


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


class BuildBackend(Protocol):
    """Image builds (the build service) and their cache."""

    def build(self, options: build_pb2.BuildOptions,
              chunks: AsyncIterator[bytes]) -> AsyncIterator[build_pb2.BuildEvent]:
        """The build's events, the last one the result; a failure raises its error kind."""
    async def prune(self, all_: bool) -> tuple[list[str], int]:
        """Cache entries forgotten and bytes freed."""
    async def cache(self) -> list[build_pb2.BuildCacheEntry]: ...
