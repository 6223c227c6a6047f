"""Where `docker cp` reads and writes a container that is not running: its volumes and binds are
their sources (what put_archive puts into a created container's volume is there when it starts)."""

from __future__ import annotations

import io
import tarfile
from types import SimpleNamespace

import pytest

from services.common import errors
from services.container import archive, control
from services.container.model import Mount, Status


def _service(tmp_path, status=Status.CREATED):
    rootfs, vol, ro = tmp_path / "rootfs", tmp_path / "vol", tmp_path / "ro"
    for d in (rootfs / "vol1", rootfs / "etc", vol, ro):
        d.mkdir(parents=True)
    spec = SimpleNamespace(mounts=(Mount("bind", str(vol), "/vol1"), Mount("bind", str(ro), "/data/ro", ("ro",)),
                                   Mount("tmpfs", "tmpfs", "/run")))
    c = SimpleNamespace(id="c1", status=status, pid=0, record=SimpleNamespace(spec=spec))
    runtime = SimpleNamespace(bundle=lambda cid: SimpleNamespace(rootfs=str(rootfs)))
    return SimpleNamespace(get=lambda ref: c, runtime=runtime), rootfs, vol


@pytest.mark.parametrize("path, want", [
    ("/vol1/a.txt", ("vol", "/a.txt", "")),
    ("/vol1", ("vol", "/", "vol1")),
    ("/vol1/", ("vol", "/", "vol1")),
    ("//vol1/./sub/", ("vol", "/sub/", "")),
    ("/vol10/x", ("rootfs", "/vol10/x", "")),
    ("/etc/hosts", ("rootfs", "/etc/hosts", "")),
    ("/run/x", ("rootfs", "/run/x", "")),
])
def test_place_of_a_stopped_container(tmp_path, path, want):
    service, _, _ = _service(tmp_path)
    root, inner, name = control.place_of(service, "c1", path)
    assert (root, inner, name) == (str(tmp_path / want[0]), want[1], want[2])


def test_a_running_container_is_seen_through_its_process(tmp_path):
    service, _, _ = _service(tmp_path, Status.RUNNING)
    service.get("c1").pid = 4242
    assert control.place_of(service, "c1", "/vol1/a") == ("/proc/4242/root", "/vol1/a", "")


def test_writing_into_a_read_only_mount_is_refused(tmp_path):
    service, _, _ = _service(tmp_path)
    with pytest.raises(errors.FailedPrecondition, match="read-only"):
        control.place_of(service, "c1", "/data/ro/x", write=True)
    assert control.place_of(service, "c1", "/data/ro/x")[1] == "/x"


def test_put_then_get_through_the_volume(tmp_path):
    service, rootfs, vol = _service(tmp_path)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("song.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"deaf"))
    data.seek(0)
    root, inner, _ = control.place_of(service, "c1", "/vol1", write=True)
    archive.extract(root, inner, data)
    assert (vol / "song.txt").read_bytes() == b"deaf" and not (rootfs / "vol1" / "song.txt").exists()
    out = io.BytesIO()
    archive.archive_path(*control.place_of(service, "c1", "/vol1")[:2], out,
                         control.place_of(service, "c1", "/vol1")[2])
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert tar.getnames() == ["vol1", "vol1/song.txt"]
