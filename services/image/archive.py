"""Image tarballs: reading `docker save` and OCI image-layout archives, writing both at once.

Reading copies every blob into the content store, checked against the digest
that names it, and returns image records for the caller to commit in one
transaction. Nothing here touches the database, so a tarball that fails
half-way leaves only unreferenced blobs, which garbage collection removes.

Writing follows docker 25+: one tar holding an OCI layout (oci-layout,
index.json, blobs/sha256/...) and docker's manifest.json and repositories,
whose paths point into the same blobs, so `docker load`, older tools that
only know manifest.json, and OCI tools all accept it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO

from berth_docker import reference
from berth_docker.tarstream import ForwardReader, member_pieces
from services.common.errors import InvalidArgument
from services.image import model
from services.image.content import CHUNK, ContentStore
from services.image.model import ImageRecord, Layer

MAX_JSON = 32 * 1024 * 1024
_HEX_JSON_RE = re.compile(r"(?:.*/)?([a-f0-9]{64})\.json")
_BLOB_PATH_RE = re.compile(r"blobs/sha256/([a-f0-9]{64})")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MANIFEST_TYPES = (model.MEDIA_MANIFEST, model.DOCKER_MANIFEST)
INDEX_TYPES = (model.MEDIA_INDEX, model.DOCKER_MANIFEST_LIST)


@dataclass
class LoadedImage:
    record: ImageRecord
    tags: list[str] = field(default_factory=list)


class _Archive:
    """Random access to the members of a spooled tarball, with clear errors."""

    def __init__(self, path: str):
        try:
            self.tar = tarfile.open(path, mode="r:*")
            # An uncompressed tarball's members are read straight from the file by offset.
            self._fd = self.tar.fileobj.fileno() if type(self.tar.fileobj) is io.BufferedReader else None
            self.members = {}
            for m in self.tar.getmembers():
                self.members[posixpath.normpath(m.name.lstrip("/"))] = m
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise InvalidArgument(_tar_problem(exc)) from None

    def close(self) -> None:
        self.tar.close()

    def has(self, name: str) -> bool:
        return posixpath.normpath(name) in self.members

    def _member(self, name: str, hops: int = 0) -> tarfile.TarInfo:
        member = self.members.get(posixpath.normpath(name))
        if member is None:
            raise InvalidArgument(f"invalid image tarball: {name} is missing")
        # docker's legacy format links repeated layers to the first copy.
        if member.issym() and hops < 8:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), member.linkname))
            return self._member(target, hops + 1)
        if member.islnk() and hops < 8:
            return self._member(member.linkname, hops + 1)
        if not member.isreg():
            raise InvalidArgument(f"invalid image tarball: {name} is not a regular file")
        return member

    def open(self, name: str) -> BinaryIO:
        f = self.tar.extractfile(self._member(name))
        assert f is not None
        return f  # type: ignore[return-value]

    def chunks(self, name: str):
        """The member's bytes in pieces of up to CHUNK, each read once from the tarball."""
        member = self._member(name)
        if self._fd is None or member.sparse is not None:
            with self.open(name) as f:
                yield from iter(lambda: f.read(CHUNK), b"")
            return
        at, end = member.offset_data, member.offset_data + member.size
        while at < end:
            piece = os.pread(self._fd, min(CHUNK, end - at), at)
            if not piece:
                return  # a truncated tarball: the size check of the caller names it
            at += len(piece)
            yield piece

    def store(self, content: ContentStore, name: str, expected_digest: str | None,
              expected_size: int | None) -> tuple[str, int]:
        """The member as a blob of the content store, checked: (digest, size)."""
        return content.write(self.chunks(name), expected_digest, expected_size)

    def read_json(self, name: str):
        member = self._member(name)
        if member.size > MAX_JSON:
            raise InvalidArgument(f"invalid image tarball: {name} is too large ({member.size} bytes)")
        data = self.read(name)
        try:
            return json.loads(data), data
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"invalid image tarball: {name} is not valid JSON: {exc}") from None

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            data = f.read()
        if len(data) != self._member(name).size:
            raise InvalidArgument(f"invalid image tarball: {name} is truncated")
        return data


