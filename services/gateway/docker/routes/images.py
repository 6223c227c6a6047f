"""Image routes: create (pull / import), push, load, get (save), list, inspect, history, tag, delete, prune.

They use only the ImageBackend and RegistryBackend (services/gateway/backends/interfaces.py).
"""

from __future__ import annotations

import base64
import json

from aiohttp import web

from berth.engine.v1 import engine_pb2
from berth.types.v1 import registry_pb2
from services.common import bulk, errors
from services.gateway.backends.interfaces import ImageBackend, RegistryBackend
from berth_docker import api as convert
from services.gateway.docker.context import backends, json_response, long_lived
from berth_errors import not_implemented

CHUNK = 1 << 20


def _images(request: web.Request) -> ImageBackend:
    return backends(request).images


def _registry(request: web.Request) -> RegistryBackend:
    return backends(request).registry


def register(router) -> None:
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/load", load)
    router.add("GET", "/images/get", save_many)
    router.add("GET", "/images/json", list_)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/search", _search)
    router.add("GET", "/images/{name:.+}/json", inspect)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("GET", "/images/{name:.+}/get", save_one)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("POST", "/images/{name:.+}/push", push)
    router.add("DELETE", "/images/{name:.+}", remove)


async def _search(request: web.Request):
    raise not_implemented("image search")


async def _body_chunks(request: web.Request):
    while True:
        data = await request.content.read(CHUNK)
        if not data:
            return
        yield data


def _auth(request: web.Request) -> registry_pb2.RegistryAuth:
    """X-Registry-Auth: base64url JSON of {username, password, identitytoken}."""
    raw = request.headers.get("X-Registry-Auth", "")
    if not raw:
        return registry_pb2.RegistryAuth()
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, json.JSONDecodeError):
        raise errors.InvalidArgument("invalid X-Registry-Auth header") from None
    return registry_pb2.RegistryAuth(username=data.get("username") or "", password=data.get("password") or "",
                                     identity_token=data.get("identitytoken") or "")


def _reference(name: str, tag: str) -> str:
    if not tag:
        return name
    return f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"


async def _progress(request: web.Request, messages) -> web.StreamResponse:
    """docker's JSON progress stream; a failure after the header is an `error` message, as dockerd does."""
    first = await anext(messages, None)  # errors before any progress are ordinary JSON errors
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    with long_lived(request):
        try:
            message = first
            while message is not None:
                await response.write(json.dumps(message).encode() + b"\r\n")
                message = await anext(messages, None)
        except errors.BerthError as exc:
            await response.write(json.dumps({"errorDetail": {"message": exc.message},
                                             "error": exc.message}).encode() + b"\r\n")
        except (ConnectionResetError, ConnectionError):
            return response
    await response.write_eof()
    return response


async def create(request: web.Request) -> web.StreamResponse:
    q = request.query
    if q.get("fromSrc"):
        return await _import(request)
    if not q.get("fromImage"):
        raise errors.InvalidArgument("fromImage or fromSrc is required")
    reference = _reference(q["fromImage"], q.get("tag", ""))
    stream = _registry(request).pull(engine_pb2.PullImageRequest(
        reference=reference, platform=q.get("platform", ""), auth=_auth(request)))
    return await _progress(request, _progress_json(stream))


async def _progress_json(stream):
    async for p in stream:
        message = {"status": p.status}
        if p.id:
            message["id"] = p.id
        if p.total:
            message["progressDetail"] = {"current": p.current, "total": p.total}
        yield message


async def _import(request: web.Request) -> web.StreamResponse:
    q = request.query
    if q["fromSrc"] != "-":
        raise not_implemented("import from a URL (fromSrc other than \"-\")")
    repo = q.get("repo", "")
    reference = _reference(repo, q.get("tag", "")) if repo else ""
    info = await _images(request).import_(reference, q.getall("changes", []), q.get("message", ""),
                                          _body_chunks(request))

    async def done():
        yield {"status": info.id}
    return await _progress(request, done())


async def push(request: web.Request) -> web.StreamResponse:
    reference = _reference(request.match_info["name"], request.query.get("tag", ""))
    stream = _registry(request).push(engine_pb2.PushImageRequest(reference=reference, auth=_auth(request)))
    return await _progress(request, _progress_json(stream))


