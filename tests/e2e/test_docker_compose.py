"""docker-compose (Debian's 1.29, which talks to the Docker API through docker-py) against
berthd: a project of several services goes up, runs, scales and comes down as with dockerd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="no docker-compose installed")

PROJECT_FILE = """\
version: "3.7"
services:
  db:
    image: busybox
    command: sh -c 'echo db-up; echo stored > /data/x; exec sleep 300'
    volumes:
      - dbdata:/data
    networks: [back]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/x"]
      interval: 1s
      retries: 60
    restart: unless-stopped
  web:
    image: busybox
    command: httpd -f -p 8080 -h /srv
    volumes:
      - ./site:/srv:ro
    depends_on: [db]
    networks: [default, back]
    restart: always
  worker:
    image: busybox
    command: sh -c 'echo worker-up; exec sleep 300'
    depends_on: [db]
volumes:
  dbdata: {}
networks:
  back: {}
"""


@pytest.fixture
def compose(engine, busybox_image, tmp_path):
    project = f"cp{uuid.uuid4().hex[:6]}"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello-from-bind\n")
    (tmp_path / "docker-compose.yml").write_text(PROJECT_FILE)
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config", "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([COMPOSE, "-p", project, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=timeout)
    try:
        yield run, project, env, tmp_path
    finally:
        run("down", "-v", "--remove-orphans", timeout=120)


def _wait(what, check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_project_goes_up_scales_and_comes_down(compose, engine):
    run, project, env, _ = compose

    def docker(*args):
        return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)

    up = run("up", "-d")
    assert up.returncode == 0, up.stderr
    ps = run("ps")
    assert ps.returncode == 0, ps.stderr
    for service in ("db", "web", "worker"):
        assert f"{project}_{service}_1" in ps.stdout
    # The healthcheck runs, and compose's ps shows it as dockerd's would.
    _wait("db healthy", lambda: "(healthy)" in run("ps").stdout)
    db = json.loads(docker("inspect", f"{project}_db_1").stdout)[0]
    assert db["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert set(db["NetworkSettings"]["Networks"]) == {f"{project}_back"}
    web = json.loads(docker("inspect", f"{project}_web_1").stdout)[0]
    assert set(web["NetworkSettings"]["Networks"]) == {f"{project}_back", f"{project}_default"}
    assert web["HostConfig"]["RestartPolicy"]["Name"] == "always"
    # Named volume written by db; bind volume read by web; exec into a service.
    out = run("exec", "-T", "db", "cat", "/data/x")
    assert (out.returncode, out.stdout) == (0, "stored\n"), out.stderr
    out = run("exec", "-T", "web", "cat", "/srv/index.html")
    assert out.stdout == "hello-from-bind\n", out.stderr
    # worker reaches web by its service name on the project's default network.
    out = run("exec", "-T", "worker", "wget", "-q", "-O", "-", "http://web:8080/index.html")
    assert out.stdout == "hello-from-bind\n", out.stderr

    scaled = run("up", "-d", "--scale", "worker=2")
    assert scaled.returncode == 0, scaled.stderr
    assert f"{project}_worker_2" in run("ps").stdout

    # logs -f follows every service (compose filters /events by its labels) until stopped.
    follow = subprocess.Popen([COMPOSE, "-p", project, "logs", "-f", "--no-color"], cwd=compose[3],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ("db-up" in seen and seen.count("worker-up") >= 2):
            line = follow.stdout.readline()
            if not line:
                break
            seen += line
        assert "db-up" in seen and seen.count("worker-up") >= 2, seen
        assert follow.poll() is None, "logs -f ended by itself"
    finally:
        follow.kill()
        follow.wait()

    down = run("down", "-v")
    assert down.returncode == 0, down.stderr
    left = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "-q")
    assert left.stdout.strip() == ""
    assert project not in docker("volume", "ls", "-q").stdout
    assert project not in docker("network", "ls", "--format", "{{.Name}}").stdout