class StreamedArchive(_Archive):
    """A plain tarball read once, as it arrives. A member of more than KEEP bytes (a layer)
    goes to an ingest file of the content store as it passes, hashed on the way, and becomes
    a blob when store() checks it; the rest is kept in memory. Nothing here is a blob
    before store(), so it needs no lock against garbage collection while the bytes arrive."""

    KEEP = 1 << 20

    def __init__(self, reader: ForwardReader, content: ContentStore):
        self._fd = None
        self.members = {}
        self._content = content
        self._data: dict[str, bytes] = {}
        self._ingests: dict[str, tuple[str, str, int]] = {}
        self._stored: dict[str, tuple[str, int]] = {}
        self.tar = None
        try:
            self.tar = tarfile.open(fileobj=reader, mode="r:")
            for m in self.tar:
                name = posixpath.normpath(m.name.lstrip("/"))
                self.members[name] = m
                self._forget(name)  # a later member of the same name is the one that counts
                if not m.isreg():
                    continue
                if m.size > self.KEEP and m.sparse is None:
                    self._ingests[name] = content.ingest(member_pieces(reader, m.offset_data, m.size))
                else:
                    self._data[name] = self.tar.extractfile(m).read()
            reader.drain()
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            self.close()
            raise InvalidArgument(_tar_problem(exc)) from None
        except BaseException:
            self.close()
            raise

    def _forget(self, name: str) -> None:
        self._data.pop(name, None)
        self._stored.pop(name, None)
        if name in self._ingests:
            self._content.discard_ingest(self._ingests.pop(name)[0])

    def _key(self, name: str) -> str:
        return posixpath.normpath(self._member(name).name.lstrip("/"))

    def close(self) -> None:
        for tmp, _, _ in self._ingests.values():
            self._content.discard_ingest(tmp)
        self._ingests.clear()
        if self.tar is not None:
            self.tar.close()

    def open(self, name: str) -> BinaryIO:
        key = self._key(name)
        if key in self._data:
            return io.BytesIO(self._data[key])
        if key in self._stored:
            return self._content.open(self._stored[key][0])
        return open(self._ingests[key][0], "rb")

    def chunks(self, name: str):
        with self.open(name) as f:
            yield from iter(lambda: f.read(CHUNK), b"")

    def store(self, content: ContentStore, name: str, expected_digest: str | None,
              expected_size: int | None) -> tuple[str, int]:
        key = self._key(name)
        if key in self._ingests:
            tmp, digest, size = self._ingests.pop(key)
            self._stored[key] = content.commit_ingest(tmp, digest, size, expected_digest, expected_size), size
        elif key not in self._stored:
            return content.write([self._data[key]], expected_digest, expected_size)
        digest, size = self._stored[key]
        # Stored once, perhaps asked for again (a layer two images share): checked each time.
        if expected_size is not None and size != expected_size:
            raise InvalidArgument(
                f"blob {expected_digest or digest}: size is {size} bytes, expected {expected_size}")
        if expected_digest and digest != expected_digest:
            raise InvalidArgument(f"blob digest mismatch: expected {expected_digest}, got {digest}")
        return digest, size


def is_plain_tar(head: bytes) -> bool:
    """Whether a tarball starting with `head` (512 bytes or more) is an uncompressed POSIX
    or GNU tar, which StreamedArchive reads; any other goes through a spooled file."""
    return len(head) >= 512 and head[257:262] == b"ustar"


def _tar_problem(exc: BaseException) -> str:
    if isinstance(exc, EOFError) or "unexpected end" in str(exc):
        return "not a valid image tarball: it is truncated (unexpected end of data)"
    return f"not a valid image tarball: {exc}"


def read_archive(path: str, content: ContentStore) -> list[LoadedImage]:
    """The images of a docker-archive or OCI-layout tarball, their blobs stored."""
    archive = _Archive(path)
    try:
        return read_images(archive, content)
    finally:
        archive.close()


def read_images(archive: _Archive, content: ContentStore) -> list[LoadedImage]:
    """The images of an opened tarball (an _Archive or StreamedArchive), their blobs stored."""
    try:
        if archive.has("index.json") and archive.has("oci-layout"):
            images = _read_oci(archive, content)
            if archive.has("manifest.json"):
                _add_docker_tags(archive, images)
        elif archive.has("manifest.json"):
            images = _read_docker(archive, content)
        else:
            raise InvalidArgument(
                "invalid image tarball: neither manifest.json (docker save) nor "
                "oci-layout and index.json (OCI image layout) found")
        return _merge(images)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidArgument(_tar_problem(exc)) from None


