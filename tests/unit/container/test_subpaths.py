"""Volume sub-paths: reached below their source one component at a time, never through a symlink."""

import os

import pytest

from services.common import errors
from services.container import subpaths


@pytest.mark.parametrize("bad", ["/abs", "../up", "a/../../b", "a/.."])
def test_a_subpath_must_stay_relative_and_within(bad):
    with pytest.raises(errors.InvalidArgument, match="relative path within the volume"):
        subpaths.check(bad)


def test_open_beneath_reaches_directories_and_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "f").write_text("x")
    for sub, ino in (("a/b", (tmp_path / "a" / "b").stat().st_ino), ("./a//f", (tmp_path / "a" / "f").stat().st_ino)):
        fd = subpaths._open_beneath(str(tmp_path), sub)
        try:
            assert os.fstat(fd).st_ino == ino
        finally:
            os.close(fd)


@pytest.mark.parametrize("sub, words", [("out", "symlink"), ("out/etc", "symlink"), ("inner", "symlink"),
                                        ("f/x", "not a directory"), ("nope/x", "'nope'")])
def test_open_beneath_refuses_symlinks_files_on_the_way_and_missing_parts(tmp_path, sub, words):
    (tmp_path / "a").mkdir()
    (tmp_path / "f").write_text("x")
    os.symlink("/", tmp_path / "out")
    os.symlink("a", tmp_path / "inner")  # even one that stays inside: the name could change
    with pytest.raises(errors.FailedPrecondition, match=words):
        subpaths._open_beneath(str(tmp_path), sub)


def test_the_stored_spec_keeps_subpaths_and_the_cgroup_namespace():
    """What CreateContainer was given survives the store (and so a service restart)."""
    from services.container.model import Mount, Process, Spec
    from services.container.store import spec_from_json, spec_to_json
    spec = Spec(process=Process(args=("true",)), cgroupns_private=True,
                mounts=(Mount(type="bind", source="/v", target="/m", options=("rbind",), sub_path="a/b"),))
    assert spec_from_json(spec_to_json(spec)) == spec
