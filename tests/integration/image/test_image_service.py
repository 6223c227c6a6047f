"""ImageService on a real state directory: load, import, save, names, removal, snapshots."""

import asyncio
import hashlib
import io
import json
import os
import tarfile

import pytest

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.image import snapshotter as snapshotter_mod
from services.image.model import ImageConfig
from services.image.service import ImageService
from tests.support import images as ti

BUSYBOX = "docker.io/library/busybox:latest"


def blobs(state_dir):
    return sorted(os.listdir(os.path.join(state_dir, "blobs", "sha256")))


def layer_dirs(state_dir):
    return sorted(n for n in os.listdir(os.path.join(state_dir, "layers")) if not n.startswith("."))


async def load(service, data):
    images, _ = await service.load(ti.chunks_of(data))
    return images


async def test_load_docker_archive_and_resolve_every_way(service):
    layers = [ti.layer_bytes({"etc/a": b"1"}), ti.layer_bytes({"etc/b": b"2"}, gz=True)]
    [img] = await load(service, ti.docker_archive_bytes(layers, {"Cmd": ["sh"], "Env": ["A=1"]},
                                                        ["busybox:latest", "me/app:2"]))
    assert img.repo_tags == (BUSYBOX, "docker.io/me/app:2")
    assert img.config.cmd == ("sh",) and img.config.env == ("A=1",)
    assert img.diff_ids == tuple(ti.diff_id(layer) for layer in layers)
    assert img.size == sum(len(layer) for layer in layers)
    assert (img.architecture, img.os) == ("amd64", "linux")
    for ref in ("busybox", "busybox:latest", BUSYBOX, "me/app:2", img.id, img.id[7:], img.id[7:12],
                f"busybox@{img.manifest_digest}"):
        assert (await service.get_image(ref)).id == img.id, ref
    with pytest.raises(NotFound, match="No such image: busybox:1"):
        await service.get_image("busybox:1")
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        await service.get_image("Bad:Ref!")


@pytest.mark.parametrize("via_index,ref_name_only", [(False, False), (True, False), (False, True)])
async def test_load_oci_layout(service, via_index, ref_name_only):
    layer = ti.layer_bytes({"hello": b"world"}, gz=True)
    data = ti.oci_layout_bytes([layer], {"Cmd": ["/hello"]}, ["example.com/x/hello:v1"],
                               via_index=via_index, ref_name_only=ref_name_only)
    [img] = await load(service, data)
    assert img.repo_tags == ("example.com/x/hello:v1",)
    assert img.config.cmd == ("/hello",)
    assert img.repo_digests == (f"example.com/x/hello@{img.manifest_digest}",)


async def test_oci_layout_without_names_loads_untagged(service):
    [img] = await load(service, ti.oci_layout_bytes([ti.layer_bytes({"f": b"x"})]))
    assert img.repo_tags == ()
    assert await service.list_images() == []
    assert [i.id for i in await service.list_images(all=True)] == [img.id]


async def test_import_makes_a_one_layer_image(service):
    rootfs = ti.layer_bytes({"bin/tool": b"#!/bin/sh\n"}, gz=True)
    img = await service.import_image(ti.chunks_of(rootfs), name="imported:1",
                                     config=ImageConfig(cmd=("/bin/tool",)), message="hi")
    assert img.repo_tags == ("docker.io/library/imported:1",)
    assert img.diff_ids == (ti.diff_id(rootfs),)
    cfg = json.loads(img.config_json)
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": [ti.diff_id(rootfs)]}
    assert cfg["config"]["Cmd"] == ["/bin/tool"] and cfg["history"][0]["comment"] == "hi"
    with pytest.raises(InvalidArgument, match="not a valid tar"):
        await service.import_image(ti.chunks_of(b"not a tar at all" * 100))


