"""cp's path rules on a throwaway root: nothing resolves or writes outside it.

openat2 needs no privileges, so these run as any user on a plain directory.
"""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from services.common import errors
from services.container import archive


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    os.symlink(str(outside), r / "abs")            # absolute, to the host's path
    os.symlink("../../outside", r / "etc" / "rel")  # relative, climbing out
    os.symlink(str(outside / "secret"), r / "leak")
    return r


def _names(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def _archive(root, path) -> bytes:
    buf = io.BytesIO()
    archive.archive_path(str(root), path, buf)
    return buf.getvalue()


def test_links_are_archived_as_links_and_never_followed(root):
    members = _names(_archive(root, "/leak"))
    assert members["leak"].issym() and members["leak"].linkname.endswith("outside/secret")
    for path in ("/abs/secret", "/etc/rel/secret", "/../../outside/secret"):
        with pytest.raises(errors.NotFound):
            _archive(root, path)


def test_dotdot_stays_in_the_root(root):
    data = _archive(root, "/../../../etc/passwd")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.extractfile("passwd").read() == b"root:x:0:0::/root:/bin/sh\n"


def _tar(*members: tuple[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_extract_never_writes_through_links(root, tmp_path):
    outside = tmp_path / "outside"
    # Into a directory that is a link out: resolved inside the root, where it does not exist.
    with pytest.raises(errors.NotFound):
        archive.extract(str(root), "/abs/", _tar(("x", b"evil")))
    # A member whose parent is a link out.
    with pytest.raises(errors.InvalidArgument):
        archive.extract(str(root), "/", _tar(("abs/x", b"evil")))
    # A member going up.
    with pytest.raises(errors.InvalidArgument):
        archive.extract(str(root), "/etc", _tar(("../../outside/x", b"evil")))
    # A member named like a link replaces the link in the root.
    archive.extract(str(root), "/", _tar(("leak", b"mine\n")))
    assert (root / "leak").read_text() == "mine\n" and not (root / "leak").is_symlink()
    assert sorted(os.listdir(outside)) == ["secret"] and (outside / "secret").read_text() == "secret\n"


def test_extract_renames_the_top_entry_when_the_target_does_not_exist(root):
    archive.extract(str(root), "/etc/copied", _tar(("orig/a", b"1"), ("orig/b", b"2")))
    assert sorted(os.listdir(root / "etc" / "copied")) == ["a", "b"]


def test_a_truncated_or_foreign_archive_is_invalid_input(root):
    whole = _tar(("big", b"x" * 5000)).getvalue()
    with pytest.raises(errors.InvalidArgument):
        archive.extract(str(root), "/", io.BytesIO(whole[:512 + 1000]))
    with pytest.raises(errors.InvalidArgument):
        archive.extract(str(root), "/", io.BytesIO(b"this is not a tar archive" * 40))