async def load(request: web.Request) -> web.StreamResponse:
    """JSON messages one per line, chunked as dockerd sends them (the SDKs parse a chunked
    answer line by line, any other as one document); a tarball that cannot be loaded is an
    `error` message after the 200, which is where docker's clients look for it."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    with long_lived(request):
        try:
            # LoadImagesRequest chunks of about 1 MiB, made without protobuf.
            loaded = await _images(request).load(bulk.gathered(request.content.iter_any(), field=1))
        except errors.BerthError as exc:
            await response.write(json.dumps({"errorDetail": {"message": exc.message},
                                             "error": exc.message}).encode() + b"\n")
            loaded = engine_pb2.LoadImagesResponse()
        # `quiet` only turns off progress bars (berth sends none): "Loaded image" lines always go out,
        # one per name the tarball gave (an image saved by id: its id), as dockerd reports them.
        for info, given in zip(loaded.images, loaded.loaded_names):
            names = [convert.familiar(t) for t in given.names]
            for n in names or [info.id]:
                line = {"stream": f"Loaded image{'' if names else ' ID'}: {n}\n"}
                await response.write(json.dumps(line).encode() + b"\n")
    await response.write_eof()
    return response


async def _save(request: web.Request, names: list[str]) -> web.StreamResponse:
    if not names:
        raise errors.InvalidArgument("no image names given")
    chunks = _images(request).save(names)
    first = await anext(chunks, None)  # unknown images fail as JSON before the tar starts
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await response.prepare(request)
    with long_lived(request):
        chunk = first
        while chunk is not None:
            await response.write(chunk)
            chunk = await anext(chunks, None)
    await response.write_eof()
    return response


async def save_one(request: web.Request) -> web.StreamResponse:
    return await _save(request, [request.match_info["name"]])


async def save_many(request: web.Request) -> web.StreamResponse:
    return await _save(request, request.query.getall("names", []))


async def list_(request: web.Request) -> web.Response:
    q = request.query
    flt = convert.filters(q)
    if q.get("filter"):  # the pre-1.25 spelling
        flt.setdefault("reference", []).append(q["filter"])
    images = _images(request)
    infos = await images.list(convert.flag(q, "all"), "")
    pivots = {}
    for ref in [*flt.get("before", []), *flt.get("since", [])]:
        pivots[ref] = (await images.inspect(ref)).id
    infos = convert.filter_images(infos, flt, pivots)
    return json_response([convert.image_summary(i) for i in infos])


async def inspect(request: web.Request) -> web.Response:
    return json_response(convert.image_json(await _images(request).inspect(request.match_info["name"])))


async def history(request: web.Request) -> web.Response:
    return json_response(convert.image_history(await _images(request).inspect(request.match_info["name"])))


async def tag(request: web.Request) -> web.Response:
    q = request.query
    if not q.get("repo"):
        raise errors.InvalidArgument("repository name (repo) is required")
    await _images(request).tag(request.match_info["name"], _reference(q["repo"], q.get("tag", "")))
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    response = await _images(request).remove(request.match_info["name"], convert.flag(request.query, "force"))
    report = [{"Untagged": convert.familiar(u)} for u in response.untagged]
    report += [{"Deleted": d} for d in response.deleted]
    return json_response(report)


async def prune(request: web.Request) -> web.Response:
    flt = convert.filters(request.query)
    unknown = sorted(set(flt) - {"dangling", "until", "label", "label!"})
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    dangling = flt.get("dangling", [])
    until = min((t for t in map(convert.timestamp, flt.get("until", [])) if t is not None), default=None)
    labels, not_labels = flt.get("label", []), flt.get("label!", [])
    if until is not None or labels or not_labels:
        # dangling=false (or anything but true) widens it to every unused image, as docker does.
        all_ = bool(dangling) and not any(v.lower() in ("1", "true") for v in dangling)
        response = (await _images(request).prune(all_, until, labels, not_labels) if labels or not_labels
                    else await _images(request).prune(all_, until))
    else:
        response = await _images(request).prune(any(v.lower() in ("0", "false") for v in dangling))
    report = [{"Untagged": convert.familiar(u)} for u in response.images_untagged]
    report += [{"Deleted": d} for d in response.images_deleted]
    return json_response({"ImagesDeleted": report or None, "SpaceReclaimed": response.space_reclaimed})
