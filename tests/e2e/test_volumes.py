"""Volumes, bind mounts and tmpfs in containers, driven through the berth CLI.

Every test names its own volumes and containers (prefix "vt-") and removes
them; mounts are counted where the point of the test is leaving none.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile

import pytest

from tests.support.engine import mounts_under
from tests.support.rootfs import busybox_available, make_busybox_rootfs, rootfs_tar_bytes

APP_IMAGE = "vt-app:latest"


def ok(engine, *args, input=None) -> str:
    result = engine.cli(*args, input=input)
    assert result.returncode == 0, f"berth {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def fails(engine, *args) -> str:
    result = engine.cli(*args)
    assert result.returncode != 0, f"berth {' '.join(args)} succeeded: {result.stdout}"
    return result.stderr


def volume_names(engine) -> set[str]:
    return set(ok(engine, "volume", "ls", "-q").split())


@pytest.fixture(scope="module")
def app_image(engine, busybox_image):
    """busybox plus /srv/app (owned 1000:1000, 0750, a 0640 file, a setgid dir) declared a VOLUME."""
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-rootfs-") as root:
        make_busybox_rootfs(root)
        app = os.path.join(root, "srv/app")
        os.makedirs(os.path.join(app, "shared"))
        with open(os.path.join(app, "config"), "w") as f:
            f.write("from the image\n")
        os.chmod(os.path.join(app, "config"), 0o640)
        os.chmod(os.path.join(app, "shared"), 0o2775)
        os.chmod(app, 0o750)
        for path in (app, os.path.join(app, "config"), os.path.join(app, "shared")):
            os.chown(path, 1000, 1000)
        tar = rootfs_tar_bytes(root)
    ok(engine, "import", "-", APP_IMAGE, "-c", 'CMD ["sh"]', "-c", 'VOLUME ["/srv/app"]', input=tar)
    yield APP_IMAGE
    engine.cli("rmi", "-f", APP_IMAGE)


@pytest.fixture
def cleanup(engine):
    """Containers and volumes named vt-* are removed after the test, whatever happened."""
    yield
    for cid in ok(engine, "ps", "-aq", "--filter", "name=vt-").split():
        engine.cli("rm", "-f", "-v", cid)
    for name in volume_names(engine):
        if name.startswith("vt-"):
            engine.cli("volume", "rm", "-f", name)


def test_named_volume_outlives_containers_and_is_shared(engine, busybox_image, cleanup):
    ok(engine, "run", "-d", "--name", "vt-writer", "-v", "vt-data:/data", busybox_image, "sh", "-c",
       "echo one > /data/f; while ! grep -q two /data/f; do sleep 0.05; done; echo saw-two")
    # A second container sees the first one's write, and the first sees the second's.
    out = ok(engine, "run", "--rm", "--name", "vt-reader", "-v", "vt-data:/data", busybox_image,
             "sh", "-c", "while [ ! -s /data/f ]; do sleep 0.05; done; cat /data/f; echo two >> /data/f")
    assert out == "one\n"
    assert ok(engine, "wait", "vt-writer") == "0\n"
    assert ok(engine, "logs", "vt-writer") == "saw-two\n"
    ok(engine, "rm", "-f", "-v", "vt-writer")
    # rm -v keeps named volumes.
    assert "vt-data" in volume_names(engine)
    out = ok(engine, "run", "--rm", "-v", "vt-data:/data", busybox_image, "cat", "/data/f")
    assert out == "one\ntwo\n"


def test_copy_up_fills_a_new_volume_with_owners_and_modes(engine, app_image, cleanup):
    out = ok(engine, "run", "--rm", "-v", "vt-app:/srv/app", app_image, "sh", "-c",
             "stat -c '%n %u:%g %a' /srv/app /srv/app/config /srv/app/shared; cat /srv/app/config")
    assert out.split("\n") == ["/srv/app 1000:1000 750", "/srv/app/config 1000:1000 640",
                               "/srv/app/shared 1000:1000 2775", "from the image", ""]
    # Only a new volume is filled: changes made in it are kept, not overwritten.
    ok(engine, "run", "--rm", "-v", "vt-app:/srv/app", app_image, "sh", "-c",
       "echo mine > /srv/app/config")
    out = ok(engine, "run", "--rm", "-v", "vt-app:/srv/app", app_image, "cat", "/srv/app/config")
    assert out == "mine\n"
    # volume-nocopy leaves a new volume empty.
    out = ok(engine, "run", "--rm", "--mount", "type=volume,src=vt-empty,dst=/srv/app,volume-nocopy",
             app_image, "ls", "-A", "/srv/app")
    assert out == ""
    # Copy-up from a path of the image that is not the image's VOLUME, into a named volume.
    out = ok(engine, "run", "--rm", "--mount", "src=vt-etc,dst=/etc", app_image, "cat", "/etc/group")
    assert "app:x:1000:" in out


def test_image_volume_is_anonymous_and_goes_with_rm_v(engine, app_image, cleanup):
    before = volume_names(engine)
    cid = ok(engine, "create", "--name", "vt-anon", app_image, "true").strip()
    info = json.loads(ok(engine, "inspect", cid))[0]
    [mount] = info["Mounts"]
    assert mount["Type"] == "volume" and mount["Destination"] == "/srv/app"
    assert mount["Driver"] == "local" and mount["RW"] is True
    assert mount["Name"] in volume_names(engine) - before and len(mount["Name"]) == 64
    assert mount["Source"].endswith(f"/{mount['Name']}/_data")
    # In use by a container that is not even running: it cannot be removed.
    err = fails(engine, "volume", "rm", mount["Name"])
    assert "volume is in use" in err and cid in err
    ok(engine, "rm", "-v", cid)
    assert volume_names(engine) == before


def test_rm_without_v_keeps_anonymous_volume_and_prune_takes_it(engine, busybox_image, cleanup):
    before = volume_names(engine)
    ok(engine, "volume", "create", "vt-named-unused")
    ok(engine, "run", "--name", "vt-keep", "-v", "/cache", busybox_image, "true")
    [anon] = volume_names(engine) - before - {"vt-named-unused"}
    ok(engine, "rm", "vt-keep")
    assert anon in volume_names(engine)
    # prune takes unused anonymous volumes; named ones need -a; used ones are never taken.
    ok(engine, "run", "-d", "--name", "vt-user", "-v", "vt-used:/u", busybox_image, "sleep", "60")
    out = ok(engine, "volume", "prune", "-f")
    assert anon in out and "vt-named-unused" not in out
    assert "vt-named-unused" in volume_names(engine)
    out = ok(engine, "volume", "prune", "-f", "-a", "--filter", "label=nothing-has-this")
    assert "vt-named-unused" in volume_names(engine)
    out = ok(engine, "volume", "prune", "-f", "-a")
    assert "vt-named-unused" in out and "vt-used" not in out
    assert "vt-used" in volume_names(engine)


def test_read_only_is_read_only(engine, busybox_image, cleanup):
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-bind-") as host:
        for flag in (["-v", "vt-ro:/d:ro"], ["--mount", "src=vt-ro,dst=/d,readonly"],
                     ["-v", f"{host}:/d:ro"], ["--mount", f"type=bind,src={host},dst=/d,ro=true"],
                     ["--tmpfs", "/d:ro"]):
            result = engine.cli("run", "--rm", *flag, busybox_image, "sh", "-c",
                                "touch /d/x && echo wrote")
            assert result.returncode != 0 and "Read-only file system" in result.stderr, flag
        assert os.listdir(host) == []


def test_bind_mounts_host_paths(engine, busybox_image, cleanup):
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-bind-") as host:
        real = os.path.join(host, "real")
        os.mkdir(real)
        os.symlink(real, os.path.join(host, "link"))
        ok(engine, "run", "--rm", "-v", f"{host}/link:/h", busybox_image, "sh", "-c",
           "echo from-container > /h/out")
        with open(os.path.join(real, "out")) as f:
            assert f.read() == "from-container\n"
        # -v makes a missing source directory, as docker does; --mount refuses (below).
        ok(engine, "run", "--rm", "-v", f"{host}/made:/m", busybox_image, "true")
        assert os.path.isdir(os.path.join(host, "made"))
        info_mounts = None
        cid = ok(engine, "create", "--name", "vt-bind", "-v", f"{host}/link:/h:ro", busybox_image).strip()
        info_mounts = json.loads(ok(engine, "inspect", cid))[0]["Mounts"]
        assert info_mounts == [{"Type": "bind", "Source": real, "Destination": "/h", "Mode": "ro",
                                "RW": False, "Propagation": "rprivate"}]
        ok(engine, "rm", cid)


def test_tmpfs_mounts(engine, busybox_image, cleanup):
    out = ok(engine, "run", "--rm", "--tmpfs", "/t:size=1m,mode=1770",
             "--mount", "type=tmpfs,dst=/u,tmpfs-size=2m", busybox_image, "sh", "-c",
             "grep -E ' /(t|u) ' /proc/mounts; stat -c %a /t; echo x > /t/f && cat /t/f")
    lines = out.splitlines()
    assert any(" /t tmpfs " in line and "size=1024k" in line and "noexec" in line for line in lines)
    assert any(" /u tmpfs " in line and "size=2048k" in line for line in lines)
    assert lines[-2:] == ["1770", "x"]
    # A tmpfs volume (docker's local driver option): one instance shared while in use.
    ok(engine, "volume", "create", "-o", "type=tmpfs", "-o", "o=size=1m", "vt-tmp")
    ok(engine, "run", "-d", "--name", "vt-tmp-a", "-v", "vt-tmp:/s", busybox_image, "sh", "-c",
       "echo shared > /s/f; sleep 60")
    out = ok(engine, "run", "--rm", "-v", "vt-tmp:/s", busybox_image, "sh", "-c",
             "sleep 0.3; cat /s/f; grep ' /s ' /proc/mounts")
    assert out.startswith("shared\n") and "tmpfs" in out
    ok(engine, "rm", "-f", "vt-tmp-a")
    # Not in use any more: its tmpfs is gone from the host.
    info = json.loads(ok(engine, "volume", "inspect", "vt-tmp"))[0]
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert info["Mountpoint"] not in mounts_under(engine.root)


def test_volumes_from_shares_mounts(engine, busybox_image, cleanup):
    ok(engine, "create", "--name", "vt-src", "-v", "vt-shared:/shared", "-v", "/anon", busybox_image)
    out = ok(engine, "run", "--rm", "--volumes-from", "vt-src", busybox_image, "sh", "-c",
             "echo hello > /shared/f && echo hi > /anon/g && cat /shared/f /anon/g")
    assert out == "hello\nhi\n"
    result = engine.cli("run", "--rm", "--volumes-from", "vt-src:ro", busybox_image, "sh", "-c",
                        "cat /shared/f; touch /shared/x")
    assert result.stdout == "hello\n" and "Read-only file system" in result.stderr
    assert "No such container" in fails(engine, "run", "--rm", "--volumes-from", "vt-nope",
                                        busybox_image, "true")


@pytest.mark.parametrize("flags, message", [
    (["--mount", "type=bind,src=/vt-nonexistent,dst=/x"],
     'invalid mount config for type "bind": bind source path does not exist: /vt-nonexistent'),
    (["-v", "./relative:/x"], "includes invalid characters for a local volume name"),
    (["-v", "vt-a/../b:/x"], "includes invalid characters for a local volume name"),
    (["-v", "vt-data:relative"], "invalid volume specification"),
    (["-v", "a:b:c:d"], "invalid volume specification"),
    (["-v", "vt-data:/x:bogus"], "invalid mode"),
    (["--mount", "type=floppy,dst=/x"], "mount type unknown"),
    (["--mount", "src=vt-data"], "target is required"),
    (["--mount", "type=volume,dst=/x,color=red"], "unexpected key"),
    (["--mount", "type=bind,src=relative,dst=/x"], "must be absolute"),
    (["--mount", "type=tmpfs,src=x,dst=/x"], "Source must not be specified"),
    (["-v", "vt-good:/x", "-v", "vt-other:/x"], "Duplicate mount point: /x"),
    (["-v", "vt-good:/"], "destination can't be '/'"),
])
def test_bad_mounts_are_refused_and_change_nothing(engine, busybox_image, cleanup, flags, message):
    volumes, containers = volume_names(engine), ok(engine, "ps", "-aq")
    mounts = len(mounts_under(engine.root))
    err = fails(engine, "run", "--rm", *flags, busybox_image, "true")
    assert message in err
    assert volume_names(engine) == volumes and ok(engine, "ps", "-aq") == containers
    assert len(mounts_under(engine.root)) == mounts


def test_volume_verbs(engine, cleanup):
    assert ok(engine, "volume", "create", "--label", "team=a", "vt-v1") == "vt-v1\n"
    # Creating an existing name returns it unchanged, as docker does.
    assert ok(engine, "volume", "create", "vt-v1") == "vt-v1\n"
    info = json.loads(ok(engine, "volume", "inspect", "vt-v1"))[0]
    assert info["Name"] == "vt-v1" and info["Driver"] == "local" and info["Labels"] == {"team": "a"}
    assert info["Scope"] == "local" and info["Mountpoint"].endswith("/volumes/vt-v1/_data")
    # The data root is not exposed: parents of the data are root-only.
    assert stat.S_IMODE(os.stat(os.path.dirname(info["Mountpoint"])).st_mode) == 0o700
    assert "vt-v1" in ok(engine, "volume", "ls", "-f", "label=team=a")
    assert "vt-v1" not in ok(engine, "volume", "ls", "-f", "label=team=b")
    assert "No such volume: vt-nope" in fails(engine, "volume", "inspect", "vt-nope")
    assert "no such volume" in fails(engine, "volume", "rm", "vt-nope")
    assert "invalid volume name" in fails(engine, "volume", "create", "vt/../../etc")
    assert "invalid option key" in fails(engine, "volume", "create", "-o", "color=red", "vt-bad")
    assert "bind device" in fails(engine, "volume", "create", "-o", "type=none", "-o", "o=bind",
                                  "-o", "device=/vt-nonexistent", "vt-bad")
    assert "vt-bad" not in volume_names(engine)
    assert ok(engine, "volume", "rm", "vt-v1") == "vt-v1\n"


def test_bind_device_volume(engine, busybox_image, cleanup):
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-dev-") as device:
        ok(engine, "volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={device}",
           "vt-dev")
        ok(engine, "run", "--rm", "-v", "vt-dev:/d", busybox_image, "sh", "-c", "echo on-device > /d/f")
        with open(os.path.join(device, "f")) as f:
            assert f.read() == "on-device\n"
        ok(engine, "volume", "rm", "vt-dev")
        # Removing the volume unmounts the device and never deletes its files.
        assert os.listdir(device) == ["f"]
        assert not [m for m in mounts_under(engine.root) if "vt-dev" in m]
