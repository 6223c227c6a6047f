"""docker-compose (Debian's 1.29, which talks to the Docker API through docker-py) against
berthd: a project of several services goes up, runs, scales and comes down as with dockerd."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import pytest

COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="no docker-compose installed")

# What a dockerd 20.10 shows for this project (docker-compose ps, after `up -d` and once
# db is healthy), row by row: name, state, ports. Taken side by side with a throwaway dockerd
# on the same project; its web row also has ":::PORT->8080/tcp" (docker-proxy's IPv6 bind),
# which berth, publishing on IPv4 only, does not show.
PROJECT_FILE = """\
version: "3.7"
services:
  db:
    image: busybox
    stop_grace_period: 2s
    command: sh -c 'echo db-up; echo stored > /data/x; exec sleep 3000'
    volumes:
      - dbdata:/data
    networks:
      back:
        aliases: [database]
    healthcheck:
      test: ["CMD", "test", "-f", "/data/x"]
      interval: 1s
      retries: 60
    restart: unless-stopped
  web:
    image: busybox
    stop_grace_period: 2s
    command: httpd -f -p 8080 -h /srv
    volumes:
      - ./site:/srv:ro
    depends_on: [db]
    networks:
      default: {{}}
      back:
        aliases: [frontend]
    ports: ["{port}:8080"]
    restart: always
  sidecar:
    image: busybox
    stop_grace_period: 2s
    command: sh -c 'echo sidecar-up; exec sleep 3000'
    network_mode: service:web
    depends_on: [web]
  worker:
    image: busybox
    stop_grace_period: 2s
    command: sh -c 'echo worker-up; exec sleep 3000'
    depends_on: [db]
    links: [web]
    expose: ["9000"]
    networks: [default, back]
  init:
    image: busybox
    command: sh -c 'echo init-done'
    restart: "no"
volumes:
  dbdata: {{}}
networks:
  back: {{}}
"""


@pytest.fixture
def compose(engine, busybox_image, tmp_path):
    project = f"cp{uuid.uuid4().hex[:6]}"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello-from-bind\n")
    with socket.socket() as probe:   # a free host port for web's published one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "docker-compose.yml").write_text(PROJECT_FILE.format(port=port))
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config", "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    env.pop("DOCKER_CONTEXT", None)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([COMPOSE, "-p", project, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=timeout)
    try:
        yield run, project, env, tmp_path, port
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


def _ps_rows(out: str) -> dict[str, tuple[str, str]]:
    """compose's ps table (columns apart by two spaces or more): name -> (state, ports)."""
    rows = {}
    for line in out.splitlines()[2:]:
        name, _command, state, *ports = re.split(r"\s{2,}", line.strip())
        rows[name] = (state, ports[0] if ports else "")
    return rows


def _assert_ps(run, expected: dict, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = _ps_rows(run("ps").stdout)
        if rows == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rows == expected


def test_a_project_goes_up_scales_and_comes_down_as_on_dockerd(compose, engine):
    run, project, env, _, port = compose

    def docker(*args):
        return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)

    up = run("up", "-d")
    assert up.returncode == 0, up.stderr
    # The healthcheck runs, and compose's ps shows it as dockerd's would.
    _wait("db healthy", lambda: "(healthy)" in run("ps").stdout)
    p = f"{project}_"
    expected = {p + "db_1": ("Up (healthy)", ""), p + "init_1": ("Exit 0", ""), p + "sidecar_1": ("Up", ""),
                p + "web_1": ("Up", f"0.0.0.0:{port}->8080/tcp"), p + "worker_1": ("Up", "9000/tcp")}
    _assert_ps(run, expected)
    assert sorted(run("ps", "--services").stdout.split()) == ["db", "init", "sidecar", "web", "worker"]
    db = json.loads(docker("inspect", f"{p}db_1").stdout)[0]
    assert db["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert set(db["NetworkSettings"]["Networks"]) == {f"{project}_back"}
    assert "database" in db["NetworkSettings"]["Networks"][f"{project}_back"]["Aliases"]
    web = json.loads(docker("inspect", f"{p}web_1").stdout)[0]
    assert set(web["NetworkSettings"]["Networks"]) == {f"{project}_back", f"{project}_default"}
    assert web["HostConfig"]["RestartPolicy"]["Name"] == "always"
    # Named volume written by db; bind volume read by web; exec into a service, its status kept.
    out = run("exec", "-T", "db", "cat", "/data/x")
    assert (out.returncode, out.stdout) == (0, "stored\n"), out.stderr
    out = run("exec", "-T", "web", "cat", "/srv/index.html")
    assert out.stdout == "hello-from-bind\n", out.stderr
    assert run("exec", "-T", "worker", "false").returncode == 1
    # worker reaches web by its service name, its link and its alias.
    for name in ("web", f"{p}web_1", "frontend"):
        out = run("exec", "-T", "worker", "wget", "-q", "-O", "-", f"http://{name}:8080/index.html")
        assert out.stdout == "hello-from-bind\n", out.stderr
    # On a user network links give names only, no WEB_* environment (as dockerd).
    assert "WEB_" not in run("exec", "-T", "worker", "env").stdout
    # sidecar shares web's namespace: web's server on its loopback.
    out = run("exec", "-T", "sidecar", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html")
    assert out.stdout == "hello-from-bind\n", out.stderr

    scaled = run("up", "-d", "--scale", "worker=2")
    assert scaled.returncode == 0, scaled.stderr
    # (init runs again and exits: polled, not raced)
    _assert_ps(run, {**expected, p + "worker_2": ("Up", "9000/tcp")})

    # logs -f follows every service (compose filters /events by its labels) until stopped.
    follow = subprocess.Popen([COMPOSE, "-p", project, "logs", "-f", "--no-color"], cwd=compose[3],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 60
        # Each container's log comes from its own thread of compose's, in any order.
        while time.monotonic() < deadline and not ("db-up" in seen and seen.count("worker-up") >= 2
                                                   and "init-done" in seen):
            line = follow.stdout.readline()
            if not line:
                break
            seen += line
        assert "db-up" in seen and seen.count("worker-up") >= 2 and "init-done" in seen, seen
        assert follow.poll() is None, "logs -f ended by itself"
    finally:
        follow.kill()
        follow.wait()

    # A stopped web: the container sharing its namespace runs on, as on dockerd.
    assert run("stop", "web").returncode == 0
    rows = _ps_rows(run("ps", "web", "sidecar").stdout)
    assert rows[p + "sidecar_1"] == ("Up", "") and rows[p + "web_1"][0].startswith("Exit ")

    down = run("down", "-v")
    assert down.returncode == 0, down.stderr
    left = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "-q")
    assert left.stdout.strip() == ""
    assert project not in docker("volume", "ls", "-q").stdout
    assert project not in docker("network", "ls", "--format", "{{.Name}}").stdout
