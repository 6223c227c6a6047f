"""A client of the OCI distribution API (registry HTTP API v2) for one repository.

    async with Repository(endpoint, "library/busybox", creds, config, push=False) as repo:
        data, media_type, digest = await repo.get_manifest("latest")
        await repo.fetch_blob(digest, size, partial_path, on_bytes)

Authentication follows the registry's 401 challenge: `Bearer realm=...,service=...`
gets a token from the realm (anonymously, or with basic credentials), `Basic`
gets the credentials themselves. Every read has a progress timeout, so a
stalled transfer fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog

from services.common import metrics
from services.common.errors import (
    DeadlineExceeded, InvalidArgument, NotFound, Unauthorized, Unavailable,
)
from services.image import model
from services.image.registries import Endpoint, RegistriesConfig

log = structlog.get_logger(__name__)
# Blob bytes received from registries (resumed bytes already on disk not counted again).
PULLED_BYTES = metrics.meter(__name__).create_counter(
    "berth.image.pull.bytes", unit="By", description="Bytes of image blobs downloaded from registries")

MAX_MANIFEST = 4 * 1024 * 1024
CHUNK = 256 * 1024
MANIFEST_ACCEPT = ", ".join((model.MEDIA_MANIFEST, model.MEDIA_INDEX,
                             model.DOCKER_MANIFEST, model.DOCKER_MANIFEST_LIST))
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    # An identity token (docker's refresh token) replaces the password at token servers.
    identity_token: str = ""

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token)

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def ssl_context(config: RegistriesConfig, host: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca_dir = config.ca_dir(host)
    if ca_dir:
        for name in sorted(os.listdir(ca_dir)):
            if name.endswith(".crt"):
                ctx.load_verify_locations(os.path.join(ca_dir, name))
        cert, key = os.path.join(ca_dir, "client.cert"), os.path.join(ca_dir, "client.key")
        if os.path.exists(cert) and os.path.exists(key):
            ctx.load_cert_chain(cert, key)
    return ctx


def _registry_message(body: bytes) -> str:
    """The first error message of a distribution-spec error body, if it has one."""
    try:
        import json
        errors = json.loads(body).get("errors") or []
        if errors:
            e = errors[0]
            return f"{e.get('code', '').lower()}: {e.get('message', '')}".strip(": ")
    except (ValueError, AttributeError):
        pass
    return ""


class Repository:
    """One repository on one registry endpoint, with its auth state."""

    def __init__(self, endpoint: Endpoint, path: str, creds: Credentials, config: RegistriesConfig,
                 push: bool = False):
        self.endpoint = endpoint
        self.path = path
        self.creds = creds
        self.config = config
        self.actions = "pull,push" if push else "pull"
        self._auth_header: str | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Repository:
        ssl_arg = ssl_context(self.config, self.endpoint.host) if self.endpoint.secure else False
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_arg, limit=16),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout,
                                          sock_read=self.config.progress_timeout),
            auto_decompress=False)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()

    def _url(self, tail: str) -> str:
        if tail.startswith("http://") or tail.startswith("https://"):
            return tail
        if tail.startswith("/"):
            return self.endpoint.url + tail
        return f"{self.endpoint.url}/v2/{self.path}/{tail}"

    # -- requests and auth -----------------------------------------------------------

    async def request(self, method: str, tail: str, *, headers: dict | None = None, data=None,
                      params: dict | None = None, allow_redirects: bool = True) -> aiohttp.ClientResponse:
        """A request with auth; the caller reads and releases the response."""
        assert self._session is not None
        for attempt in range(2):
            hdrs = dict(headers or {})
            if self._auth_header:
                hdrs["Authorization"] = self._auth_header
            try:
                response = await self._session.request(
                    method, self._url(tail), headers=hdrs, data=data, params=params,
                    allow_redirects=allow_redirects)
            except asyncio.TimeoutError:
                raise DeadlineExceeded(
                    f"{method} {self._url(tail)}: no response from {self.endpoint.host} "
                    f"within {self.config.progress_timeout:g}s") from None
            except aiohttp.ClientSSLError as exc:
                raise Unavailable(f"{method} {self._url(tail)}: TLS: {exc}") from None
            except aiohttp.ClientError as exc:
                raise Unavailable(f"{method} {self._url(tail)}: {exc}") from None
            if response.status != 401 or attempt == 1 or data is not None and not isinstance(data, bytes):
                return response
            challenge = response.headers.get("WWW-Authenticate", "")
            response.release()
            await self._authenticate(challenge)
        raise AssertionError("unreachable")

    async def _authenticate(self, challenge: str) -> None:
        scheme, _, rest = challenge.partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        if scheme.lower() == "basic":
            if not self.creds:
                raise Unauthorized(f"{self.endpoint.host}: authentication required (use `berth login`)")
            self._auth_header = self.creds.basic()
            return
        if scheme.lower() != "bearer" or "realm" not in params:
            raise Unauthorized(f"{self.endpoint.host}: unsupported authentication challenge {challenge!r}")
        query = {"scope": f"repository:{self.path}:{self.actions}"}
        if params.get("service"):
            query["service"] = params["service"]
        headers = {}
        if self.creds:
            headers["Authorization"] = self.creds.basic()
        assert self._session is not None
        try:
            async with self._session.get(params["realm"], params=query, headers=headers) as r:
                body = await r.read()
                if r.status in (401, 403):
                    raise Unauthorized(f"{self.endpoint.host}: unauthorized: incorrect username or password")
                if r.status != 200:
                    raise Unavailable(f"token server {params['realm']} answered {r.status}")
        except aiohttp.ClientError as exc:
            raise Unavailable(f"token server {params['realm']}: {exc}") from None
        import json
        try:
            doc = json.loads(body)
        except ValueError:
            raise Unavailable(f"token server {params['realm']} sent no JSON") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise Unavailable(f"token server {params['realm']} sent no token")
        self._auth_header = f"Bearer {token}"

    async def _fail(self, response: aiohttp.ClientResponse, what: str):
        body = await response.read()
        response.release()
        detail = _registry_message(body)
        if response.status == 401:
            raise Unauthorized(f"{what}: {detail or 'unauthorized: authentication required'}")
        if response.status == 403:
            raise Unauthorized(f"{what}: {detail or 'denied: requested access to the resource is denied'}")
        if response.status == 404:
            raise NotFound(f"{what}: {detail or 'not found'}")
        if response.status >= 500 or response.status == 429:
            raise Unavailable(f"{what}: {self.endpoint.host} answered {response.status} {detail}".strip())
        raise InvalidArgument(f"{what}: {self.endpoint.host} answered {response.status} {detail}".strip())

    # -- pull ------------------------------------------------------------------------

    async def ping(self) -> None:
        """Check that the credentials are good: GET /v2/ with the challenge answered."""
        self.path = self.path or "berth/login"
        response = await self.request("GET", "/v2/")
        if response.status != 200:
            await self._fail(response, f"login to {self.endpoint.host}")
        response.release()

    async def get_manifest(self, ref: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest by tag or digest; digest checked."""
        response = await self.request("GET", f"manifests/{ref}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status != 200:
            await self._fail(response, f"manifest for {self.endpoint.host}/{self.path}:{ref}"
                             if not ref.startswith("sha256:") else f"manifest {ref}")
        try:
            if (response.content_length or 0) > MAX_MANIFEST:
                raise InvalidArgument(f"manifest {ref} is too large ({response.content_length} bytes)")
            data = await response.content.read(MAX_MANIFEST + 1)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"manifest {ref}: transfer stalled") from None
        finally:
            response.release()
        if len(data) > MAX_MANIFEST:
            raise InvalidArgument(f"manifest {ref} is larger than {MAX_MANIFEST} bytes")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise InvalidArgument(f"manifest verification failed for digest {ref}: the registry sent {digest}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return data, media_type, digest

    async def fetch_blob(self, digest: str, size: int, partial: str,
                         on_bytes: Callable[[int], None]) -> None:
        """Download a blob into `partial`, resuming what is there, checking size and digest.

        On success `partial` holds exactly the blob; on a mismatch it is removed
        and InvalidArgument raised; on a transfer error it is kept for a resume.
        """
        h = hashlib.sha256()
        have = 0
        if os.path.exists(partial):
            with open(partial, "rb") as f:
                while chunk := f.read(1024 * 1024):
                    h.update(chunk)
                    have += len(chunk)
            if have > size:
                os.unlink(partial)
                h, have = hashlib.sha256(), 0
        if have:
            on_bytes(have)
        headers = {"Range": f"bytes={have}-"} if 0 < have < size else {}
        if have < size or size == 0:
            response = await self.request("GET", f"blobs/{digest}", headers=headers)
            if response.status == 416 and have:
                # The partial file is not a prefix the registry can continue: start over.
                response.release()
                os.unlink(partial)
                on_bytes(-have)
                h, have = hashlib.sha256(), 0
                response = await self.request("GET", f"blobs/{digest}")
            if response.status not in (200, 206):
                await self._fail(response, f"blob {digest}")
            mode = "ab"
            if response.status == 200 and have:
                # The server ignored the Range: start over.
                h, mode = hashlib.sha256(), "wb"
                on_bytes(-have)
                have = 0
            try:
                with open(partial, mode) as out:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        have += len(chunk)
                        if have > size:
                            out.close()
                            os.unlink(partial)
                            raise InvalidArgument(
                                f"blob {digest}: the registry sent more than the {size} bytes the manifest says")
                        h.update(chunk)
                        out.write(chunk)
                        on_bytes(len(chunk))
                        PULLED_BYTES.add(len(chunk))
            except asyncio.TimeoutError:
                raise DeadlineExceeded(
                    f"blob {digest}: no data for {self.config.progress_timeout:g}s, transfer stalled "
                    f"at {have} of {size} bytes") from None
            except aiohttp.ClientError as exc:
                raise Unavailable(f"blob {digest}: transfer broke at {have} of {size} bytes: {exc}") from None
            finally:
                response.release()
        if have != size:
            raise Unavailable(f"blob {digest}: the registry sent {have} of {size} bytes (truncated)")
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            os.unlink(partial)
            raise InvalidArgument(f"filesystem layer verification failed for digest {digest}: got {actual}")

    # -- push ------------------------------------------------------------------------

    async def blob_exists(self, digest: str) -> bool:
        response = await self.request("HEAD", f"blobs/{digest}")
        response.release()
        if response.status == 200:
            return True
        if response.status == 404:
            return False
        await self._fail(response, f"blob {digest}")
        return False

    async def mount_blob(self, digest: str, source: str) -> str | None:
        """Cross-repository mount; returns an upload location when the registry declined."""
        response = await self.request("POST", "blobs/uploads/", params={"mount": digest, "from": source})
        if response.status == 201:
            response.release()
            return None
        if response.status == 202:
            response.release()
            return response.headers["Location"]
        await self._fail(response, f"mount of {digest} from {source}")
        return None

    async def upload_blob(self, digest: str, size: int, path: str, on_bytes: Callable[[int], None],
                          location: str | None = None) -> None:
        """Upload in chunks of config.chunk_size: POST, PATCH with Content-Range, PUT ?digest."""
        if location is None:
            response = await self.request("POST", "blobs/uploads/")
            if response.status != 202:
                await self._fail(response, f"upload of {digest}")
            location = response.headers["Location"]
            response.release()
        offset = 0
        with open(path, "rb") as f:
            while offset < size:
                chunk = f.read(self.config.chunk_size)
                end = offset + len(chunk) - 1
                response = await self.request("PATCH", location, data=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{end}", "Content-Length": str(len(chunk))})
                if response.status != 202:
                    await self._fail(response, f"upload of {digest}")
                location = response.headers.get("Location", location)
                response.release()
                offset = end + 1
                on_bytes(len(chunk))
        sep = "&" if "?" in location else "?"
        response = await self.request("PUT", f"{location}{sep}digest={digest}",
                                      headers={"Content-Length": "0"}, data=b"")
        if response.status not in (201, 204):
            await self._fail(response, f"upload of {digest}")
        response.release()

    async def put_manifest(self, ref: str, data: bytes, media_type: str) -> str:
        response = await self.request("PUT", f"manifests/{ref}", data=data,
                                      headers={"Content-Type": media_type})
        if response.status not in (200, 201, 202):
            await self._fail(response, f"manifest {ref}")
        response.release()
        return response.headers.get("Docker-Content-Digest", "")
