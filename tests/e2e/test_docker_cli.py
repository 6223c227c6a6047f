"""The real docker CLI (client only) against berthd's Docker Engine API socket."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid

import pytest

DOCKER = shutil.which("docker")
pytestmark = pytest.mark.skipif(DOCKER is None, reason="no docker CLI installed")


@pytest.fixture
def docker(engine, busybox_image):
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
           # No user config: no credential helpers, no contexts.
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config"}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=env, input=input, capture_output=True, timeout=timeout)
    return run


def _name() -> str:
    return f"dk-{uuid.uuid4().hex[:8]}"


def test_foreground_run_prints_output_and_exits_with_the_code(docker):
    r = docker("run", "--rm", "busybox", "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == b"hi\n"
    assert r.stderr == b"oops\n"


def test_run_rm_leaves_no_container(docker):
    name = _name()
    assert docker("run", "--rm", "--name", name, "busybox", "true").returncode == 0
    listed = docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}")
    assert listed.stdout == b""


def test_walkthrough_run_d_ps_logs_stop_rm(docker):
    name = _name()
    r = docker("run", "-d", "--name", name, "busybox", "sh", "-c", "echo started; exec sleep 60")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.decode().strip()
    assert len(cid) == 64
    ps = docker("ps", "--format", "{{.ID}} {{.Names}} {{.Status}}")
    assert f"{cid[:12]} {name} Up" in ps.stdout.decode()
    logs = docker("logs", name)
    assert logs.stdout == b"started\n", logs
    assert docker("stop", "-t", "1", name).stdout.decode().strip() == name
    state = json.loads(docker("inspect", name).stdout)[0]["State"]
    assert state["Status"] == "exited" and not state["Running"]
    assert docker("rm", name).returncode == 0
    assert docker("ps", "-a", "-q", "--filter", f"id={cid}").stdout == b""


def test_unknown_container_and_image_errors_read_as_dockers(docker):
    r = docker("rm", "no-such-ctr")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == "Error response from daemon: No such container: no-such-ctr"
    r = docker("logs", "no-such-ctr")
    assert "No such container: no-such-ctr" in r.stderr.decode()
    r = docker("rmi", "no-such-image:1")
    assert r.returncode == 1
    assert "No such image: no-such-image:1" in r.stderr.decode()


def test_stderr_and_stdout_stay_apart_in_logs(docker):
    name = _name()
    docker("run", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2")
    try:
        logs = docker("logs", name)
        assert logs.stdout == b"out\n" and logs.stderr == b"err\n"
        tail = docker("logs", "--tail", "1", "-t", name)
        assert tail.stdout == b"" or tail.stdout.endswith(b" out\n")
    finally:
        docker("rm", "-f", name)


def test_save_and_load_round_trip(docker, tmp_path):
    tag = f"dk-saved:{uuid.uuid4().hex[:6]}"
    assert docker("tag", "busybox", tag).returncode == 0
    archive = tmp_path / "img.tar"
    r = docker("save", "-o", str(archive), tag)
    assert r.returncode == 0, r.stderr
    with tarfile.open(archive) as tar:
        assert "manifest.json" in tar.getnames()
    assert docker("rmi", tag).returncode == 0
    loaded = docker("load", "-i", str(archive))
    assert loaded.returncode == 0, loaded.stderr
    assert f"Loaded image: {tag}" in loaded.stdout.decode()
    assert docker("image", "inspect", tag).returncode == 0
    docker("rmi", tag)


def test_not_yet_implemented_features_are_refused_clearly(docker):
    r = docker("run", "--rm", "-t", "busybox", "true")
    assert r.returncode != 0
    assert "not implemented" in r.stderr.decode()
    r = docker("create", "--restart", "always", "busybox", "true")
    assert "not implemented" in r.stderr.decode()


def test_kill_restart_and_wait(docker):
    name = _name()
    docker("run", "-d", "--name", name, "busybox", "sleep", "60")
    try:
        # sleep as pid 1 has no TERM handler, so the kernel ignores TERM: KILL it.
        assert docker("kill", "-s", "KILL", name).returncode == 0
        assert docker("wait", name).stdout.strip() == b"137"
        assert docker("restart", "-t", "1", name).returncode == 0
        assert json.loads(docker("inspect", name).stdout)[0]["State"]["Running"]
    finally:
        docker("rm", "-f", name)


def test_version_and_info(docker):
    r = docker("version", "--format", "{{.Server.APIVersion}}")
    assert r.stdout.strip() == b"1.47"
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert info["Images"] >= 1 and info["OSType"] == "linux"
