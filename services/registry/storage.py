"""Registry storage on a filesystem: blobs by digest, repositories as links to them.

Layout under the root:

    blobs/sha256/<hex>                          blob and manifest bytes, named by their digest
    uploads/<uuid>/data                         an upload in progress ("repo" names its repository)
    repositories/<name>/_layers/<hex>           the repository may serve this blob
    repositories/<name>/_manifests/revisions/<hex>   a manifest of the repository (holds its media type)
    repositories/<name>/_manifests/tags/<tag>   the digest the tag points at

Every file is written to a temporary name and renamed, so a crash leaves
either the old or the new state. A blob enters blobs/ only after its digest
and size were checked. Repository names are docker-style paths whose
components start with [a-z0-9], so they never collide with the `_` entries.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator

_HEX_RE = re.compile(r"[a-f0-9]{64}")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
CHUNK = 1024 * 1024


def valid_name(name: str) -> bool:
    return len(name) <= 255 and bool(_NAME_RE.fullmatch(name))


def valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.fullmatch(tag))


def valid_digest(digest: str) -> bool:
    return bool(_DIGEST_RE.fullmatch(digest or ""))


def _write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


class DigestMismatch(Exception):
    pass


class Storage:
    def __init__(self, root: str):
        self.root = root
        self.blob_dir = os.path.join(root, "blobs", "sha256")
        self.upload_dir = os.path.join(root, "uploads")
        self.repo_dir = os.path.join(root, "repositories")
        for d in (self.blob_dir, self.upload_dir, self.repo_dir):
            os.makedirs(d, exist_ok=True)

    # -- blobs ---------------------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, digest[len("sha256:"):])

    def blob_size(self, digest: str) -> int | None:
        try:
            return os.stat(self.blob_path(digest)).st_size
        except FileNotFoundError:
            return None

    def put_blob_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.blob_size(digest) is None:
            _write_atomic(self.blob_path(digest), data)
        return digest

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def _repo(self, name: str, *parts: str) -> str:
        return os.path.join(self.repo_dir, name, *parts)

    def link_blob(self, name: str, digest: str) -> None:
        path = self._repo(name, "_layers", digest[7:])
        if not os.path.exists(path):
            _write_atomic(path, digest.encode())

    def repo_has_blob(self, name: str, digest: str) -> bool:
        return (os.path.exists(self._repo(name, "_layers", digest[7:]))
                or os.path.exists(self._repo(name, "_manifests", "revisions", digest[7:])))

    def unlink_blob(self, name: str, digest: str) -> bool:
        return _unlink(self._repo(name, "_layers", digest[7:]))

    # -- uploads -----------------------------------------------------------------

    def start_upload(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        d = os.path.join(self.upload_dir, upload_id)
        os.makedirs(d)
        _write_atomic(os.path.join(d, "repo"), name.encode())
        open(os.path.join(d, "data"), "wb").close()
        return upload_id

    def upload_repo(self, upload_id: str) -> str | None:
        if not re.fullmatch(r"[0-9a-f-]{36}", upload_id):
            return None
        try:
            with open(os.path.join(self.upload_dir, upload_id, "repo")) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def upload_data_path(self, upload_id: str) -> str:
        return os.path.join(self.upload_dir, upload_id, "data")

    def upload_size(self, upload_id: str) -> int:
        return os.stat(self.upload_data_path(upload_id)).st_size

    def cancel_upload(self, upload_id: str) -> None:
        shutil.rmtree(os.path.join(self.upload_dir, upload_id), ignore_errors=True)

    def finish_upload(self, upload_id: str, name: str, digest: str) -> int:
        """Check the upload against `digest` and move it into the blob store; returns its size."""
        path = self.upload_data_path(upload_id)
        h = hashlib.sha256()
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                size += len(chunk)
            os.fsync(f.fileno())
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            raise DigestMismatch(f"upload has digest {actual}, not {digest}")
        if self.blob_size(digest) is None:
            os.rename(path, self.blob_path(digest))
        self.cancel_upload(upload_id)
        self.link_blob(name, digest)
        return size

    def stale_uploads(self, older_than: float) -> list[str]:
        now = time.time()
        out = []
        for upload_id in os.listdir(self.upload_dir):
            try:
                if now - os.stat(os.path.join(self.upload_dir, upload_id)).st_mtime > older_than:
                    out.append(upload_id)
            except FileNotFoundError:
                pass
        return out

    # -- manifests and tags -----------------------------------------------------------

    def put_manifest(self, name: str, digest: str, media_type: str, tag: str | None) -> None:
        _write_atomic(self._repo(name, "_manifests", "revisions", digest[7:]), media_type.encode())
        if tag:
            _write_atomic(self._repo(name, "_manifests", "tags", tag), digest.encode())

    def manifest_media_type(self, name: str, digest: str) -> str | None:
        try:
            with open(self._repo(name, "_manifests", "revisions", digest[7:])) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def tag_digest(self, name: str, tag: str) -> str | None:
        try:
            with open(self._repo(name, "_manifests", "tags", tag)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def tags(self, name: str) -> list[str] | None:
        if not os.path.isdir(self._repo(name)):
            return None
        try:
            return sorted(os.listdir(self._repo(name, "_manifests", "tags")))
        except FileNotFoundError:
            return []

    def delete_manifest(self, name: str, digest: str) -> bool:
        if not _unlink(self._repo(name, "_manifests", "revisions", digest[7:])):
            return False
        for tag in self.tags(name) or []:
            if self.tag_digest(name, tag) == digest:
                _unlink(self._repo(name, "_manifests", "tags", tag))
        return True

    def repositories(self) -> list[str]:
        out = []
        for dirpath, dirs, _files in os.walk(self.repo_dir):
            if "_manifests" in dirs:
                out.append(os.path.relpath(dirpath, self.repo_dir))
            dirs[:] = [d for d in dirs if not d.startswith("_")]
        return sorted(out)

    def revisions(self, name: str) -> Iterator[tuple[str, str]]:
        d = self._repo(name, "_manifests", "revisions")
        for hexd in os.listdir(d) if os.path.isdir(d) else ():
            if _HEX_RE.fullmatch(hexd):
                yield "sha256:" + hexd, self.manifest_media_type(name, "sha256:" + hexd) or ""

    def all_blobs(self) -> list[str]:
        return ["sha256:" + n for n in os.listdir(self.blob_dir) if _HEX_RE.fullmatch(n)]

    def delete_blob(self, digest: str) -> None:
        _unlink(self.blob_path(digest))
