"""-v, --mount and --tmpfs parse into MountSpec the way docker's CLI reads them, and mean the
same as the Docker API's Binds, Mounts and Tmpfs."""

from __future__ import annotations

import pytest

from berth_cli import cli, commands
from berth_docker import create
from berth_docker.mounts import mount, mount_flag, tmpfs_flag, volume


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
    m = volume(spec)
    for key, value in want.items():
        assert list(getattr(m, key)) == value if key == "options" else getattr(m, key) == value, key


@pytest.mark.parametrize("spec", ["rel", "a:rel", "a:/b:c:d", ":/x", "a:/b:bogus", "a:/b:ro,rw"])
def test_bad_volume_flags(spec):
    with pytest.raises(ValueError):
        volume(spec)


def test_mount_flag():
    m = mount(mount_flag("type=volume,src=data,dst=/d,readonly,volume-nocopy,volume-label=a=b"))
    assert (m.type, m.source, m.target, m.readonly, m.volume_nocopy) == ("volume", "data", "/d", True, True)
    assert dict(m.volume_labels) == {"a": "b"}
    m = mount(mount_flag("type=bind,source=/h,target=/c,ro=false,bind-propagation=rslave"))
    assert (m.type, m.readonly, list(m.options), m.create_source) == ("bind", False, ["rslave"], False)
    m = mount(mount_flag("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770"))
    assert list(m.options) == ["size=1048576", "mode=1770"]


@pytest.mark.parametrize("spec", ["type=nfs,dst=/x", "src=a", "dst=/x,colour=red", "dst=/x,readonly=maybe",
                                  "dst", "type=bind,src=/a,dst=/b,bind-propagation=sideways"])
def test_bad_mount_flags(spec):
    with pytest.raises(ValueError):
        mount(mount_flag(spec))


def test_tmpfs_flag():
    m = tmpfs_flag("/run:size=64m,ro")
    assert (m.type, m.target, m.readonly, list(m.options)) == ("tmpfs", "/run", True, ["size=64m"])


@pytest.mark.parametrize("spec", ["/a:/b:cached", "/a:/b:ro,delegated", "data:/d:consistent,nocopy",
                                  "/srv:/s:rslave,z"])
def test_a_volume_flag_and_a_bind_are_the_same_mount(spec):
    """`berth run -v SPEC` and the Docker API's HostConfig.Binds [SPEC] ask for one mount."""
    from_cli = commands.container_config(cli.parse(["run", "-v", spec, "busybox"])).mounts
    from_api = create.container_config({"Image": "busybox", "HostConfig": {"Binds": [spec]}}, "").mounts
    assert list(from_cli) == list(from_api) and len(from_api) == 1
    assert from_api[0].target == spec.split(":")[1]


@pytest.mark.parametrize("spec", ["/a:/b:bogus", "/a:/b:ro,rw", "rel", "a:/b:c:d"])
def test_a_bad_volume_is_refused_by_both_edges(spec):
    with pytest.raises(ValueError):
        commands.container_config(cli.parse(["run", "-v", spec, "busybox"]))
    with pytest.raises(ValueError):
        create.container_config({"Image": "busybox", "HostConfig": {"Binds": [spec]}}, "")


def test_a_mount_flag_is_the_api_mount_object():
    flag = "type=bind,src=/h,dst=/c,readonly,bind-propagation=rslave"
    api = {"Type": "bind", "Source": "/h", "Target": "/c", "ReadOnly": True,
           "BindOptions": {"Propagation": "rslave"}}
    assert mount_flag(flag) == api
    from_api = create.container_config({"Image": "b", "HostConfig": {"Mounts": [api]}}, "").mounts
    assert list(from_api) == [mount(mount_flag(flag))]
    with pytest.raises(ValueError):
        mount({"Type": "bind", "Target": "/c", "BindOptions": {"Propagation": "sideways"}})


def test_a_volume_subpath_from_the_flag_and_the_api():
    flag = "type=volume,src=data,dst=/c,volume-subpath=sub/dir"
    api = {"Type": "volume", "Source": "data", "Target": "/c", "VolumeOptions": {"Subpath": "sub/dir"}}
    assert mount_flag(flag) == api
    assert mount(api).volume_subpath == "sub/dir"


def test_tmpfs_flag_and_host_config_tmpfs_agree():
    from_api = create.container_config({"Image": "b", "HostConfig": {"Tmpfs": {"/run": "size=64m,ro"}}}, "")
    assert list(from_api.mounts) == [tmpfs_flag("/run:size=64m,ro")]


@pytest.mark.parametrize("extra, name", [
    ({"BindOptions": {"NonRecursive": True}}, "BindOptions.NonRecursive"),
    ({"TmpfsOptions": {"Options": [["exec"]]}}, "TmpfsOptions.Options"),
    ({"VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "nfs"}}}}, "DriverConfig.Options"),
])
def test_mount_options_not_honoured_are_refused_by_name(extra, name):
    from berth_errors import NotImplementedYet
    with pytest.raises(NotImplementedYet, match=name):
        mount({"Type": "volume", "Source": "v", "Target": "/mnt", **extra})