async def test_save_then_load_round_trip(service, tmp_path):
    [img] = await load(service, ti.busybox_docker_archive())
    data = b"".join([chunk async for chunk in service.save(["busybox"])])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
        index = json.load(tar.extractfile("index.json"))
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= names
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert all(f in names for f in [manifest[0]["Config"], *manifest[0]["Layers"]])
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == BUSYBOX

    other = ImageService(str(tmp_path / "other"))
    try:
        [again] = await load(other, data)
        assert (again.id, again.repo_tags, again.manifest_digest) == (img.id, img.repo_tags, img.manifest_digest)
        # Only manifest.json, as older tools read it: still the same image.
        legacy = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=legacy, mode="w") as dst:
            for m in src.getmembers():
                if m.name not in ("index.json", "oci-layout"):
                    dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        await other.remove_image("busybox")
        [third] = await load(other, legacy.getvalue())
        assert third.id == img.id and third.repo_tags == (BUSYBOX,)
    finally:
        other.close()


async def test_tag_list_and_remove(service, state_dir):
    [img] = await load(service, ti.docker_archive_bytes([ti.layer_bytes({"a": b"1"})], {}, ["busybox"]))
    tagged = await service.tag("busybox", "mine:1")
    assert tagged.repo_tags == ("docker.io/library/busybox:latest", "docker.io/library/mine:1")
    with pytest.raises(InvalidArgument, match="digest"):
        await service.tag("busybox", f"x@{img.manifest_digest}")
    assert [i.id for i in await service.list_images("mine")] == [img.id]
    assert await service.list_images("nothing") == []

    with pytest.raises(FailedPrecondition, match="referenced in multiple repositories"):
        await service.remove_image(img.id)
    result = await service.remove_image("mine:1")
    assert result.untagged == ("docker.io/library/mine:1",) and result.deleted == ()
    result = await service.remove_image("busybox")
    assert result.untagged == (BUSYBOX,) and result.deleted == (img.id,)
    with pytest.raises(NotFound, match="No such image: busybox:latest"):
        await service.get_image("busybox")
    assert blobs(state_dir) == []


async def test_short_id_ambiguity(service):
    # Find two configs whose ids share their first four hex digits.
    seen: dict[str, int] = {}
    for n in range(100_000):
        doc = ti.image_config([], {"Env": [f"N={n}"]})
        prefix = hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:4]
        if prefix in seen:
            break
        seen[prefix] = n
    for i in (seen[prefix], n):
        await load(service, ti.docker_archive_bytes([], full_config=ti.image_config([], {"Env": [f"N={i}"]})))
    with pytest.raises(InvalidArgument, match="ambiguous"):
        await service.get_image(prefix)


async def test_in_use_image_is_refused_then_forced(service, state_dir):
    [img] = await load(service, ti.busybox_docker_archive())
    await service.prepare_snapshot("c0ffee1234567890", "busybox", {"berth.container": "c0ffee"})
    with pytest.raises(FailedPrecondition,
                       match="unable to remove image busybox:latest: image is in use by container c0ffee123456"):
        await service.remove_image("busybox")
    with pytest.raises(FailedPrecondition, match="in use"):
        await service.remove_image(img.id)
    result = await service.remove_image("busybox", force=True)
    assert result.deleted == (img.id,)
    # The snapshot still needs its layer; blobs are gone.
    assert layer_dirs(state_dir) == [img.diff_ids[0][7:]]
    assert blobs(state_dir) == []
    mounts = await service.snapshot_mounts("c0ffee1234567890")
    assert mounts.image_id == img.id
    await service.remove_snapshot("c0ffee1234567890")
    assert layer_dirs(state_dir) == []
    await service.remove_snapshot("c0ffee1234567890")  # unknown key: fine


