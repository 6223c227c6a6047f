"""Isolation seen from inside containers: user namespaces (userns-remap, --userns host),
recursive read-only binds."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid

import pytest

from tests.support.engine import Engine
from tests.support.rootfs import busybox_available, make_busybox_rootfs, rootfs_tar_bytes

docker = pytest.importorskip("docker")
BASE = 400000


@pytest.fixture(scope="module")
def remapped():
    """A berthd running with userns-remap: root onto BASE.. (its own subordinate id files)."""
    if not busybox_available():
        pytest.skip("busybox-static is not installed")
    ids = tempfile.mkdtemp(prefix="/tmp/bt-ids-")
    for name in ("subuid", "subgid"):
        with open(os.path.join(ids, name), "w") as f:
            f.write(f"root:{BASE}:65536\n")
    eng = Engine()
    eng.env = {"BERTH_USERNS_REMAP": "root", "BERTH_SUBUID_FILE": f"{ids}/subuid",
               "BERTH_SUBGID_FILE": f"{ids}/subgid"}
    eng.start()
    try:
        with tempfile.TemporaryDirectory(prefix="/tmp/bt-rootfs-") as root:
            tar = rootfs_tar_bytes(make_busybox_rootfs(root))
        eng.cli("import", "-", "busybox:latest", "-c", 'CMD ["sh"]', input=tar, check=True)
        yield eng
    finally:
        eng.stop()
        subprocess.run(["rm", "-rf", ids])


def test_root_inside_cannot_read_a_root_only_host_file(remapped, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host root only\n")
    os.chmod(secret, 0o600)
    run = remapped.cli("run", "--rm", "-v", f"{secret}:/secret", "busybox", "sh", "-c",
                       "cat /proc/self/uid_map; id -u; touch /rootfs-is-writable && echo ok; "
                       "cat /secret; echo status=$?")
    lines = run.stdout.split("\n")
    assert lines[0].split() == ["0", str(BASE), "65536"], run.stdout
    assert lines[1:3] == ["0", "ok"], run.stdout
    assert "host root only" not in run.stdout and "status=1" in run.stdout, run.stdout
    assert "Permission denied" in run.stderr, run.stderr


def test_exec_into_a_remapped_container_is_refused_in_words(remapped):
    """runc 1.1 joins the user namespace first and then may not join the network
    namespace, which the host's user namespace owns (runc >= 1.2 can)."""
    name = f"e{uuid.uuid4().hex[:8]}"
    try:
        remapped.cli("run", "-d", "--name", name, "busybox", "sleep", "1000", check=True)
        run = remapped.cli("exec", name, "id", "-u")
        assert run.returncode != 0 and "--userns host" in run.stderr, run.stderr
        assert "nsexec" not in run.stderr
    finally:
        remapped.cli("rm", "-f", name)


def test_a_volume_is_written_as_root_inside_and_out(remapped):
    name = f"v{uuid.uuid4().hex[:8]}"
    try:
        run = remapped.cli("run", "--rm", "-v", f"{name}:/data", "busybox", "sh", "-c",
                           "echo x > /data/f && stat -c %u /data/f", check=True)
        assert run.stdout.strip() == "0"
        [info] = json.loads(remapped.cli("volume", "inspect", name, check=True).stdout)
        path = info["Mountpoint"]
        # On disk in host ids: the container's root is the host's root here, as without remapping.
        assert os.stat(os.path.join(path, "f")).st_uid == 0
    finally:
        remapped.cli("volume", "rm", name)


def test_commit_of_a_remapped_container_records_the_containers_ids(remapped):
    name = f"c{uuid.uuid4().hex[:8]}"
    image = f"committed-{name}:1"
    try:
        remapped.cli("run", "--name", name, "busybox", "sh", "-c", "touch /made; chown 7:8 /made",
                     check=True)
        remapped.cli("commit", name, image, check=True)
        run = remapped.cli("run", "--rm", image, "stat", "-c", "%u:%g", "/made", check=True)
        assert run.stdout.strip() == "7:8"
    finally:
        remapped.cli("rm", "-f", name)
        remapped.cli("rmi", "-f", image)


def test_userns_host_through_the_docker_api(remapped):
    client = docker.DockerClient(base_url=f"unix://{remapped.docker_socket}", version="auto", timeout=60)
    try:
        out = client.containers.run("busybox", ["cat", "/proc/self/uid_map"], userns_mode="host",
                                    remove=True)
        assert out.split() == [b"0", b"0", b"4294967295"]
        c = client.containers.create("busybox", ["true"], userns_mode="host")
        try:
            assert c.attrs["HostConfig"]["UsernsMode"] == "host"
        finally:
            c.remove()
        with pytest.raises(docker.errors.APIError) as err:
            # Past docker-py's own check, as another client would send it.
            client.api.create_container("busybox", ["true"], host_config={"UsernsMode": "keep-id"})
        assert err.value.status_code == 400 and "keep-id" in str(err.value)
    finally:
        client.close()


def test_a_read_only_bind_is_read_only_all_the_way_down(engine, busybox_image, tmp_path):
    outer = tmp_path / "outer"
    (outer / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(outer / "sub")], check=True)
    try:
        run = engine.cli("run", "--rm", "-v", f"{outer}:/host:ro", "busybox", "sh", "-c",
                         "touch /host/top; touch /host/sub/below; grep ' /host' /proc/self/mountinfo")
        assert run.stderr.count("Read-only file system") == 2, run.stderr
        points = [line.split() for line in run.stdout.splitlines()]
        assert {p[4] for p in points} == {"/host", "/host/sub"}
        assert all(p[5].split(",")[0] == "ro" for p in points), run.stdout
        assert os.listdir(outer / "sub") == []
    finally:
        subprocess.run(["umount", str(outer / "sub")], check=True)


def test_cgroupns_private_sees_its_own_cgroup_as_the_root(engine, busybox_image):
    """--cgroupns private: a cgroup namespace of its own (its cgroups read as "/"), a
    read-only /sys/fs/cgroup, and inspect saying so; host (the default) sees the host's paths."""
    name = f"cgns-{uuid.uuid4().hex[:8]}"
    # cgroup v1 (a hierarchy per controller) or v2 (one tree): either way read-only.
    script = ("cat /proc/self/cgroup; echo ---; d=/sys/fs/cgroup; [ -d $d/memory ] && d=$d/memory;"
              " mkdir $d/x 2>&1; ls /sys/fs/cgroup")
    try:
        r = engine.cli("run", "--name", name, "--cgroupns", "private", busybox_image, "sh", "-c", script, check=True)
        cgroups, _, rest = r.stdout.partition("---\n")
        paths = {line.split(":", 2)[2] for line in cgroups.splitlines() if line.count(":") >= 2}
        assert paths == {"/"}, cgroups
        assert "Read-only file system" in rest, rest
        assert "memory" in rest.split() or "cgroup.controllers" in rest.split(), rest
        info = json.loads(engine.cli("inspect", name, check=True).stdout)[0]
        assert info["HostConfig"]["CgroupnsMode"] == "private"
        host = engine.cli("run", "--rm", busybox_image, "cat", "/proc/self/cgroup", check=True).stdout
        assert any("/berth/" in line for line in host.splitlines()), host
        bad = engine.cli("create", "--cgroupns", "shared", busybox_image)
        assert bad.returncode != 0 and "shared" in bad.stderr
    finally:
        engine.cli("rm", "-f", name)