def _merge(images: list[LoadedImage]) -> list[LoadedImage]:
    by_id: dict[str, LoadedImage] = {}
    for img in images:
        if img.record.id in by_id:
            by_id[img.record.id].tags.extend(t for t in img.tags if t not in by_id[img.record.id].tags)
        else:
            by_id[img.record.id] = img
    return list(by_id.values())


def _normalise_tags(names: list, where: str) -> list[str]:
    out = []
    for name in names or []:
        if not isinstance(name, str):
            raise InvalidArgument(f"invalid image tarball: {where} has a name that is not a string")
        ref = reference.parse(name)
        if ref.digest:
            continue
        out.append(str(ref))
    return out


# -- docker save ---------------------------------------------------------------

def _read_docker(archive: _Archive, content: ContentStore) -> list[LoadedImage]:
    manifest, _ = archive.read_json("manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise InvalidArgument("invalid image tarball: manifest.json must be a non-empty list")
    images = []
    for i, entry in enumerate(manifest):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers", []), list):
            raise InvalidArgument(f"invalid image tarball: manifest.json entry {i} is malformed")
        config_name = entry["Config"]
        expected = _digest_from_path(config_name)
        config_bytes = archive.read(config_name)
        config_digest, config_size = content.write_bytes(config_bytes, expected)
        diff_ids = _config_diff_ids(config_bytes, config_name)
        layer_names = entry.get("Layers") or []
        if len(layer_names) != len(diff_ids):
            raise InvalidArgument(
                f"invalid image tarball: {config_name} lists {len(diff_ids)} layers "
                f"but manifest.json has {len(layer_names)}")
        layers = []
        for name, diff_id in zip(layer_names, diff_ids):
            if not isinstance(name, str):
                raise InvalidArgument("invalid image tarball: layer path in manifest.json is not a string")
            digest, size = archive.store(content, name, _digest_from_path(name), archive._member(name).size)
            layers.append(_checked_layer(content, digest, size, None, diff_id, name))
        manifest_doc = _oci_manifest(config_digest, config_size, layers)
        manifest_digest, _ = content.write_bytes(manifest_doc)
        record = ImageRecord(id=config_digest, manifest_digest=manifest_digest,
                             config_json=config_bytes, layers=tuple(layers),
                             stored_at=datetime.now(timezone.utc))
        images.append(LoadedImage(record, _normalise_tags(entry.get("RepoTags"), "manifest.json")))
    return images


def _add_docker_tags(archive: _Archive, images: list[LoadedImage]) -> None:
    manifest, _ = archive.read_json("manifest.json")
    if not isinstance(manifest, list):
        return
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            continue
        digest = _digest_from_path(entry["Config"])
        for img in images:
            if img.record.id == digest:
                img.tags.extend(t for t in _normalise_tags(entry.get("RepoTags"), "manifest.json")
                                if t not in img.tags)


def _digest_from_path(name: str) -> str | None:
    norm = posixpath.normpath(name)
    m = _BLOB_PATH_RE.fullmatch(norm) or _HEX_JSON_RE.fullmatch(norm)
    return f"sha256:{m.group(1)}" if m else None


def _config_diff_ids(config_bytes: bytes, where: str) -> list[str]:
    try:
        config = json.loads(config_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid image tarball: image config {where} is not valid JSON: {exc}") from None
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise InvalidArgument(f"invalid image tarball: image config {where} has no rootfs.diff_ids list")
    return diff_ids


def _checked_layer(content: ContentStore, digest: str, size: int, media_type: str | None,
                   diff_id: str, where: str) -> Layer:
    with content.open(digest) as f:
        magic = f.read(4)
    if magic.startswith(ZSTD_MAGIC):
        raise InvalidArgument(f"layer {where} is zstd-compressed, which berth does not support yet")
    gzipped = magic[:2] == GZIP_MAGIC
    actual = diff_id_of(content, digest) if gzipped else digest
    if actual != diff_id:
        raise InvalidArgument(
            f"invalid image tarball: layer {where} has diff_id {actual}, but the image config says {diff_id}")
    if media_type is None:
        media_type = model.MEDIA_LAYER_GZIP if gzipped else model.MEDIA_LAYER
    return Layer(diff_id=diff_id, digest=digest, media_type=media_type, size=size)


def diff_id_of(content: ContentStore, digest: str) -> str:
    """The sha256 of a gzip blob's uncompressed bytes."""
    h = hashlib.sha256()
    try:
        with content.open(digest) as raw, gzip.GzipFile(fileobj=raw) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidArgument(f"layer {digest} is not valid gzip: {exc}") from None
    return "sha256:" + h.hexdigest()


def _oci_manifest(config_digest: str, config_size: int, layers: list[Layer]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": model.MEDIA_MANIFEST,
        "config": {"mediaType": model.MEDIA_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                   for layer in layers],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


# -- OCI image layout ----------------------------------------------------------------

def _blob_path(desc: dict, where: str) -> tuple[str, str, int | None]:
    digest = desc.get("digest") if isinstance(desc, dict) else None
    if not isinstance(digest, str) or not re.fullmatch(r"sha256:[a-f0-9]{64}", digest):
        raise InvalidArgument(f"invalid image tarball: {where} has a descriptor without a valid sha256 digest")
    size = desc.get("size")
    return digest, f"blobs/sha256/{digest[7:]}", size if isinstance(size, int) else None


def _read_blob(archive: _Archive, content: ContentStore, desc: dict, where: str) -> tuple[str, bytes]:
    digest, path, size = _blob_path(desc, where)
    if not archive.has(path):
        raise InvalidArgument(f"invalid image tarball: blob {digest} ({where}) is missing")
    data = archive.read(path)
    if size is not None and len(data) != size:
        raise InvalidArgument(f"invalid image tarball: blob {digest} is {len(data)} bytes, descriptor says {size}")
    content.write_bytes(data, digest)
    return digest, data


def _read_oci(archive: _Archive, content: ContentStore) -> list[LoadedImage]:
    index, _ = archive.read_json("index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InvalidArgument("invalid image tarball: index.json has no manifests list")
    images: list[LoadedImage] = []
    for desc in index["manifests"]:
        _read_descriptor(archive, content, desc, _names(desc), images, depth=0)
    if not images:
        raise InvalidArgument("invalid image tarball: index.json names no linux image manifest")
    return images


def _names(desc: dict) -> list[str]:
    annotations = desc.get("annotations") if isinstance(desc, dict) else None
    if not isinstance(annotations, dict):
        return []
    name = annotations.get(model.ANNOTATION_CONTAINERD_NAME)
    if isinstance(name, str) and name:
        return _normalise_tags([name], "index.json")
    ref_name = annotations.get(model.ANNOTATION_REF_NAME)
    # A bare tag ("latest") names no repository; only full references count.
    if isinstance(ref_name, str) and any(c in ref_name for c in ":/@"):
        try:
            return _normalise_tags([ref_name], "index.json")
        except InvalidArgument:
            return []
    return []


def _platform_ok(desc: dict) -> bool:
    platform = desc.get("platform")
    annotations = desc.get("annotations") or {}
    if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
        return False
    if not isinstance(platform, dict):
        return True
    return platform.get("os") in (None, "linux") and platform.get("architecture") in (None, "amd64")


def _read_descriptor(archive: _Archive, content: ContentStore, desc: dict, names: list[str],
                     images: list[LoadedImage], depth: int) -> None:
    if depth > 4:
        raise InvalidArgument("invalid image tarball: image indexes nested too deeply")
    if not isinstance(desc, dict):
        raise InvalidArgument("invalid image tarball: index.json has a malformed descriptor")
    media_type = desc.get("mediaType")
    digest, data = _read_blob(archive, content, desc, "index.json")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid image tarball: blob {digest} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"invalid image tarball: blob {digest} is not a JSON object")
    media_type = media_type or doc.get("mediaType")
    if media_type in INDEX_TYPES or (media_type is None and "manifests" in doc):
        for child in doc.get("manifests") or []:
            if isinstance(child, dict) and _platform_ok(child):
                _read_descriptor(archive, content, child, names or _names(child), images, depth + 1)
        return
    if media_type not in MANIFEST_TYPES and media_type is not None:
        raise InvalidArgument(f"invalid image tarball: unsupported manifest media type {media_type!r}")
    images.append(LoadedImage(_read_manifest(archive, content, digest, doc), list(names)))


def _read_manifest(archive: _Archive, content: ContentStore, digest: str, doc: dict) -> ImageRecord:
    config_desc = doc.get("config")
    layer_descs = doc.get("layers")
    if not isinstance(config_desc, dict) or not isinstance(layer_descs, list):
        raise InvalidArgument(f"invalid image tarball: manifest {digest} has no config or layers")
    config_digest, config_bytes = _read_blob(archive, content, config_desc, f"manifest {digest}")
    diff_ids = _config_diff_ids(config_bytes, config_digest)
    if len(diff_ids) != len(layer_descs):
        raise InvalidArgument(
            f"invalid image tarball: manifest {digest} has {len(layer_descs)} layers "
            f"but its config lists {len(diff_ids)}")
    layers = []
    for desc, diff_id in zip(layer_descs, diff_ids):
        layer_digest, path, size = _blob_path(desc, f"manifest {digest}")
        if not archive.has(path):
            raise InvalidArgument(f"invalid image tarball: layer blob {layer_digest} is missing")
        _, stored = archive.store(content, path, layer_digest, size)
        media_type = desc.get("mediaType") if isinstance(desc.get("mediaType"), str) else None
        layers.append(_checked_layer(content, layer_digest, stored, media_type, diff_id, layer_digest))
    return ImageRecord(id=config_digest, manifest_digest=digest, config_json=config_bytes,
                       layers=tuple(layers), stored_at=datetime.now(timezone.utc))


# -- writing -------------------------------------------------------------------

def write_archive(out: BinaryIO, images: list[tuple[ImageRecord, list[str]]],
                  content: ContentStore) -> None:
    """Write images (with their full names) as a docker-archive + OCI layout tarball."""
    written: set[str] = set()
    index_manifests = []
    docker_manifest = []
    repositories: dict[str, dict[str, str]] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "blobs/", None)
        _add_bytes(tar, "blobs/sha256/", None)

        def blob(digest: str) -> str:
            path = f"blobs/sha256/{digest[7:]}"
            if digest not in written:
                written.add(digest)
                info = tarfile.TarInfo(path)
                info.size = content.size(digest)
                info.mode = 0o644
                with content.open(digest) as f:
                    tar.addfile(info, f)
            return path

        for record, tags in images:
            manifest_bytes = content.read(record.manifest_digest)
            blob(record.manifest_digest)
            config_path = blob(record.id)
            layer_paths = [blob(layer.digest) for layer in record.layers]
            desc = {"mediaType": model.MEDIA_MANIFEST, "digest": record.manifest_digest,
                    "size": len(manifest_bytes)}
            try:
                declared = json.loads(manifest_bytes).get("mediaType")
            except ValueError:
                declared = None
            if declared:
                desc["mediaType"] = declared
            for tag in tags:
                ref = reference.parse(tag)
                index_manifests.append({**desc, "annotations": {
                    model.ANNOTATION_CONTAINERD_NAME: tag,
                    model.ANNOTATION_REF_NAME: ref.tag}})
                repositories.setdefault(reference.familiar(ref.name), {})[ref.tag] = record.id[7:]
            if not tags:
                index_manifests.append(desc)
            docker_manifest.append({"Config": config_path,
                                    "RepoTags": [reference.familiar(t) for t in tags],
                                    "Layers": layer_paths})
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_bytes(tar, "index.json", json.dumps({
            "schemaVersion": 2, "mediaType": model.MEDIA_INDEX,
            "manifests": index_manifests}).encode())
        _add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode())
        if repositories:
            _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name.rstrip("/"))
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))