async def test_prepare_snapshot(service, state_dir):
    lower, upper = ti.whiteout_layers()
    [img] = await load(service, ti.docker_archive_bytes([lower, upper], {}, ["two:layers"]))
    prepared = await service.prepare_snapshot("k1", "two:layers", {"a": "b"})
    [mount] = prepared.mounts
    chains = snapshotter_mod.chain_ids(img.diff_ids)
    assert (mount.type, mount.source, mount.target) == ("overlay", "overlay", "")
    assert mount.options[0] == "lowerdir=" + ":".join(
        os.path.join(state_dir, "layers", c[7:], "fs") for c in reversed(chains))
    assert mount.options[1:] == (f"upperdir={state_dir}/snapshots/k1/upper",
                                 f"workdir={state_dir}/snapshots/k1/work")
    with pytest.raises(AlreadyExists):
        await service.prepare_snapshot("k1", img.id)
    for bad in ("", "a/b", ".."):
        with pytest.raises(InvalidArgument):
            await service.prepare_snapshot(bad, img.id)
    with open(f"{state_dir}/snapshots/k1/upper/data", "wb") as f:
        f.write(b"x" * 1000)
    [snap] = await service.list_snapshots()
    assert (snap.key, snap.image_id, snap.labels, snap.size) == ("k1", img.id, {"a": "b"}, 1000)


async def test_a_commit_told_to_remove_its_snapshot_leaves_none(service, state_dir):
    [img] = await load(service, ti.busybox_docker_archive())
    await service.prepare_snapshot("step", img.id)
    with open(f"{state_dir}/snapshots/step/upper/added", "wb") as f:
        f.write(b"added\n")
    child = await service.commit("step", ImageConfig(), name="built:1", remove=True)
    assert await service.list_snapshots() == []
    assert not os.path.exists(f"{state_dir}/snapshots/step")
    assert (await service.get_image("built:1")).id == child.id
    assert len(child.diff_ids) == len(img.diff_ids) + 1
    # Its layer is the snapshot's writable layer, there for the next step to build on.
    await service.prepare_snapshot("next", child.id)
    [mount] = (await service.snapshot_mounts("next")).mounts
    top = mount.options[0].removeprefix("lowerdir=").split(":")[0]
    with open(os.path.join(top, "added"), "rb") as f:
        assert f.read() == b"added\n"


async def test_concurrent_prepares_unpack_once(service, monkeypatch):
    [img] = await load(service, ti.busybox_docker_archive())
    # As an image recorded before layers were unpacked at load has it.
    service.snapshotter.remove_layer(img.diff_ids[0])
    calls = []
    real = snapshotter_mod.unpack_layer

    def counting(f, root):
        calls.append(root)
        return real(f, root)
    monkeypatch.setattr(snapshotter_mod, "unpack_layer", counting)
    results = await asyncio.gather(*(service.prepare_snapshot(f"c{i}", img.id) for i in range(4)))
    assert len(calls) == 1
    assert len({r.mounts[0].options[0] for r in results}) == 1


def _hostile_cases(outside: str) -> dict:
    """Each hostile layer: (layer, a path the layer must hold, or the error load gives)."""
    return {
        "dotdot": (ti.hostile_dotdot_layer(), ("escaped", None)),
        "absolute": (ti.hostile_absolute_layer(outside + "/abs"), (outside.lstrip("/") + "/abs", None)),
        "device node": (ti.device_node_layer(), ("dev/sda", None)),
        "absolute hardlink": (ti.absolute_hardlink_layer(), ("bin/link", None)),
        "symlink parent": (ti.hostile_symlink_parent_layer(outside), (None, "'evil/pwned'.*symlink")),
        "hardlink outside": (ti.hostile_hardlink_layer(outside + "/secret"), (None, "'passwd'")),
        "hardlink dotdot": (ti.hostile_hardlink_dotdot_layer(), (None, "'passwd'")),
        "long name": (ti.long_name_layer(), (None, "'x{300}' cannot be unpacked: File name too long")),
    }


