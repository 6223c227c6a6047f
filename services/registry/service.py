"""The registry's rules: what a valid manifest is, which blobs a repository may
serve, and garbage collection. HTTP stays in api.py."""

from __future__ import annotations

import json
from dataclasses import dataclass

import structlog

from services.registry.storage import Storage, valid_digest

log = structlog.get_logger(__name__)

MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFEST = 4 * 1024 * 1024


class RegistryError(Exception):
    """An error in the distribution spec's terms: code, HTTP status, message."""

    def __init__(self, code: str, status: int, message: str, detail=None):
        super().__init__(message)
        self.code, self.status, self.message, self.detail = code, status, message, detail


def parse_manifest(data: bytes, content_type: str) -> tuple[str, list[str]]:
    """The media type of a manifest and the digests it refers to; raises MANIFEST_INVALID."""
    if len(data) > MAX_MANIFEST:
        raise RegistryError("MANIFEST_INVALID", 413, f"manifest is larger than {MAX_MANIFEST} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RegistryError("MANIFEST_INVALID", 400, f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise RegistryError("MANIFEST_INVALID", 400, "manifest must be a JSON object with schemaVersion 2")
    media_type = doc.get("mediaType") or content_type.split(";")[0].strip()
    if media_type in MANIFEST_TYPES:
        descs = [doc.get("config"), *(doc.get("layers") or [])]
    elif media_type in INDEX_TYPES:
        descs = list(doc.get("manifests") or [])
    else:
        raise RegistryError("MANIFEST_INVALID", 400, f"unsupported manifest media type {media_type!r}")
    refs = []
    for desc in descs:
        digest = desc.get("digest") if isinstance(desc, dict) else None
        if not valid_digest(digest) or not isinstance(desc.get("size"), int):
            raise RegistryError("MANIFEST_INVALID", 400, "manifest has a descriptor without a sha256 digest and size")
        refs.append(digest)
    return media_type, refs


@dataclass
class GcResult:
    kept: int
    deleted: list[str]
    uploads: int


def garbage_collect(storage: Storage, dry_run: bool = False, upload_age: float = 24 * 3600) -> GcResult:
    """Delete blobs no manifest of any repository reaches (and uploads left for a day).

    Run it while nobody pushes: a blob uploaded but not yet named by a
    manifest is unreachable and would be deleted, as with docker's registry.
    """
    marked: set[str] = set()
    for name in storage.repositories():
        for digest, _media in list(storage.revisions(name)):
            marked.add(digest)
            try:
                _, refs = parse_manifest(storage.read_blob(digest), "")
            except (RegistryError, FileNotFoundError):
                continue
            marked.update(refs)
    deleted = [d for d in storage.all_blobs() if d not in marked]
    stale = storage.stale_uploads(upload_age)
    if not dry_run:
        for digest in deleted:
            storage.delete_blob(digest)
        for upload_id in stale:
            storage.cancel_upload(upload_id)
    log.info("garbage_collected", kept=len(marked), deleted=len(deleted), uploads=len(stale), dry_run=dry_run)
    return GcResult(len(marked), deleted, len(stale))
