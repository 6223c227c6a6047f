"""-v, --mount and --tmpfs parse into MountSpec the way docker's CLI reads them."""

from __future__ import annotations

import pytest

from berth_cli.volumes import parse_mount, parse_tmpfs, parse_volume


@pytest.mark.parametrize("spec, want", [
    ("/cache", dict(type="volume", source="", target="/cache")),
    ("/cache:ro", dict(type="volume", source="", target="/cache", readonly=True)),
    ("data:/d", dict(type="volume", source="data", target="/d")),
    ("data:/d:ro,nocopy", dict(type="volume", source="data", target="/d", readonly=True, volume_nocopy=True)),
    ("/srv:/s", dict(type="bind", source="/srv", target="/s", create_source=True)),
    ("/srv:/s:ro,rshared", dict(type="bind", source="/srv", target="/s", create_source=True,
                                readonly=True, options=["rshared"])),
    ("./rel:/x", dict(type="volume", source="./rel", target="/x")),
])
def test_volume_flag(spec, want):
    m = parse_volume(spec)
    for key, value in want.items():
        assert list(getattr(m, key)) == value if key == "options" else getattr(m, key) == value, key


@pytest.mark.parametrize("spec", ["rel", "a:rel", "a:/b:c:d", ":/x", "a:/b:bogus", "a:/b:ro,rw"])
def test_bad_volume_flags(spec):
    with pytest.raises(ValueError):
        parse_volume(spec)


def test_mount_flag():
    m = parse_mount("type=volume,src=data,dst=/d,readonly,volume-nocopy,volume-label=a=b")
    assert (m.type, m.source, m.target, m.readonly, m.volume_nocopy) == ("volume", "data", "/d", True, True)
    assert dict(m.volume_labels) == {"a": "b"}
    m = parse_mount("type=bind,source=/h,target=/c,ro=false,bind-propagation=rslave")
    assert (m.type, m.readonly, list(m.options), m.create_source) == ("bind", False, ["rslave"], False)
    m = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770")
    assert list(m.options) == ["size=1048576", "mode=1770"]


@pytest.mark.parametrize("spec", ["type=nfs,dst=/x", "src=a", "dst=/x,colour=red", "dst=/x,readonly=maybe",
                                  "dst", "type=bind,src=/a,dst=/b,bind-propagation=sideways"])
def test_bad_mount_flags(spec):
    with pytest.raises(ValueError):
        parse_mount(spec)


def test_tmpfs_flag():
    m = parse_tmpfs("/run:size=64m,ro")
    assert (m.type, m.target, m.readonly, list(m.options)) == ("tmpfs", "/run", True, ["size=64m"])
