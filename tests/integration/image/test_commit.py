"""Reading an overlay upper dir back: diff and the layer tar, whiteouts in OCI form."""

from __future__ import annotations

import io
import os
import tarfile

from services.image import commit


def _tree(root: str) -> tuple[str, str]:
    lower, upper = os.path.join(root, "lower"), os.path.join(root, "upper")
    for d in ("etc", "tmp", "srv/old"):
        os.makedirs(os.path.join(lower, d))
    for f in ("etc/motd", "tmp/gone", "srv/old/x", "srv/keep"):
        with open(os.path.join(lower, f), "w") as fh:
            fh.write("lower\n")
    # What a container did: changed motd, added a file, deleted tmp/gone, replaced srv.
    os.makedirs(os.path.join(upper, "etc"))
    os.makedirs(os.path.join(upper, "tmp"))
    os.makedirs(os.path.join(upper, "srv"))
    os.makedirs(os.path.join(upper, "new/dir"))
    with open(os.path.join(upper, "etc/motd"), "w") as fh:
        fh.write("upper\n")
    with open(os.path.join(upper, "new/dir/file"), "w") as fh:
        fh.write("hi\n")
    os.mknod(os.path.join(upper, "tmp/gone"), 0o600 | 0o020000, os.makedev(0, 0))
    os.setxattr(os.path.join(upper, "srv"), commit.OPAQUE_XATTR, b"y")
    with open(os.path.join(upper, "srv/fresh"), "w") as fh:
        fh.write("fresh\n")
    return lower, upper


def test_diff_lists_added_changed_deleted(tmp_path):
    lower, upper = _tree(str(tmp_path))
    got = [(c.kind, c.path) for c in commit.diff(upper, [lower])]
    assert got == [
        ("C", "/etc"), ("C", "/etc/motd"),
        ("A", "/new"), ("A", "/new/dir"), ("A", "/new/dir/file"),
        ("C", "/srv"), ("A", "/srv/fresh"), ("D", "/srv/keep"), ("D", "/srv/old"),
        ("C", "/tmp"), ("D", "/tmp/gone"),
    ]


def test_layer_has_whiteouts_and_is_reproducible(tmp_path):
    _, upper = _tree(str(tmp_path))
    first, second = io.BytesIO(), io.BytesIO()
    commit.write_layer(upper, first)
    commit.write_layer(upper, second)
    assert first.getvalue() == second.getvalue()
    first.seek(0)
    with tarfile.open(fileobj=first) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("etc/motd").read() == b"upper\n"
    assert "tmp/.wh.gone" in members and members["tmp/.wh.gone"].isreg()
    assert "tmp/gone" not in members
    assert "srv/.wh..wh..opq" in members
    assert members["new/dir/file"].isreg()


def test_a_remapped_containers_ids_are_committed_as_its_own(tmp_path):
    """A remapped container writes host ids into its upper dir; the layer records its ids."""
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "f").write_text("x")
    os.chown(upper / "f", 400007, 400008)
    (upper / "outside").write_text("y")
    os.chown(upper / "outside", 12, 13)  # not in the range: kept as it is
    buf = io.BytesIO()
    commit.write_layer(str(upper), buf, [(0, 400000, 65536)], [(0, 400000, 65536)])
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners == {"f": (7, 8), "outside": (12, 13)}
