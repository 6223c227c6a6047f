"""The engine core as a user meets it through the CLI: isolation, limits,
images in and out, and bad input that gets a clear error and changes nothing."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from tests.support import images


def inspect(engine, name: str) -> dict:
    return json.loads(engine.cli("inspect", name, check=True).stdout)[0]


def names(engine) -> list[str]:
    return engine.cli("ps", "-a", "--format", "json", check=True).stdout.splitlines()


def test_pid1_and_hostname_are_the_containers_own(engine, busybox_image):
    out = engine.cli("run", "--rm", "--hostname", "island", busybox_image,
                     "sh", "-c", "echo pid=$$; hostname; ps -o pid,comm | wc -l", check=True).stdout.split()
    assert out[0] == "pid=1"
    assert out[1] == "island"
    # Only sh, ps and wc (plus the header) are visible: the host's processes are not.
    assert int(out[2]) <= 5


def _rootfs_options(cid: str) -> set[str]:
    """The overlay options of the container's rootfs mount, from the host's mount table."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].endswith(f"/{cid}/rootfs"):
                return set(fields[-1].split(","))
    raise AssertionError(f"no rootfs mount for {cid}")


def test_only_a_rm_container_s_writable_layer_skips_the_syncs(engine, busybox_image):
    """--rm discards the layer at exit, so overlayfs need not sync it (volatile); a
    container that is kept must have its writes synced like any file system."""
    kept = engine.cli("run", "-d", busybox_image, "sleep", "30", check=True).stdout.strip()
    discarded = engine.cli("run", "-d", "--rm", busybox_image, "sleep", "30", check=True).stdout.strip()
    try:
        # Kernels from 6.x on show the option as fsync=volatile.
        volatile = {"volatile", "fsync=volatile"}
        assert not volatile & _rootfs_options(kept)
        assert volatile & _rootfs_options(discarded)
        # What it writes is there for it (and for cp, diff and commit) while it runs.
        engine.cli("exec", discarded, "sh", "-c", "echo kept > /written", check=True)
        assert engine.cli("exec", discarded, "cat", "/written", check=True).stdout == "kept\n"
    finally:
        engine.cli("rm", "-f", kept, discarded)


def test_memory_cpu_and_pids_limits_reach_the_cgroups(engine, busybox_image):
    cid = engine.cli("run", "-d", "--memory", "32m", "--cpus", "0.5", "--pids-limit", "50",
                     busybox_image, "sleep", "30", check=True).stdout.strip()
    try:
        def read(controller: str, name: str) -> str:
            with open(f"/sys/fs/cgroup/{controller}/berth/{cid}/{name}") as f:
                return f.read().strip()
        assert read("memory", "memory.limit_in_bytes") == str(32 * 1024 * 1024)
        assert read("cpu", "cpu.cfs_quota_us") == "50000"
        assert read("cpu", "cpu.cfs_period_us") == "100000"
        assert read("pids", "pids.max") == "50"
        host = inspect(engine, cid)["HostConfig"]
        assert host["Memory"] == 32 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    finally:
        engine.cli("rm", "-f", cid)


def test_over_the_memory_limit_is_oom_killed_and_reported(engine, busybox_image):
    result = engine.cli("run", "--name", "hog", "--memory", "8m", busybox_image,
                        "sh", "-c", 'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo ${#x}')
    try:
        state = inspect(engine, "hog")["State"]
        assert state["OOMKilled"] is True, state
        assert result.returncode == state["ExitCode"] == 137
    finally:
        engine.cli("rm", "-f", "hog")


def test_save_then_load_round_trip_through_the_cli(engine, busybox_image, tmp_path):
    engine.cli("tag", busybox_image, "roundtrip:1", check=True)
    image_id = inspect(engine, "roundtrip:1")["Id"]
    archive = tmp_path / "saved.tar"
    engine.cli("save", "-o", str(archive), "roundtrip:1", check=True)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == ["roundtrip:1"]
    engine.cli("rmi", "roundtrip:1", check=True)
    assert engine.cli("inspect", "--type", "image", "roundtrip:1").returncode != 0
    out = engine.cli("load", "-i", str(archive), check=True).stdout
    assert "roundtrip:1" in out
    assert inspect(engine, "roundtrip:1")["Id"] == image_id
    engine.cli("rmi", "roundtrip:1", check=True)


