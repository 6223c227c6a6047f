"""Container routes: create, list, inspect, start/stop/restart/kill, wait, remove, logs, attach, prune."""

from __future__ import annotations

import asyncio
import json

import structlog
from aiohttp import web

from berth.container.v1 import container_pb2
from services.common import errors
from services.gateway import system
from berth_docker import api as convert
from services.gateway.docker import routes_depth
from services.gateway.docker.context import API_VERSION_KEY, gateway, json_body, json_response, long_lived
from berth_errors import not_implemented
from services.gateway.docker.hijack import STDERR, STDOUT, Hijacked, frame, stream_content_type

log = structlog.get_logger(__name__)

_STREAMS = {1: STDOUT, 2: STDERR}

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
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("POST", "/containers/{id}/attach", attach)
    for (method, path), what in _NOT_YET.items():
        router.add(method, path, _not_yet(what))


def _not_yet(what: str):
    async def handler(request: web.Request) -> web.Response:
        raise not_implemented(what)
    return handler


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    cfg = convert.container_config(body, request.query.get("name", ""))
    cid = await gateway(request).create(cfg)
    return json_response({"Id": cid, "Warnings": []}, status=201)


async def list_(request: web.Request) -> web.Response:
    q = request.query
    flt = convert.filters(q)
    before, since = flt.pop("before", None), flt.pop("since", None)
    infos = await gateway(request).list(convert.flag(q, "all") or bool(before or since), flt)
    infos = await _before_since(request, infos, before, since)
    limit = convert.integer(q, "limit")
    if limit is not None and limit > 0:
        infos = infos[:limit]
    return json_response([convert.container_summary(i) for i in infos])


async def _before_since(request, infos, before, since):
    """docker ps --filter before=/since=: containers created before/after the one named."""
    for refs, keep in ((before, lambda t, ref: t < ref), (since, lambda t, ref: t > ref)):
        for ref in refs or ():
            pivot = await gateway(request).inspect(ref)
            ref_time = (pivot.created.seconds, pivot.created.nanos)
            infos = [i for i in infos if keep((i.created.seconds, i.created.nanos), ref_time)]
    return infos


async def inspect(request: web.Request) -> web.Response:
    info = await gateway(request).inspect(request.match_info["id"])
    return json_response(convert.container_json(info))


async def start(request: web.Request) -> web.Response:
    await gateway(request).start_container(request.match_info["id"])
    return web.Response(status=204)


def _timeout(request: web.Request) -> int | None:
    # "t" in every version; "timeout" is what the SDKs send too.
    value = convert.integer(request.query, "t")
    return value if value is not None else convert.integer(request.query, "timeout")


async def stop(request: web.Request) -> web.Response:
    if request.query.get("signal"):
        raise not_implemented("stop with a signal other than the container's stop signal")
    await gateway(request).stop(request.match_info["id"], _timeout(request))
    return web.Response(status=204)


async def restart(request: web.Request) -> web.Response:
    await gateway(request).restart(request.match_info["id"], _timeout(request))
    return web.Response(status=204)


async def kill(request: web.Request) -> web.Response:
    await gateway(request).kill(request.match_info["id"], request.query.get("signal", ""))
    return web.Response(status=204)


async def remove(request: web.Request) -> web.Response:
    await gateway(request).remove(request.match_info["id"], convert.flag(request.query, "force"),
                                  remove_volumes=convert.flag(request.query, "v"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    gw, flt = gateway(request), convert.filters(request.query)
    if not flt:
        # The engine's own prune: what it reclaimed is what `system df` counted for those containers.
        response = await system.prune_containers(gw)
        return json_response({"ContainersDeleted": list(response.containers_deleted) or None,
                              "SpaceReclaimed": response.space_reclaimed})
    usage = {c.id: c.size_rw + c.log_size for c in (await system.df(gw)).containers}
    removed = await gw.prune_containers(flt)
    return json_response({"ContainersDeleted": removed or None,
                          "SpaceReclaimed": sum(usage.get(cid, 0) for cid in removed)})


async def wait(request: web.Request) -> web.StreamResponse:
    """The 200 goes out at once, the body at exit: `docker run` sends start only after the header."""
    gw = gateway(request)
    ref, condition = request.match_info["id"], request.query.get("condition", "")
    waiting = asyncio.ensure_future(gw.wait_until(ref, condition))
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
    timestamps = convert.flag(q, "timestamps")
    gw = gateway(request)
    # Errors (no such container) as JSON before the header; output may be a long time coming.
    info = await gw.inspect(request.match_info["id"])
    chunks = gw.logs(
        info.id, convert.flag(q, "follow"), tail,
        convert.to_pb_time(convert.timestamp(q.get("since"))), convert.to_pb_time(convert.timestamp(q.get("until"))))
    response = web.StreamResponse(headers={
        "Content-Type": stream_content_type(request[API_VERSION_KEY], tty=False)})
    await response.prepare(request)
    with long_lived(request):
        try:
            async for chunk in chunks:
                stream = _STREAMS.get(chunk.stream, STDOUT)
                if stream in wanted:
                    await response.write(frame(stream, convert.log_line(chunk, timestamps)))
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            await chunks.aclose()
    return response


async def attach(request: web.Request) -> web.StreamResponse:
    q = request.query
    wanted = {s for s, on in ((STDOUT, convert.flag(q, "stdout")), (STDERR, convert.flag(q, "stderr"))) if on}
    if not convert.flag(q, "stream") and not convert.flag(q, "logs"):
        raise errors.InvalidArgument("Bad parameters: you must choose at least one of stream or logs")
    gw, ref = gateway(request), request.match_info["id"]
    # Known errors (no such container, stopped) before the upgrade: after it, they have no JSON.
    info = await gw.inspect(ref)
    if info.state.status == "exited":
        raise errors.Conflict("You cannot attach to a stopped container, start it first")
    if convert.flag(q, "stdin") or info.config.tty:
        # stdin or a terminal: the container's own stdio (conmon's attach socket), not its log.
        return await routes_depth.attach_interactive(request, info, convert.flag(q, "stdin"), wanted)
    output = gw.attach(info.id, logs=convert.flag(q, "logs"))
    session = await Hijacked.upgrade(request, stream_content_type(request[API_VERSION_KEY], tty=False))
    with long_lived(request):
        try:
            await _pump(output, session, wanted)
        except (ConnectionResetError, ConnectionError):
            pass
        except errors.BerthError as exc:
            log.warning("attach_failed", container_id=request.match_info["id"], error=exc.message)
        finally:
            await output.aclose()
            await session.close()
    return session.response


async def _pump(output, session: Hijacked, wanted: set[int]) -> None:
    while True:
        # A client that went away ends the session even while the container is silent.
        nxt = asyncio.ensure_future(anext(output, None))
        done, _ = await asyncio.wait([nxt, session.wait_closed()], return_when=asyncio.FIRST_COMPLETED)
        if nxt not in done:
            nxt.cancel()
            return
        item = nxt.result()
        if item is None or isinstance(item, container_pb2.WaitResponse):
            return
        stream = _STREAMS.get(item.stream, STDOUT)
        if stream in wanted:
            await session.write(frame(stream, item.data))
