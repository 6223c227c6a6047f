"""Reference parsing and display: the rules docker users expect."""

import pytest

from berth_docker import reference
from services.common.errors import InvalidArgument

HEX = "a" * 64


@pytest.mark.parametrize("text,full", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:x", "docker.io/library/busybox:x"),
    ("team/app", "docker.io/team/app:latest"),
    ("host:5000/team/app:1.2", "host:5000/team/app:1.2"),
    ("localhost/app", "localhost/app:latest"),
    ("my.registry/a/b/c", "my.registry/a/b/c:latest"),
    (f"busybox@sha256:{HEX}", f"docker.io/library/busybox@sha256:{HEX}"),
    (f"busybox:1@sha256:{HEX}", f"docker.io/library/busybox:1@sha256:{HEX}"),
])
def test_normalize(text, full):
    assert reference.normalize(text) == full


@pytest.mark.parametrize("text", [
    "", "Busybox", "busybox:", "busy box", "busybox:-x", "/busybox", "busybox/",
    "busybox@sha256:abc", "busybox@sha256:" + "A" * 64, "a//b", "a:b:c", HEX,
    "busybox:" + "x" * 129,
])
def test_invalid_references_are_refused_with_docker_wording(text):
    with pytest.raises(InvalidArgument) as exc:
        reference.parse(text)
    assert "invalid reference format" in exc.value.message or "invalid repository name" in exc.value.message


def test_uppercase_message_names_the_repository():
    with pytest.raises(InvalidArgument, match=r"repository name \(library/Busybox\) must be lowercase"):
        reference.parse("Busybox")


@pytest.mark.parametrize("full,short", [
    ("docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/team/app:1", "team/app:1"),
    ("host:5000/team/app:1.2", "host:5000/team/app:1.2"),
    ("docker.io/library/busybox", "busybox"),
    ("docker.io/library/a/b:1", "library/a/b:1"),
])
def test_familiar(full, short):
    assert reference.familiar(full) == short


def test_no_default_tag_when_asked():
    ref = reference.parse("busybox", default_tag=False)
    assert (ref.name, ref.tag, ref.digest) == ("docker.io/library/busybox", "", "")


@pytest.mark.parametrize("text,ok", [
    ("sha256:" + HEX, True), (HEX, True), ("abcd", True), ("abc", False), ("xyz1", False),
])
def test_looks_like_id(text, ok):
    assert reference.looks_like_id(text) is ok


@pytest.mark.parametrize("pattern,name,ok", [
    ("busybox", "docker.io/library/busybox:latest", True),
    ("busybox", "docker.io/library/busybox:1", True),
    ("busybox:1*", "docker.io/library/busybox:1.36", True),
    ("busybox:1*", "docker.io/library/busybox:latest", False),
    ("alpine", "docker.io/library/busybox:latest", False),
    ("team/*", "docker.io/team/app:1", True),
])
def test_matches(pattern, name, ok):
    assert reference.matches(pattern, name) is ok