@pytest.mark.parametrize("case", list(_hostile_cases("/x")))
async def test_hostile_layers_are_contained_or_refused_at_load(service, state_dir, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    layer, (inside, error) = _hostile_cases(str(outside))[case]
    archive = ti.docker_archive_bytes([layer], {}, ["odd:1"])
    if error:
        with pytest.raises(InvalidArgument, match=error):
            await load(service, archive)
        assert await service.list_images(all=True) == []
        assert layer_dirs(state_dir) == [] and blobs(state_dir) == []
    else:
        [img] = await load(service, archive)
        # Unpacked at load: a run needs no unpacking, so it cannot fail on the layer.
        [chain] = layer_dirs(state_dir)
        assert os.path.lexists(os.path.join(state_dir, "layers", chain, "fs", inside))
        await service.prepare_snapshot("k", img.id)
    assert sorted(os.listdir(outside)) == ["secret"]
    assert os.stat(outside / "secret").st_nlink == 1


async def test_hostile_import_is_refused_at_import(service, state_dir):
    with pytest.raises(InvalidArgument, match="File name too long"):
        await service.import_image(ti.chunks_of(ti.long_name_layer()), "odd:2")
    assert await service.list_images(all=True) == []
    assert layer_dirs(state_dir) == []


def _corrupt_archives():
    layer = ti.layer_bytes({"a": b"1"})
    good = ti.docker_archive_bytes([layer], {}, ["x:1"])

    def rewrite(data, name, new):
        out = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
            for m in src.getmembers():
                if m.name == name:
                    if new is None:
                        continue
                    m.size = len(new)
                    dst.addfile(m, io.BytesIO(new))
                else:
                    dst.addfile(m, src.extractfile(m))
        return out.getvalue()
    layer_path = f"{ti.sha256(layer)[7:]}/layer.tar"
    oci = ti.oci_layout_bytes([layer], {}, ["x:1"])
    oci_layer = f"blobs/sha256/{ti.sha256(layer)[7:]}"
    return {
        "truncated": (good[:len(good) // 2], "truncated"),
        "bad layer digest": (rewrite(good, layer_path, ti.layer_bytes({"a": b"2"})), "diff_id"),
        "missing layer": (rewrite(good, layer_path, None), "missing"),
        "malformed manifest": (rewrite(good, "manifest.json", b"[{"), "not valid JSON"),
        "oci missing blob": (rewrite(oci, oci_layer, None), "missing"),
        "oci tampered blob": (rewrite(oci, oci_layer, ti.layer_bytes({"a": b"3"})), "mismatch|diff_id"),
        "not a tar": (b"hello" * 1000, "not a valid image tarball"),
    }


@pytest.mark.parametrize("case", list(_corrupt_archives()))
async def test_corrupt_tarball_stores_nothing(service, state_dir, case):
    data, message = _corrupt_archives()[case]
    two = ti.docker_archive_bytes([ti.layer_bytes({"first": b"1"})], {}, ["ok:1"])
    await load(service, two)
    before = blobs(state_dir)
    with pytest.raises(InvalidArgument, match=message):
        await load(service, data)
    assert [i.repo_tags for i in await service.list_images(all=True)] == [("docker.io/library/ok:1",)]
    assert blobs(state_dir) == before
    assert os.listdir(os.path.join(state_dir, "tmp")) == []


async def test_restart_keeps_everything(state_dir):
    first = ImageService(state_dir)
    [img] = await load(first, ti.busybox_docker_archive())
    await first.prepare_snapshot("keep", "busybox")
    before = (blobs(state_dir), layer_dirs(state_dir))
    first.close()
    os.makedirs(os.path.join(state_dir, "snapshots", "orphan", "upper"))
    second = ImageService(state_dir)
    try:
        assert (await second.get_image("busybox")).id == img.id
        assert (await second.snapshot_mounts("keep")).image_id == img.id
        assert (blobs(state_dir), layer_dirs(state_dir)) == before
        assert sorted(os.listdir(os.path.join(state_dir, "snapshots"))) == ["keep"]
    finally:
        second.close()


async def test_a_created_image_keeps_its_parent_across_restarts(state_dir):
    """docker's Parent: kept by the image service for images made from another one."""
    first = ImageService(state_dir)
    [base] = await load(first, ti.busybox_docker_archive())
    assert base.parent == ""
    child = await first.create_image("busybox", ImageConfig(cmd=("true",)), ti.chunks_of(b""), name="child:1")
    assert child.parent == base.id
    first.close()
    second = ImageService(state_dir)
    try:
        assert (await second.get_image("child:1")).parent == base.id
    finally:
        second.close()


def test_a_store_from_before_parents_opens_with_none(tmp_path):
    import sqlite3
    from services.image.store import ImageStore
    path = str(tmp_path / "images.db")
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE images (id TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL,"
                     " config_json BLOB NOT NULL, stored_at REAL NOT NULL, labels TEXT NOT NULL DEFAULT '{}');"
                     "INSERT INTO images VALUES ('sha256:aa', 'sha256:bb', x'7b7d', 0, '{}');")
    db.close()
    store = ImageStore(path)
    try:
        assert store.get_image("sha256:aa").parent == ""
    finally:
        store.close()


async def test_a_removed_parent_is_not_reported(service):
    [base] = await load(service, ti.busybox_docker_archive())
    mid = await service.create_image("busybox", ImageConfig(cmd=("a",)), ti.chunks_of(b""))
    child = await service.create_image(mid.id, ImageConfig(cmd=("b",)), ti.chunks_of(b""), name="child:2")
    assert child.parent == mid.id and mid.parent == base.id
    await service.remove_image(mid.id)
    assert (await service.get_image("child:2")).parent == ""
    assert [i.parent for i in await service.list_images("child:2")] == [""]


def _ingests(state_dir):
    return os.listdir(os.path.join(state_dir, "ingest"))


@pytest.mark.parametrize("layout", ["docker", "oci"])
async def test_a_tarball_with_large_layers_is_read_as_it_arrives(service, state_dir, layout):
    # Layers past the size kept in memory go through ingest files on the way in.
    big = os.urandom(3 << 20)
    layers = [ti.layer_bytes({"big": big}), ti.layer_bytes({"big2": big[::-1]}, gz=True)]
    data = (ti.docker_archive_bytes(layers, {"Cmd": ["sh"]}, ["big:1"]) if layout == "docker"
            else ti.oci_layout_bytes(layers, {"Cmd": ["sh"]}, ["example.com/big:1"]))
    [img] = await load(service, data)
    assert img.diff_ids == tuple(ti.diff_id(layer) for layer in layers)
    for layer in layers:
        with open(os.path.join(state_dir, "blobs", "sha256", ti.sha256(layer)[7:]), "rb") as f:
            assert f.read() == layer
    assert _ingests(state_dir) == []


async def test_a_large_layer_that_does_not_match_its_digest_stores_nothing(service, state_dir):
    layer = ti.layer_bytes({"big": os.urandom(2 << 20)})
    data = bytearray(ti.oci_layout_bytes([layer], {"Cmd": ["sh"]}, ["example.com/bad:1"]))
    at = bytes(data).index(layer)
    data[at + len(layer) // 2] ^= 0xFF  # one byte flipped inside the layer blob
    with pytest.raises(InvalidArgument, match="digest"):
        await load(service, bytes(data))
    assert blobs(state_dir) == [] and layer_dirs(state_dir) == [] and _ingests(state_dir) == []
    assert await service.list_images() == []


async def test_a_tarball_cut_short_stores_nothing(service, state_dir):
    layer = ti.layer_bytes({"big": os.urandom(2 << 20)})
    data = ti.oci_layout_bytes([layer], {"Cmd": ["sh"]}, ["example.com/cut:1"])
    with pytest.raises(InvalidArgument):
        await load(service, data[:len(data) // 2])
    assert blobs(state_dir) == [] and _ingests(state_dir) == []
    assert await service.list_images() == []


async def test_a_gzip_compressed_tarball_loads(service):
    import gzip
    layer = ti.layer_bytes({"big": os.urandom(2 << 20)})
    [img] = await load(service, gzip.compress(ti.docker_archive_bytes([layer], {"Cmd": ["sh"]}, ["gz:1"]),
                                              compresslevel=1))
    assert img.diff_ids == (ti.diff_id(layer),)
