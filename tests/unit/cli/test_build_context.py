"""`berth build`'s context tar, written by the CLI itself: Python's tarfile (as the
build service reads it) must see exactly the files, links and modes of the directory."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

from berth_cli import build


def _read(root: str, dockerfile: str | None = None) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    data = b"".join(build._pack(root, dockerfile))
    assert len(data) % 512 == 0 and data.endswith(bytes(1024))
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            out[member.name] = (member, tar.extractfile(member).read() if member.isreg() else b"")
    return out


def test_files_dirs_links_and_long_names_read_back_as_tarfile_reads_them(tmp_path):
    long_dir = "d" * 90 + "/" + "e" * 60
    (tmp_path / long_dir).mkdir(parents=True)
    files = {"Dockerfile": b"FROM busybox\n", "empty": b"", "block": b"x" * 512,
             "big": os.urandom(3 * build.CHUNK + 7), f"{long_dir}/f": b"deep\n",
             "caf\u00e9": b"non-ascii name\n"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    os.chmod(tmp_path / "empty", 0o4751)
    os.symlink("/etc/passwd", tmp_path / "link")
    os.symlink("t" * 150, tmp_path / "longlink")
    os.mkfifo(tmp_path / "fifo")
    os.link(tmp_path / "block", tmp_path / "zlink")
    os.utime(tmp_path / "block", (1_000_000, 1_234_567))
    read = _read(str(tmp_path))
    got = {name: info for name, (info, _) in read.items()}
    for name, data in files.items():
        assert got[name].isreg() and read[name][1] == data, name
        assert got[name].uid == got[name].gid == 0 and got[name].uname == ""
    assert got["empty"].mode == 0o4751
    assert got["block"].mtime == 1_234_567
    assert got["d" * 90].isdir() and got[long_dir].isdir()
    assert got["link"].issym() and got["link"].linkname == "/etc/passwd"
    assert got["longlink"].linkname == "t" * 150
    assert got["fifo"].isfifo()
    assert got["zlink"].islnk() and got["zlink"].linkname == "block"
    assert sorted(got) == sorted([*files, "d" * 90, long_dir, "link", "longlink", "fifo", "zlink"])


def test_dockerignore_leaves_files_out_but_never_the_dockerfile(tmp_path):
    for name in ("keep.c", "debug.log", "sub/x.log", "sub/keep.log", "Dockerfile.app"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".dockerignore").write_text("**/*.log\n!sub/keep.log\nDockerfile.app\n")
    got = _read(str(tmp_path), "Dockerfile.app")
    assert sorted(got) == [".dockerignore", "Dockerfile.app", "keep.c", "sub", "sub/keep.log"]


def test_packing_a_context_imports_neither_tarfile_nor_tempfile(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    code = ("import sys; from berth_cli import build\n"
            f"b''.join(build._pack({str(tmp_path)!r}, None))\n"
            "bad = [m for m in ('tarfile', 'tempfile', 'dataclasses') if m in sys.modules]\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