def test_rmi_of_an_image_in_use_is_refused_unless_forced(engine, busybox_image, tmp_path):
    # An image of its own, so that inuse:1 is its only name (docker only untags otherwise).
    archive = tmp_path / "inuse.tar"
    archive.write_bytes(images.busybox_docker_archive(tag="inuse:1", cmd=["echo", "in use"]))
    engine.cli("load", "-i", str(archive), check=True)
    engine.cli("create", "--name", "user-of-inuse", "inuse:1", "true", check=True)
    try:
        refused = engine.cli("rmi", "inuse:1")
        assert refused.returncode != 0
        assert "in use" in refused.stderr
        assert inspect(engine, "inuse:1")["Id"]
    finally:
        engine.cli("rm", "-f", "user-of-inuse")
    engine.cli("rmi", "inuse:1", check=True)
    assert engine.cli("inspect", "--type", "image", "inuse:1").returncode != 0


@pytest.mark.parametrize("args, message", [
    (["run", "--rm", "Bad:Ref:x", "true"], "invalid reference format"),
    (["run", "--rm", "--name", "a/b", "IMAGE", "true"], "Invalid container name"),
    (["run", "--rm", "--entrypoint", "", "IMAGE"], "no command specified"),
    (["run", "--rm", "no-such-image:9", "true"], "No such image"),
    (["stop", "no-such-container"], "No such container: no-such-container"),
    (["inspect", "--type", "container", "no-such-container"], "No such container"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(engine, busybox_image, args, message):
    before = names(engine)
    args = [busybox_image if a == "IMAGE" else a for a in args]
    result = engine.cli(*args)
    assert result.returncode != 0
    assert message.lower() in result.stderr.lower(), result.stderr
    assert names(engine) == before


def test_corrupt_or_hostile_archives_are_refused_and_store_nothing(engine, tmp_path):
    before = engine.cli("images", "-a", "-q", check=True).stdout
    good = images.busybox_docker_archive(tag="corrupt:1")
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good[: len(good) // 2])
    hostile = tmp_path / "hostile.tar"
    hostile.write_bytes(images.docker_archive_bytes(
        [images.hostile_hardlink_layer("/etc/shadow")], {"Cmd": ["sh"]}, ["hostile:1"]))
    long_name = tmp_path / "long-name.tar"
    long_name.write_bytes(images.docker_archive_bytes(
        [images.long_name_layer()], {"Cmd": ["sh"]}, ["hostile:2"]))
    # Refused at the door, naming the entry; never "internal error".
    for path, message in ((truncated, "truncated"), (hostile, "'passwd'"),
                          (long_name, "File name too long")):
        result = engine.cli("load", "-i", str(path))
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "internal" not in result.stderr.lower(), result.stderr
    assert engine.cli("images", "-a", "-q", check=True).stdout == before


def test_odd_but_containable_images_load_and_run(engine, tmp_path):
    """`..` names clamped into the layer, absolute hardlink targets, device nodes: docker
    runs such images, so berth does; the device cgroup makes the node useless."""
    rootfs = images.busybox_rootfs_tar()
    odd = tmp_path / "odd.tar"
    odd.write_bytes(images.docker_archive_bytes(
        [rootfs, images.hostile_dotdot_layer("../../berth-escaped"), images.absolute_hardlink_layer(),
         images.device_node_layer()], {"Cmd": ["sh"]}, ["odd:1"]))
    engine.cli("load", "-i", str(odd), check=True)
    try:
        run = engine.cli("run", "--rm", "odd:1", "sh", "-c",
                         "cat /berth-escaped /bin/link; head -c1 /dev/sda || echo denied", check=True)
        assert run.stdout.splitlines()[:2] == ["pwned", "tool"], run.stdout
        assert "denied" in run.stdout
    finally:
        engine.cli("rmi", "-f", "odd:1")
    assert not os.path.exists("/berth-escaped")
