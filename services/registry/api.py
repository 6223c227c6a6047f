"""The HTTP face of the registry: the OCI distribution API (registry HTTP API v2) on aiohttp.

Every path under /v2/ goes to one handler that splits it with regular
expressions, because repository names contain slashes and aiohttp's route
patterns cannot tell "a/b/blobs/uploads/" from "a/blobs/<digest>".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time

import structlog
from aiohttp import web

from services.registry.auth import Htpasswd
from services.registry.service import RegistryError, parse_manifest
from services.registry.storage import (
    CHUNK, DigestMismatch, Storage, valid_digest, valid_name, valid_tag,
)

log = structlog.get_logger(__name__)

API_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
_ROUTES = [
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]*)")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
]
_CONTENT_RANGE = re.compile(r"(?:bytes )?(\d+)-(\d+)(?:/\d+)?")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def _error(exc: RegistryError) -> web.Response:
    body = {"errors": [{"code": exc.code, "message": exc.message, "detail": exc.detail}]}
    return web.json_response(body, status=exc.status, headers=API_HEADER)


def _unknown_name(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", 404, "repository name not known to registry", {"name": name})


def _paginate(items: list[str], request: web.Request, path: str, key: str, extra: dict) -> web.Response:
    last = request.query.get("last", "")
    if last:
        items = [i for i in items if i > last]
    headers = dict(API_HEADER)
    n = request.query.get("n")
    if n is not None:
        try:
            count = int(n)
        except ValueError:
            raise RegistryError("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested") from None
        if count < 0:
            raise RegistryError("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested")
        if len(items) > count:
            items = items[:count]
            if items:
                headers["Link"] = f'<{path}?n={count}&last={items[-1]}>; rel="next"'
    return web.json_response({**extra, key: items}, headers=headers)


class RegistryApp:
    def __init__(self, storage: Storage, htpasswd: Htpasswd | None = None, realm: str = "berth-registry"):
        self.storage = storage
        self.htpasswd = htpasswd
        self.realm = realm

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 ** 3, middlewares=[self._access_log])
        app.router.add_route("*", "/v2/", self.base)
        app.router.add_route("*", "/v2", self.base)
        app.router.add_route("GET", "/v2/_catalog", self.catalog)
        app.router.add_route("*", "/v2/{tail:.+}", self.dispatch)
        return app

    @web.middleware
    async def _access_log(self, request: web.Request, handler):
        started = time.monotonic()
        status = 500
        try:
            if self.htpasswd is not None:
                self._authorize(request)
            response = await handler(request)
            status = response.status
            return response
        except RegistryError as exc:
            status = exc.status
            response = _error(exc)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = f'Basic realm="{self.realm}"'
            return response
        finally:
            # One line per request: operators and tests count fetches from it.
            log.info("request", method=request.method, path=request.path,
                     range=request.headers.get("Range", ""), status=status,
                     ms=round((time.monotonic() - started) * 1000, 1))

    def _authorize(self, request: web.Request) -> None:
        if self.htpasswd.check(request.headers.get("Authorization")) is None:
            raise RegistryError("UNAUTHORIZED", 401, "authentication required")

    async def base(self, request: web.Request) -> web.Response:
        return web.json_response({}, headers=API_HEADER)

    async def catalog(self, request: web.Request) -> web.Response:
        repos = await asyncio.to_thread(self.storage.repositories)
        return _paginate(repos, request, "/v2/_catalog", "repositories", {})

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        for kind, pattern in _ROUTES:
            m = pattern.fullmatch(tail)
            if m and valid_name(m.group("name")):
                handler = getattr(self, f"{kind}_{request.method.lower()}", None)
                if handler is None:
                    raise RegistryError("UNSUPPORTED", 405, f"{request.method} is not supported here")
                return await handler(request, **m.groupdict())
        if any(p.fullmatch(tail) for _, p in _ROUTES):
            raise RegistryError("NAME_INVALID", 400, "invalid repository name")
        raise RegistryError("UNSUPPORTED", 404, f"no such endpoint /v2/{tail}")

    # -- tags ------------------------------------------------------------------------

    async def tags_get(self, request: web.Request, name: str) -> web.Response:
        tags = self.storage.tags(name)
        if tags is None:
            raise _unknown_name(name)
        return _paginate(tags, request, f"/v2/{name}/tags/list", "tags", {"name": name})

    # -- manifests ----------------------------------------------------------------------

    def _manifest_digest(self, name: str, ref: str) -> str:
        if valid_digest(ref):
            digest = ref
        elif valid_tag(ref):
            digest = self.storage.tag_digest(name, ref)
            if digest is None:
                raise RegistryError("MANIFEST_UNKNOWN", 404, "manifest unknown", {"tag": ref})
        else:
            raise RegistryError("MANIFEST_INVALID", 400, f"invalid tag or digest {ref!r}")
        if self.storage.manifest_media_type(name, digest) is None:
            raise RegistryError("MANIFEST_UNKNOWN", 404, "manifest unknown", {"digest": digest})
        return digest

    async def manifest_get(self, request: web.Request, name: str, ref: str, head: bool = False):
        digest = self._manifest_digest(name, ref)
        media_type = self.storage.manifest_media_type(name, digest)
        data = await asyncio.to_thread(self.storage.read_blob, digest)
        headers = {**API_HEADER, "Docker-Content-Digest": digest, "Content-Type": media_type,
                   "Content-Length": str(len(data))}
        if head:
            return web.Response(status=200, headers=headers)
        return web.Response(body=data, headers=headers)

    async def manifest_head(self, request: web.Request, name: str, ref: str):
        return await self.manifest_get(request, name, ref, head=True)

    async def manifest_put(self, request: web.Request, name: str, ref: str):
        if request.content_length is not None and request.content_length > 4 * 1024 * 1024:
            raise RegistryError("MANIFEST_INVALID", 413, "manifest is larger than 4194304 bytes")
        data = await request.content.read(4 * 1024 * 1024 + 1)
        media_type, refs = parse_manifest(data, request.headers.get("Content-Type", ""))
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        tag = None
        if valid_digest(ref):
            if ref != digest:
                raise RegistryError("DIGEST_INVALID", 400, "provided digest did not match uploaded content",
                                    {"expected": ref, "actual": digest})
        elif valid_tag(ref):
            tag = ref
        else:
            raise RegistryError("TAG_INVALID", 400, f"invalid tag {ref!r}")
        for blob in refs:
            if not self.storage.repo_has_blob(name, blob):
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", 400, "blob unknown to registry", {"digest": blob})
        await asyncio.to_thread(self.storage.put_blob_bytes, data)
        await asyncio.to_thread(self.storage.put_manifest, name, digest, media_type, tag)
        log.info("manifest_pushed", name=name, tag=tag, digest=digest)
        return web.Response(status=201, headers={
            **API_HEADER, "Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest})

    async def manifest_delete(self, request: web.Request, name: str, ref: str):
        if not valid_digest(ref):
            raise RegistryError("UNSUPPORTED", 400, "manifests are deleted by digest, not by tag")
        if not self.storage.delete_manifest(name, ref):
            raise RegistryError("MANIFEST_UNKNOWN", 404, "manifest unknown", {"digest": ref})
        return web.Response(status=202, headers=API_HEADER)

    # -- blobs ---------------------------------------------------------------------------

    def _blob(self, name: str, digest: str) -> int:
        if not valid_digest(digest):
            raise RegistryError("DIGEST_INVALID", 400, f"invalid digest {digest!r}")
        size = self.storage.blob_size(digest)
        if size is None or not self.storage.repo_has_blob(name, digest):
            raise RegistryError("BLOB_UNKNOWN", 404, "blob unknown to registry", {"digest": digest})
        return size

    async def blob_head(self, request: web.Request, name: str, digest: str):
        size = self._blob(name, digest)
        return web.Response(status=200, headers={
            **API_HEADER, "Docker-Content-Digest": digest, "Content-Length": str(size),
            "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"})

    async def blob_get(self, request: web.Request, name: str, digest: str):
        size = self._blob(name, digest)
        start, end, status = 0, size - 1, 200
        m = _RANGE.fullmatch(request.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if start >= size or start > end:
                raise RegistryError("BLOB_UNKNOWN", 416, "requested range not satisfiable")
            status = 206
        headers = {**API_HEADER, "Docker-Content-Digest": digest, "Content-Length": str(end - start + 1),
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        with open(self.storage.blob_path(digest), "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                await response.write(chunk)
        await response.write_eof()
        return response

    async def blob_delete(self, request: web.Request, name: str, digest: str):
        self._blob(name, digest)
        self.storage.unlink_blob(name, digest)
        return web.Response(status=202, headers=API_HEADER)

    # -- uploads ---------------------------------------------------------------------------

    def _upload_headers(self, name: str, upload_id: str) -> dict:
        size = self.storage.upload_size(upload_id)
        return {**API_HEADER, "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
                "Docker-Upload-UUID": upload_id, "Range": f"0-{max(size - 1, 0)}"}

    def _upload(self, name: str, upload_id: str) -> None:
        if self.storage.upload_repo(upload_id) != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")

    async def _append(self, request: web.Request, upload_id: str) -> None:
        path = self.storage.upload_data_path(upload_id)
        with open(path, "ab") as f:
            async for chunk in request.content.iter_chunked(CHUNK):
                f.write(chunk)

    def _finish(self, name: str, upload_id: str, digest: str) -> web.Response:
        if not valid_digest(digest):
            self.storage.cancel_upload(upload_id)
            raise RegistryError("DIGEST_INVALID", 400, f"invalid digest {digest!r}")
        try:
            self.storage.finish_upload(upload_id, name, digest)
        except DigestMismatch as exc:
            self.storage.cancel_upload(upload_id)
            raise RegistryError("DIGEST_INVALID", 400, "provided digest did not match uploaded content",
                                str(exc)) from None
        log.info("blob_pushed", name=name, digest=digest)
        return web.Response(status=201, headers={
            **API_HEADER, "Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest})

    async def upload_post(self, request: web.Request, name: str, uuid: str):
        if uuid:
            raise RegistryError("UNSUPPORTED", 405, "POST starts an upload at /blobs/uploads/")
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and source and valid_digest(mount) and valid_name(source) \
                and self.storage.repo_has_blob(source, mount) and self.storage.blob_size(mount) is not None:
            self.storage.link_blob(name, mount)
            return web.Response(status=201, headers={
                **API_HEADER, "Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount})
        upload_id = self.storage.start_upload(name)
        digest = request.query.get("digest")
        if digest:
            await self._append(request, upload_id)
            return await asyncio.to_thread(self._finish, name, upload_id, digest)
        return web.Response(status=202, headers=self._upload_headers(name, upload_id))

    async def upload_get(self, request: web.Request, name: str, uuid: str):
        self._upload(name, uuid)
        return web.Response(status=204, headers=self._upload_headers(name, uuid))

    async def upload_patch(self, request: web.Request, name: str, uuid: str):
        self._upload(name, uuid)
        content_range = request.headers.get("Content-Range")
        if content_range:
            m = _CONTENT_RANGE.fullmatch(content_range.strip())
            size = self.storage.upload_size(uuid)
            # Chunks must arrive in order: the next one starts where the upload ends.
            if not m or int(m.group(1)) != size or int(m.group(2)) < int(m.group(1)) or (
                    request.content_length is not None
                    and request.content_length != int(m.group(2)) - int(m.group(1)) + 1):
                return web.Response(status=416, headers=self._upload_headers(name, uuid))
        await self._append(request, uuid)
        return web.Response(status=202, headers=self._upload_headers(name, uuid))

    async def upload_put(self, request: web.Request, name: str, uuid: str):
        self._upload(name, uuid)
        await self._append(request, uuid)
        return await asyncio.to_thread(self._finish, name, uuid, request.query.get("digest", ""))

    async def upload_delete(self, request: web.Request, name: str, uuid: str):
        self._upload(name, uuid)
        self.storage.cancel_upload(uuid)
        return web.Response(status=204, headers=API_HEADER)
