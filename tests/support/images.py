"""Image tarballs for tests: docker-archive and OCI layouts built in memory, and hostile layers.

    archive = busybox_docker_archive()            # bytes of a `docker save`-style tar
    await image_service.load(chunks_of(archive))  # or stream it over gRPC
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile

from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _is_gzip(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def diff_id(layer: bytes) -> str:
    return sha256(gzip.decompress(layer) if _is_gzip(layer) else layer)


def image_config(layers: list[bytes], config: dict | None = None, created: str = "2024-01-01T00:00:00Z") -> dict:
    """An OCI image config for these layers; `config` is its "config" section (Cmd, Env...)."""
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": config or {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id(layer) for layer in layers]},
        "history": [{"created": created, "created_by": "tests"} for _ in layers],
    }


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return buf.getvalue()


def docker_archive_bytes(layers: list[bytes], config: dict | None = None,
                         repo_tags: list[str] | None = None, full_config: dict | None = None) -> bytes:
    """A `docker save` (legacy layout) tarball with one image.

    `layers` are layer tars (plain or gzip), lowest first; `config` is the image
    config's "config" section; `full_config` replaces the whole config document.
    """
    config_bytes = json.dumps(full_config or image_config(layers, config)).encode()
    config_name = sha256(config_bytes)[7:] + ".json"
    files = {config_name: config_bytes}
    layer_paths = []
    for layer in layers:
        d = sha256(layer)[7:]
        files[f"{d}/layer.tar"] = layer
        files[f"{d}/VERSION"] = b"1.0"
        layer_paths.append(f"{d}/layer.tar")
    files["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": list(repo_tags or []), "Layers": layer_paths}]).encode()
    repos: dict = {}
    for tag in repo_tags or []:
        repo, _, t = tag.rpartition(":")
        repos.setdefault(repo, {})[t] = layer_paths[-1].split("/")[0] if layer_paths else ""
    files["repositories"] = json.dumps(repos).encode()
    return tar_bytes(files)


def oci_layout_bytes(layers: list[bytes], config: dict | None = None, names: list[str] | None = None,
                     via_index: bool = False, ref_name_only: bool = False) -> bytes:
    """An OCI image-layout tarball with one image.

    names go into index.json annotations (io.containerd.image.name, or only
    org.opencontainers.image.ref.name when ref_name_only); via_index puts an
    image index between index.json and the manifest.
    """
    config_bytes = json.dumps(image_config(layers, config)).encode()
    blobs = {sha256(config_bytes): config_bytes}
    layer_descs = []
    for layer in layers:
        blobs[sha256(layer)] = layer
        layer_descs.append({
            "mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if _is_gzip(layer) else ""),
            "digest": sha256(layer), "size": len(layer)})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": layer_descs}).encode()
    blobs[sha256(manifest)] = manifest
    top = {"mediaType": MEDIA_MANIFEST, "digest": sha256(manifest), "size": len(manifest)}
    if via_index:
        nested = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [
            {**top, "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
        blobs[sha256(nested)] = nested
        top = {"mediaType": MEDIA_INDEX, "digest": sha256(nested), "size": len(nested)}
    entries = []
    for name in names or []:
        if ref_name_only:
            annotations = {"org.opencontainers.image.ref.name": name}
        else:
            annotations = {"io.containerd.image.name": name,
                           "org.opencontainers.image.ref.name": name.rpartition(":")[2]}
        entries.append({**top, "annotations": annotations})
    if not entries:
        entries.append(top)
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps({"schemaVersion": 2, "manifests": entries}).encode()}
    for digest, data in blobs.items():
        files[f"blobs/sha256/{digest[7:]}"] = data
    return tar_bytes(files)


def layer_bytes(files: dict[str, bytes], gz: bool = False) -> bytes:
    """A small layer tar of regular files."""
    data = tar_bytes(files)
    return gzip.compress(data, mtime=0) if gz else data


def busybox_rootfs_tar() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        make_busybox_rootfs(tmp)
        return rootfs_tar_bytes(tmp)


def busybox_docker_archive(tag: str = "busybox:latest", cmd: list[str] | None = None) -> bytes:
    """A one-layer busybox image as a `docker save` tarball, named `tag`."""
    return docker_archive_bytes([busybox_rootfs_tar()], {
        "Cmd": list(cmd or ["sh"]),
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    }, [tag] if tag else [])


def chunks_of(data: bytes, size: int = 64 * 1024):
    """An async iterator of chunks, as ImageService.load and import_image take them."""
    async def gen():
        for i in range(0, len(data), size):
            yield data[i:i + size]
    return gen()


# -- hostile layers -----------------------------------------------------------------

def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def hostile_dotdot_layer(escape: str = "../../escaped") -> bytes:
    return _tar([(_file(escape), b"pwned\n")])


def hostile_absolute_layer(path: str = "/tmp/berth-escaped") -> bytes:
    return _tar([(_file(path), b"pwned\n")])


def hostile_symlink_parent_layer(outside_dir: str) -> bytes:
    """A symlink to a directory outside, then a file written through it."""
    return _tar([(_link("evil", outside_dir), None), (_file("evil/pwned"), b"pwned\n")])


def hostile_hardlink_layer(outside_file: str) -> bytes:
    """A hardlink whose target is a file outside the layer."""
    return _tar([(_link("passwd", outside_file, tarfile.LNKTYPE), None)])


def hostile_hardlink_dotdot_layer() -> bytes:
    return _tar([(_link("passwd", "../../../etc/passwd", tarfile.LNKTYPE), None)])


def absolute_hardlink_layer() -> bytes:
    """bin/link, a hardlink whose target is spelled absolute: /bin/tool of the same layer."""
    bin_dir = _file("bin", 0o755)
    bin_dir.type = tarfile.DIRTYPE
    return _tar([(bin_dir, None), (_file("bin/tool", 0o755), b"tool\n"),
                 (_link("bin/link", "/bin/tool", tarfile.LNKTYPE), None)])


def long_name_layer(length: int = 300) -> bytes:
    """A file whose name is longer than any Linux filesystem holds (255 bytes)."""
    return _tar([(_file("x" * length), b"1\n")])


def hostile_overwrite_symlink_layer(outside_file: str) -> bytes:
    """A symlink to a file outside, then a regular file with the same name."""
    return _tar([(_link("target", outside_file), None), (_file("target"), b"pwned\n")])


def device_node_layer(name: str = "dev/sda", char: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE if char else tarfile.BLKTYPE
    info.devmajor, info.devminor = 8, 0
    parent = _file("dev", 0o755)
    parent.type = tarfile.DIRTYPE
    return _tar([(parent, None), (info, None)])


def whiteout_layers() -> tuple[bytes, bytes]:
    """Two layers: the lower has a/gone, a/kept and opq/old; the upper deletes a/gone
    with a whiteout and makes opq/ opaque with a new file opq/new."""
    d = tarfile.DIRTYPE
    lower_dir_a, lower_dir_opq = _file("a", 0o755), _file("opq", 0o755)
    lower_dir_a.type = lower_dir_opq.type = d
    lower = _tar([(lower_dir_a, None), (_file("a/gone"), b"gone\n"), (_file("a/kept"), b"kept\n"),
                  (lower_dir_opq, None), (_file("opq/old"), b"old\n")])
    upper_dir_a, upper_dir_opq = _file("a", 0o755), _file("opq", 0o755)
    upper_dir_a.type = upper_dir_opq.type = d
    upper = _tar([(upper_dir_a, None), (_file("a/.wh.gone"), b""),
                  (upper_dir_opq, None), (_file("opq/.wh..wh..opq"), b""), (_file("opq/new"), b"new\n")])
    return lower, upper
