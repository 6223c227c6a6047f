"""Builds: the gateway's face of the build service.

The engine and the build service speak the same build shapes (berth.types.v1
BuildOptions and BuildEvent), so a build is relayed as it is: options and
context chunks one way, events the other. The gateway adds the image events
(`tag` for each name given) once the build succeeded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from berth.build.v1 import build_pb2
from berth.types.v1 import build_pb2 as types_pb2
from berth_docker.reference import familiar


class Builds:
    """`build` is the build service's client; `publish` the event log's."""

    def __init__(self, build, publish: Callable[..., object]):
        self._build = build
        self._publish = publish

    async def build(self, options: types_pb2.BuildOptions,
                    chunks: AsyncIterator[bytes]) -> AsyncIterator[types_pb2.BuildEvent]:
        async def requests():
            yield build_pb2.BuildRequest(options=options)
            async for chunk in chunks:
                yield build_pb2.BuildRequest(chunk=chunk)
        # A build waits for a build service that is restarting rather than fail at once.
        async for reply in self._build.Build(requests(), wait_for_ready=True):
            if reply.event.HasField("result"):
                for name in reply.event.result.tags:
                    self._publish("image", "tag", reply.event.result.image_id, {"name": familiar(name)})
            yield reply.event

    async def prune(self, all_: bool) -> tuple[list[str], int]:
        reply = await self._build.PruneBuildCache(build_pb2.PruneBuildCacheRequest(all=all_))
        return list(reply.deleted), reply.space_reclaimed

    async def cache(self) -> list[types_pb2.BuildCacheEntry]:
        return list((await self._build.ListBuildCache(build_pb2.ListBuildCacheRequest())).entries)
