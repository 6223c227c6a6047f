"""Unpacking layers: hostile archives are contained or refused by entry, file metadata and
whiteouts survive."""

import io
import os
import stat
import subprocess
import tarfile

import pytest

from services.common.errors import InvalidArgument
from services.image.unpack import unpack_layer
from tests.support import images as ti


@pytest.fixture
def layer_root(tmp_path):
    root = tmp_path / "layer"
    root.mkdir()
    return root


def unpack(data: bytes, root) -> None:
    unpack_layer(io.BytesIO(data), str(root))


def test_dotdot_entry_is_clamped_into_the_layer(tmp_path, layer_root):
    unpack(ti.hostile_dotdot_layer(), layer_root)
    assert (layer_root / "escaped").read_text() == "pwned\n"
    assert not (tmp_path.parent / "escaped").exists()
    assert not (tmp_path / "escaped").exists()


def test_absolute_entry_is_clamped_into_the_layer(tmp_path, layer_root):
    outside = tmp_path / "abs-escaped"
    unpack(ti.hostile_absolute_layer(str(outside)), layer_root)
    assert not outside.exists()
    assert (layer_root / str(outside).lstrip("/")).read_text() == "pwned\n"


def test_file_through_symlinked_parent_is_refused(tmp_path, layer_root):
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(InvalidArgument, match="parent 'evil' that is a symlink"):
        unpack(ti.hostile_symlink_parent_layer(str(outside)), layer_root)
    assert list(outside.iterdir()) == []


def test_hardlink_to_outside_resolves_inside_the_layer_and_is_refused(tmp_path, layer_root):
    secret = tmp_path / "secret"
    secret.write_text("secret")
    with pytest.raises(InvalidArgument, match="'passwd'.*does not exist|'passwd'.*not in the layer"):
        unpack(ti.hostile_hardlink_layer(str(secret)), layer_root)
    with pytest.raises(InvalidArgument, match="'passwd'.*does not exist|'passwd'.*not in the layer"):
        unpack(ti.hostile_hardlink_dotdot_layer(), layer_root)
    assert os.stat(secret).st_nlink == 1
    assert not (layer_root / "passwd").exists()


def test_absolute_hardlink_target_names_a_member_of_the_layer(layer_root):
    # As docker (and GNU tar archives made with -P) write them.
    unpack(ti.absolute_hardlink_layer(), layer_root)
    assert (layer_root / "bin/link").read_text() == "tool\n"
    assert os.stat(layer_root / "bin/tool").st_nlink == 2


def test_a_name_the_filesystem_cannot_hold_is_refused_by_name(layer_root):
    name = "d/" + "x" * 300
    with pytest.raises(InvalidArgument, match=r"entry 'd/x{300}' cannot be unpacked: File name too long"):
        unpack(ti.layer_bytes({name: b"1"}), layer_root)


def test_file_over_symlink_replaces_the_symlink(tmp_path, layer_root):
    victim = tmp_path / "victim"
    victim.write_text("original")
    unpack(ti.hostile_overwrite_symlink_layer(str(victim)), layer_root)
    assert victim.read_text() == "original"
    assert not (layer_root / "target").is_symlink()
    assert (layer_root / "target").read_text() == "pwned\n"


@pytest.mark.parametrize("char", [False, True])
def test_device_nodes_are_created_as_docker_creates_them(layer_root, char):
    # Harmless: the device cgroup denies a container every device it was not given.
    unpack(ti.device_node_layer(char=char), layer_root)
    st = os.lstat(layer_root / "dev/sda")
    assert (stat.S_ISCHR if char else stat.S_ISBLK)(st.st_mode)
    assert st.st_rdev == os.makedev(8, 0)


def test_absolute_symlink_targets_are_kept_not_followed(layer_root):
    info = tarfile.TarInfo("sh")
    info.type, info.linkname = tarfile.SYMTYPE, "/bin/busybox"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(info)
    unpack(buf.getvalue(), layer_root)
    assert os.readlink(layer_root / "sh") == "/bin/busybox"


def test_metadata_survives(layer_root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("dir")
        d.type, d.mode, d.uid, d.gid, d.mtime = tarfile.DIRTYPE, 0o750, 1000, 1001, 1_000_000
        tar.addfile(d)
        f = tarfile.TarInfo("dir/suid")
        f.mode, f.uid, f.gid, f.mtime, f.size = 0o4755, 1000, 1001, 1_234_567, 3
        f.pax_headers = {"SCHILY.xattr.user.note": "hello"}
        tar.addfile(f, io.BytesIO(b"abc"))
        h = tarfile.TarInfo("dir/hard")
        h.type, h.linkname = tarfile.LNKTYPE, "dir/suid"
        tar.addfile(h)
    unpack(buf.getvalue(), layer_root)
    st = os.stat(layer_root / "dir/suid")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert (st.st_uid, st.st_gid, int(st.st_mtime)) == (1000, 1001, 1_234_567)
    assert os.getxattr(layer_root / "dir/suid", "user.note") == b"hello"
    assert st.st_nlink == 2
    dst = os.stat(layer_root / "dir")
    assert (stat.S_IMODE(dst.st_mode), dst.st_uid, int(dst.st_mtime)) == (0o750, 1000, 1_000_000)


def test_whiteouts_hide_lower_content_in_a_real_overlay(tmp_path):
    lower_tar, upper_tar = ti.whiteout_layers()
    lower, upper = tmp_path / "l1", tmp_path / "l2"
    lower.mkdir()
    upper.mkdir()
    unpack(lower_tar, lower)
    unpack(upper_tar, upper)
    wh = os.stat(upper / "a/gone")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0
    assert os.getxattr(upper / "opq", "trusted.overlay.opaque") == b"y"

    merged = tmp_path / "merged"
    merged.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={upper}:{lower}", str(merged)], check=True)
    try:
        assert sorted(os.listdir(merged / "a")) == ["kept"]
        assert sorted(os.listdir(merged / "opq")) == ["new"]
    finally:
        subprocess.run(["umount", str(merged)], check=True)
