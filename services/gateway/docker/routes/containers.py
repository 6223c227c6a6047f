"""Container routes: create, list, inspect, start/stop/restart/kill, wait, remove, logs, prune,
and what is done to one: pause, top, stats, cp (archive), export, changes, update, rename, commit."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tarfile
import base64

import structlog
from aiohttp import web

from berth.engine.v1 import engine_pb2
from berth_docker import api as convert
from berth_errors import not_implemented
from services.common import bulk, errors
from services.gateway.docker.context import API_VERSION_KEY, backends, json_body, json_response, long_lived
from services.gateway.docker.hijack import STDERR, STDOUT, line_frames, stream_content_type

log = structlog.get_logger(__name__)

_STREAMS = {1: STDOUT, 2: STDERR}
# How much of an archive may precede the first member's header (PAX/long-name records).
_STAT_PREFIX_LIMIT = 1 << 20

# Not in the backend yet: each answers 501 with what is missing.
_NOT_YET = {
    ("GET", "/containers/{id}/attach/ws"): "attach over websocket",
}


def register(router) -> None:
    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", list_)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("DELETE", "/containers/{id}", remove)
    router.add("DELETE", "/containers/{id}/{alias}", remove_link)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("GET", "/containers/{id}/top", top)
    router.add("GET", "/containers/{id}/stats", stats)
    router.add("GET", "/containers/{id}/archive", archive_get)  # HEAD too: the stat alone
    router.add("PUT", "/containers/{id}/archive", archive_put)
    router.add("GET", "/containers/{id}/export", export)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("POST", "/containers/{id}/update", update)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("POST", "/commit", commit)
    for (method, path), what in _NOT_YET.items():
        router.add(method, path, _not_yet(what))


def _not_yet(what: str):
    async def handler(request: web.Request) -> web.Response:
        raise not_implemented(what)
    return handler


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    cfg = convert.container_config(body, request.query.get("name", ""))
    cid = await backends(request).containers.create(cfg)
    return json_response({"Id": cid, "Warnings": convert.create_warnings(body)}, status=201)


async def list_(request: web.Request) -> web.Response:
    q = request.query
    flt = convert.filters(q)
    before, since = flt.pop("before", None), flt.pop("since", None)
    infos = await backends(request).containers.list(convert.flag(q, "all") or bool(before or since), flt)
    infos = await _before_since(request, infos, before, since)
    limit = convert.integer(q, "limit")
    if limit is not None and limit > 0:
        infos = infos[:limit]
    return json_response([convert.container_summary(i) for i in infos])


async def _before_since(request, infos, before, since):
    """docker ps --filter before=/since=: containers created before/after the one named."""
    for refs, keep in ((before, lambda t, ref: t < ref), (since, lambda t, ref: t > ref)):
        for ref in refs or ():
            pivot = await backends(request).containers.inspect(ref)
            ref_time = (pivot.created.seconds, pivot.created.nanos)
            infos = [i for i in infos if keep((i.created.seconds, i.created.nanos), ref_time)]
    return infos


async def inspect(request: web.Request) -> web.Response:
    info = await backends(request).containers.inspect(request.match_info["id"])
    return json_response(convert.container_json(info))


async def start(request: web.Request) -> web.Response:
    await backends(request).containers.start(request.match_info["id"])
    return web.Response(status=204)


def _timeout(request: web.Request) -> int | None:
    # "t" in every version; "timeout" is what the SDKs send too.
    name = "t" if request.query.get("t") not in (None, "") else "timeout"
    value = convert.integer(request.query, name)
    if value is not None and not -(1 << 31) <= value < (1 << 31):
        raise errors.InvalidArgument(f"invalid value for {name}: {value} seconds is out of range")
    return value


async def stop(request: web.Request) -> web.Response:
    if request.query.get("signal"):
        raise not_implemented("stop with a signal other than the container's stop signal")
    await backends(request).containers.stop(request.match_info["id"], _timeout(request))
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    await backends(request).containers.restart(request.match_info["id"], _timeout(request))
    return web.Response(status=204)


# How long a SIGKILL's answer waits for the container to be gone.
_KILL_WAIT = 10.0


async def kill(request: web.Request) -> web.Response:
    containers, ref, signal = backends(request).containers, request.match_info["id"], request.query.get("signal", "")
    await containers.kill(ref, signal)
    if signal.upper().removeprefix("SIG") in ("", "KILL", "9"):
        # dockerd answers a SIGKILL once the container stopped, so that the `rm` clients send
        # right after finds it exited.
        with contextlib.suppress(asyncio.TimeoutError, errors.BerthError):
            await asyncio.wait_for(containers.wait_until(ref, "not-running"), _KILL_WAIT)
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    await backends(request).containers.remove(request.match_info["id"], convert.flag(request.query, "force"),
                                  remove_volumes=convert.flag(request.query, "v"))
    return web.Response(status=204)


async def remove_link(request: web.Request) -> web.Response:
    """`DELETE /containers/parent/alias`: with link=1 the link goes (docker's `rm --link`);
    without, the container the link names, as docker resolves a link's name to it."""
    b, parent, alias = backends(request), request.match_info["id"], request.match_info["alias"]
    if convert.flag(request.query, "link"):
        await b.containers.remove_link(parent, alias)
    else:
        await b.containers.remove(await b.containers.linked(parent, alias), convert.flag(request.query, "force"),
                                  remove_volumes=convert.flag(request.query, "v"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    b, flt = backends(request), convert.filters(request.query)
    if not flt:
        # The engine's own prune: what it reclaimed is what `system df` counted for those containers.
        response = await b.system.prune_containers()
        return json_response({"ContainersDeleted": list(response.containers_deleted) or None,
                              "SpaceReclaimed": response.space_reclaimed})
    usage = await b.system.container_usage()
    removed = await b.containers.prune_filtered(flt)
    return json_response({"ContainersDeleted": removed or None,
                          "SpaceReclaimed": sum(usage.get(cid, 0) for cid in removed)})


async def wait(request: web.Request) -> web.StreamResponse:
    """The 200 goes out at once, the body at exit: `docker run` sends start only after the header."""
    containers = backends(request).containers
    ref, condition = request.match_info["id"], request.query.get("condition", "")
    waiting = asyncio.ensure_future(containers.wait_until(ref, condition))
    try:
        # Errors known before waiting (no such container, bad condition) are ordinary JSON errors.
        await asyncio.wait([waiting], timeout=0.05)
        if waiting.done() and waiting.exception() is not None:
            raise waiting.exception()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with long_lived(request):
            try:
                status = await waiting
                body = {"StatusCode": status.exit_code, "Error": None}
            except errors.BerthError as exc:
                body = {"StatusCode": -1, "Error": {"Message": exc.message}}
            try:
                await response.write(json.dumps(body).encode() + b"\n")
                await response.write_eof()
            except (ConnectionResetError, ConnectionError):
                # `docker run -d` leaves without reading the answer.
                pass
        return response
    finally:
        waiting.cancel()


def _log_options(request: web.Request):
    q = request.query
    stdout, stderr = convert.flag(q, "stdout"), convert.flag(q, "stderr")
    if not (stdout or stderr):
        raise errors.InvalidArgument("Bad parameters: you must choose at least one stream")
    wanted = {s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on}
    return wanted


async def logs(request: web.Request) -> web.StreamResponse:
    q = request.query
    wanted = _log_options(request)
    tail_text = q.get("tail", "all")
    tail = -1 if tail_text in ("", "all") else convert.integer(q, "tail")
    if tail < 0 or tail >= 1 << 31:
        # More lines than any log holds is all of them; docker reads a negative count so too.
        tail = -1
    timestamps = convert.flag(q, "timestamps")
    containers = backends(request).containers
    # Errors (no such container) as JSON before the header; output may be a long time coming.
    info = await containers.inspect(request.match_info["id"])
    chunks = containers.logs(
        info.id, convert.flag(q, "follow"), tail,
        convert.to_pb_time(convert.timestamp(q.get("since"))), convert.to_pb_time(convert.timestamp(q.get("until"))),
        chunked=not timestamps)
    response = web.StreamResponse(headers={
        "Content-Type": stream_content_type(request[API_VERSION_KEY], tty=info.config.tty)})
    await response.prepare(request)
    with long_lived(request):
        try:
            async for chunk in chunks:
                if info.config.tty:
                    # A terminal's output is one stream, sent raw (as its attach is).
                    await response.write(convert.log_line(chunk, timestamps))
                    continue
                stream = _STREAMS.get(chunk.stream, STDOUT)
                if stream in wanted:
                    await response.write(line_frames(stream, convert.log_line(chunk, timestamps)))
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            await chunks.aclose()
    return response


async def pause(request: web.Request) -> web.Response:
    await backends(request).containers.pause(request.match_info["id"])
    return web.Response(status=204)


async def unpause(request: web.Request) -> web.Response:
    await backends(request).containers.unpause(request.match_info["id"])
    return web.Response(status=204)


async def top(request: web.Request) -> web.Response:
    ps_args = request.query.get("ps_args", "").split()
    reply = await backends(request).containers.top(
        engine_pb2.ListContainerProcessesRequest(id=request.match_info["id"], ps_args=ps_args))
    return json_response({"Titles": list(reply.titles), "Processes": [list(p.values) for p in reply.processes]})


async def stats(request: web.Request) -> web.StreamResponse:
    """docker's stats JSON; precpu_stats is the sample before, so clients compute CPU % themselves.

    stream=false answers one message with both samples filled, as dockerd does
    (one-shot=true: a single sample, precpu empty)."""
    q = request.query
    stream = convert.flag(q, "stream", default=True)
    one_shot = convert.flag(q, "one-shot") and not stream
    containers = backends(request).containers
    info = await containers.inspect(request.match_info["id"])  # 404 before any header
    samples = containers.stats(info.id, True)
    try:
        if not stream:
            previous = None
            async for s in samples:
                if one_shot or previous is not None or not info.state.running:
                    return json_response(convert.stats_json(s, previous if not one_shot else None))
                previous = s
            return json_response(convert.stats_json(previous, None) if previous is not None
                                 else convert.stats_json(engine_pb2.GetContainerStatsResponse(
                                     id=info.id, name=info.name), None))
        first = await anext(samples, None)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with long_lived(request):
            previous, current = None, first
            try:
                while current is not None:
                    await response.write(json.dumps(convert.stats_json(current, previous)).encode() + b"\n")
                    previous, current = current, await anext(samples, None)
            except (ConnectionResetError, ConnectionError):
                return response
        await response.write_eof()
        return response
    finally:
        await samples.aclose()


async def _first_member(chunks) -> tuple[tarfile.TarInfo, list[bytes]]:
    """Reads the archive until its first member's header: that member is the path asked for."""
    buffered: list[bytes] = []
    size = 0
    async for chunk in chunks:
        buffered.append(chunk)
        size += len(chunk)
        try:
            with tarfile.open(fileobj=io.BytesIO(b"".join(buffered)), mode="r|") as tar:
                member = tar.next()
        except (tarfile.ReadError, EOFError):
            member = None
        if member is not None:
            return member, buffered
        if size > _STAT_PREFIX_LIMIT:
            break
    raise errors.Unavailable("the container service sent no archive for this path")


def _stat_header(member: tarfile.TarInfo) -> str:
    return base64.b64encode(json.dumps(convert.path_stat(member)).encode()).decode()


async def archive_get(request: web.Request) -> web.StreamResponse:
    path = request.query.get("path", "")
    if not path:
        raise errors.InvalidArgument("path is required")
    pieces = backends(request).containers.copy_from(request.match_info["id"], path)
    chunks = (piece.data async for piece in pieces)
    try:
        member, buffered = await _first_member(chunks)
        headers = {"X-Docker-Container-Path-Stat": _stat_header(member)}
        if request.method == "HEAD":
            return web.Response(status=200, headers={**headers, "Content-Type": "application/json"})
        response = web.StreamResponse(headers={**headers, "Content-Type": "application/x-tar"})
        await response.prepare(request)
        with long_lived(request):
            try:
                for chunk in buffered:
                    await response.write(chunk)
                async for chunk in chunks:
                    await response.write(chunk)
            except (ConnectionResetError, ConnectionError):
                return response
        await response.write_eof()
        return response
    finally:
        await chunks.aclose()
        await pieces.aclose()


async def archive_put(request: web.Request) -> web.Response:
    path = request.query.get("path", "")
    if not path:
        raise errors.InvalidArgument("path is required")

    async def requests():
        yield engine_pb2.CopyToContainerRequest(header=engine_pb2.CopyToContainerHeader(
            id=request.match_info["id"], path=path))
        # CopyToContainerRequest chunks of about 1 MiB, made without protobuf.
        async for chunk in bulk.gathered(request.content.iter_any(), field=2):
            yield chunk
    await backends(request).containers.copy_to(requests())
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    chunks = backends(request).containers.export(request.match_info["id"])
    try:
        first = await anext(chunks, None)  # no such container: JSON before the tar starts
        response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await response.prepare(request)
        with long_lived(request):
            try:
                chunk = first
                while chunk is not None:
                    await response.write(chunk)
                    chunk = await anext(chunks, None)
            except (ConnectionResetError, ConnectionError):
                return response
        await response.write_eof()
        return response
    finally:
        await chunks.aclose()


async def changes(request: web.Request) -> web.Response:
    found = await backends(request).containers.diff(request.match_info["id"])
    return json_response([convert.change_json(c) for c in found])


async def update(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    containers, ref = backends(request).containers, request.match_info["id"]
    resources, policy = convert.update_request(ref, body)
    await containers.update(resources or engine_pb2.UpdateContainerResourcesRequest(id=ref), policy)
    return json_response({"Warnings": []})


async def rename(request: web.Request) -> web.Response:
    await backends(request).containers.rename(request.match_info["id"], request.query.get("name", ""))
    return web.Response(status=204)


async def commit(request: web.Request) -> web.Response:
    q = request.query
    body = await json_body(request, default={})
    if body and any(v not in (None, "", [], {}, False) for v in (body or {}).values()):
        raise not_implemented("a container config in the commit body (use changes)")
    repo, tag = q.get("repo", ""), q.get("tag", "")
    reference = (f"{repo}:{tag}" if tag else repo) if repo else ""
    image_id = await backends(request).containers.commit(
        q.get("container", ""), reference, [c for c in q.getall("changes", []) if c],
        q.get("comment", ""), q.get("author", ""))
    return json_response({"Id": image_id}, status=201)
