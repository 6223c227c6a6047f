"""Protobuf edge of the RPCs that act on a task and its files: exec, attach, pause,
top, stats, update, cp and export.

Kept apart from api.py/convert.py so the lifecycle servicer stays small; like
them, this is where protobuf stops: the work is in exec.py, control.py and
archive.py.
"""

from __future__ import annotations

import asyncio
import contextlib

from google.protobuf.timestamp_pb2 import Timestamp

from berth.container.v1 import container_pb2 as pb
from berth.types.v1 import stdio_pb2
from services.common import bulk, errors
from services.container import archive, control, convert
from services.container.exec import ExecConfig, ExecInfo
from services.container.stdio import STDERR

CHUNK = 1 << 20


# ExecProcessResponse's and AttachContainerResponse's `output`, sent serialized (bulk.output;
# api.py names the methods for bulk.serve_bulk).
_OUTPUT_FIELD = pb.ExecProcessResponse.DESCRIPTOR.fields_by_name["output"].number
assert _OUTPUT_FIELD == pb.AttachContainerResponse.DESCRIPTOR.fields_by_name["output"].number


def _stream(n: int) -> int:
    return stdio_pb2.OUTPUT_STREAM_STDERR if n == STDERR else stdio_pb2.OUTPUT_STREAM_STDOUT


async def _first(requests, field: str):
    first = await anext(aiter(requests), None)
    if first is None or isinstance(first, bulk.Raw) or first.WhichOneof("msg") != field:
        raise errors.InvalidArgument(f"the first message must be {field}")
    return getattr(first, field)


def exec_info_to_pb(e: ExecInfo) -> pb.ExecInfo:
    c = e.config
    return pb.ExecInfo(id=e.id, container_id=e.container_id,
                       process=pb.Process(args=list(c.args), env=list(c.env), cwd=c.cwd, user=c.user),
                       tty=c.tty, stdin=c.stdin, running=e.running, pid=e.pid, exited=e.exited,
                       exit_code=e.exit_code)


async def exec_(service, requests):
    start = await _first(requests, "start")
    p = start.process
    cfg = ExecConfig(args=tuple(p.args), env=tuple(p.env), cwd=p.cwd, user=p.user, tty=start.tty,
                     stdin=start.stdin, height=start.size.height, width=start.size.width)
    async for kind, value in service.execs.run(start.container_id, start.exec_id, cfg, start.detach,
                                               requests):
        if kind == "started":
            yield pb.ExecProcessResponse(started=value)
        elif kind == "output":
            stream, data = value
            yield bulk.output(_OUTPUT_FIELD, _stream(stream), data)  # ExecProcessResponse(output=...)
        else:
            yield pb.ExecProcessResponse(exit_code=value)


async def attach(service, requests):
    start = await _first(requests, "start")
    async for kind, value in control.attach(service, start.container_id, start.stdin,
                                            start.size.height, start.size.width, requests,
                                            next_run=start.next_run):
        if kind == "attached":
            yield pb.AttachContainerResponse(attached=True)
        elif kind == "exit":
            yield pb.AttachContainerResponse(exit=convert.exit_to_pb(value))
        else:
            stream, data = value
            yield bulk.output(_OUTPUT_FIELD, _stream(stream), data)  # AttachContainerResponse(output=...)


async def pause(service, ref: str) -> pb.Container:
    return convert.container_to_pb(await control.pause(service, ref))


async def resume(service, ref: str) -> pb.Container:
    return convert.container_to_pb(await control.resume(service, ref))


async def top(service, request: pb.ListContainerProcessesRequest) -> pb.ListContainerProcessesResponse:
    titles, rows = await control.top(service, request.id, list(request.ps_args))
    return pb.ListContainerProcessesResponse(
        titles=titles, processes=[pb.ProcessRow(columns=r) for r in rows])


async def stats(service, request: pb.GetContainerStatsRequest):
    async for s in control.stats(service, request.id, request.interval_ms / 1000):
        ts = Timestamp()
        ts.FromNanoseconds(int(s.time * 1e9))
        yield pb.GetContainerStatsResponse(
            time=ts, cpu_usage_ns=s.cpu_usage_ns, system_cpu_ns=s.system_cpu_ns,
                       online_cpus=s.online_cpus, memory_usage=s.memory_usage,
                       memory_limit=s.memory_limit, memory_cache=s.memory_cache, pids=s.pids,
                       pids_limit=s.pids_limit, net_rx_bytes=s.net_rx, net_tx_bytes=s.net_tx,
                       block_read_bytes=s.block_read, block_write_bytes=s.block_write)


async def update(service, request: pb.UpdateContainerResourcesRequest) -> pb.Container:
    r = request.resources
    resources = convert.resources_from_pb(r)
    return convert.container_to_pb(await control.update(service, request.id, resources,
                                                        list(request.update_mask.paths)))


async def _send_file(f, reply):
    """The file's bytes as `reply` messages (CopyFromContainerResponse, ExportContainerResponse)."""
    f.seek(0)
    while data := await asyncio.to_thread(f.read, CHUNK):
        yield reply(data=data)


async def copy_out(service, request: pb.CopyFromContainerRequest):
    root, path, root_name = control.place_of(service, request.id, request.path)
    out = archive.ChunkWriter(asyncio.get_running_loop(), CHUNK)

    def make() -> None:
        try:
            archive.archive_path(root, path, out, root_name)
        finally:
            out.finish()
    # Sent as it is made: reading the container's files and the transfer overlap.
    making = asyncio.ensure_future(asyncio.to_thread(make))
    try:
        while (data := await out.next()) is not None:
            yield bulk.Raw.of(1, data)  # a CopyFromContainerResponse, made without protobuf
        await making  # its error, if it had one
    finally:
        out.abandon()
        if not making.done():
            with contextlib.suppress(Exception):
                await making


async def copy_in(service, requests) -> None:
    header = await _first(requests, "header")
    root, path, _ = control.place_of(service, header.id, header.path, write=True)

    async def pieces():
        async for req in requests:
            if isinstance(req, bulk.Raw):
                yield req.data
            elif req.WhichOneof("msg") == "chunk":
                yield req.chunk
            else:
                raise errors.InvalidArgument("one header, then chunks")
    # Extracted as it arrives: the transfer and the writes to the container's files overlap.
    await bulk.in_thread(pieces(), lambda handed: archive.extract(root, path, archive.ForwardReader(handed)))


async def export(service, request: pb.ExportContainerRequest):
    c = service.get(request.id)
    with archive.spooled() as f:
        await asyncio.to_thread(archive.export_root, service.runtime.bundle(c.id).rootfs, f)
        async for chunk in _send_file(f, pb.ExportContainerResponse):
            yield chunk