def import_rootfs(path: str, content: ContentStore, config: model.ImageConfig,
                  message: str = "") -> ImageRecord:
    """A one-layer image from a root filesystem tarball (plain or gzip) at `path`."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for _ in tar:
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise InvalidArgument(f"import: not a valid tar archive: {exc}") from None
    with open(path, "rb") as f:
        digest, size = content.write_file(f)
    with content.open(digest) as f:
        gzipped = f.read(2) == GZIP_MAGIC
    diff_id = diff_id_of(content, digest) if gzipped else digest
    layer = Layer(diff_id=diff_id, digest=digest, size=size,
                  media_type=model.MEDIA_LAYER_GZIP if gzipped else model.MEDIA_LAYER)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    history = {"created": now, "created_by": "berth import"}
    if message:
        history["comment"] = message
    config_doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": now,
        "config": config.to_oci(),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [history],
    }
    config_bytes = json.dumps(config_doc, separators=(",", ":")).encode()
    config_digest, config_size = content.write_bytes(config_bytes)
    manifest_digest, _ = content.write_bytes(_oci_manifest(config_digest, config_size, [layer]))
    return ImageRecord(id=config_digest, manifest_digest=manifest_digest, config_json=config_bytes,
                       layers=(layer,), stored_at=datetime.now(timezone.utc))
