"""The real docker CLI (client only) against berthd's Docker Engine API socket."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import select
import time
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
    # The daemon's message, as the CLI frames it (20.10 says "Error:", later ones "Error response from daemon:").
    assert r.stderr.decode().strip() in ("Error response from daemon: No such container: no-such-ctr",
                                         "Error: No such container: no-such-ctr")
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
    r = docker("run", "--rm", "--dns", "192.0.2.1", "busybox", "true")
    assert r.returncode != 0
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


@pytest.fixture
def running(docker):
    """A running container and its name, removed afterwards."""
    name = _name()
    r = docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    try:
        yield name
    finally:
        docker("rm", "-f", name)


def test_exec_exit_code_output_and_stdin(docker, running):
    r = docker("exec", running, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, b"out\n", b"err\n")
    r = docker("exec", "-i", running, "sh", "-c", "tr a-z A-Z; echo done", input=b"")
    assert (r.returncode, r.stdout) == (0, b"done\n"), r.stderr  # empty stdin: EOF at once
    r = docker("exec", "-i", running, "sh", "-c", "tr a-z A-Z; echo done", input=b"piped\n")
    assert (r.returncode, r.stdout) == (0, b"PIPED\ndone\n"), r.stderr
    r = docker("exec", "-d", running, "sh", "-c", "echo bg > /tmp/bg")
    assert r.returncode == 0, r.stderr
    for _ in range(50):
        if docker("exec", running, "cat", "/tmp/bg").stdout == b"bg\n":
            break
        time.sleep(0.1)
    else:
        pytest.fail("exec -d never ran")
    r = docker("exec", running, "no-such-command")
    assert r.returncode == 127 and b"no-such-command" in r.stdout + r.stderr
    r = docker("exec", "-e", "A=1", "-w", "/tmp", running, "sh", "-c", "echo $A $(pwd)")
    assert r.stdout == b"1 /tmp\n"


def test_run_i_pipes_stdin_to_the_process(docker):
    r = docker("run", "-i", "--rm", "busybox", "cat", input=b"hi\n")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
    big = os.urandom(1 << 20)
    r = docker("run", "-i", "--rm", "busybox", "sh", "-c", "cat | md5sum", input=big)
    import hashlib
    assert r.stdout.split()[0].decode() == hashlib.md5(big).hexdigest(), r.stderr


def test_run_t_on_a_terminal(docker, engine):
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config", "TERM": "xterm"}
    code, out = _pty_until([DOCKER, "run", "-t", "--rm", "busybox", "sh", "-c", "tty; stty size; exit 5"], env, [])
    assert code == 5, out
    assert b"/dev/pts/" in out or b"/dev/console" in out, out
    code, out = _pty_until([DOCKER, "run", "-it", "--rm", "busybox", "sh", "-c", "read x; echo got-$x"], env,
                           [(b"", b"abc\r")])
    assert code == 0, out
    assert b"got-abc" in out, out


def test_exec_t_on_a_terminal(docker, engine, running):
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config", "TERM": "xterm"}
    code, out = _pty_until([DOCKER, "exec", "-t", running, "sh", "-c", "tty; exit 4"], env, [])
    assert code == 4, out
    assert b"/dev/pts/" in out, out


def _pty_until(argv, env, steps, timeout=60.0):
    """Runs argv on a pseudo-terminal; once the CLI has put the terminal in raw mode (it
    is attached), for each (wanted, send) waits until `wanted` was printed, then types
    `send`. Returns (exit code, everything printed)."""
    import termios
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    out = b""
    steps = list(steps)
    deadline = time.monotonic() + timeout
    raw = False
    try:
        while time.monotonic() < deadline:
            if not raw:
                with contextlib.suppress(termios.error):
                    raw = not termios.tcgetattr(fd)[3] & termios.ICANON
            if raw and steps and steps[0][0] in out:
                os.write(fd, steps.pop(0)[1])
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        else:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out
    finally:
        os.close(fd)


def test_detach_keys_from_attach_and_exec_leave_the_processes_running(docker, engine):
    """ctrl-p ctrl-q (or --detach-keys) typed on `docker attach` or `docker exec -it`
    closes the stream; the container and the exec run on (a terminal's stdin stays open
    when its client leaves), and a ctrl-p not followed by ctrl-q reaches the process. The
    engine's own detecting is checked through raw sockets in test_docker_sdk.py."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
           "DOCKER_CONFIG": "/nonexistent-berth-docker-config", "TERM": "xterm"}
    name = _name()
    assert docker("run", "-dit", "--name", name, "busybox", "cat").returncode == 0
    try:
        code, out = _pty_until([DOCKER, "attach", name], env, [(b"", b"one\r"), (b"one", b"\x10x\r"),
                                                                (b"^Px", b"\x10\x11")])
        # The CLI reports the detach as docker's does ("read escape sequence", status 1).
        assert b"read escape sequence" in out and b"^Px" in out, out
        code, out = _pty_until([DOCKER, "attach", "--detach-keys", "ctrl-x", name], env,
                               [(b"", b"two\r"), (b"two", b"\x18")])
        assert b"read escape sequence" in out, out
        assert json.loads(docker("inspect", name).stdout)[0]["State"]["Running"] is True
        code, out = _pty_until([DOCKER, "exec", "-it", name, "sh", "-c", "echo ready; exec cat"], env,
                               [(b"ready", b"\x10\x11")])
        assert b"read escape sequence" in out, out
        top = docker("top", name).stdout.decode()
        assert top.count("cat") == 2, top  # the container's cat and the exec's, still there
    finally:
        docker("rm", "-f", name)


def test_cp_both_ways(docker, running, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"to the container\n")
    r = docker("cp", str(src), f"{running}:/tmp/")
    assert r.returncode == 0, r.stderr
    assert docker("exec", running, "cat", "/tmp/in.txt").stdout == b"to the container\n"
    r = docker("cp", str(src), f"{running}:/tmp/renamed.txt")
    assert r.returncode == 0, r.stderr
    assert docker("exec", running, "cat", "/tmp/renamed.txt").stdout == b"to the container\n"
    docker("exec", running, "sh", "-c", "mkdir -p /data/sub && echo deep > /data/sub/f")
    r = docker("cp", f"{running}:/data", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "sub" / "f").read_bytes() == b"deep\n"
    r = docker("cp", f"{running}:/tmp/in.txt", str(tmp_path / "back.txt"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back.txt").read_bytes() == b"to the container\n"
    r = docker("cp", f"{running}:/no/such", str(tmp_path / "x"))
    # The CLI asks HEAD first: 20.10 reads its 404 as "No such container:path", later CLIs print the message.
    assert r.returncode != 0 and (b"Could not find the file" in r.stderr or b"No such container:path" in r.stderr)


def test_pause_unpause_top_stats(docker, running):
    assert docker("pause", running).returncode == 0
    state = json.loads(docker("inspect", running).stdout)[0]["State"]
    assert state["Status"] == "paused" and state["Paused"]
    assert b"Paused" in docker("ps", "--filter", f"name={running}", "--format", "{{.Status}}").stdout
    r = docker("unpause", running)
    assert r.returncode == 0, r.stderr
    top = docker("top", running)
    assert top.returncode == 0, top.stderr
    assert b"PID" in top.stdout and b"sleep 300" in top.stdout
    stats = docker("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", running)
    assert stats.returncode == 0, stats.stderr
    name, cpu, *_rest, pids = stats.stdout.decode().split()
    assert name == running and cpu.endswith("%") and pids == "1"


def test_update_memory_rename_and_changes(docker, running):
    r = docker("update", "--memory", "64m", running)
    assert r.returncode == 0, r.stderr
    stats = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", running)
    assert stats.stdout.decode().strip().endswith("/ 64MiB"), stats.stdout
    new = _name()
    assert docker("rename", running, new).returncode == 0
    try:
        assert docker("inspect", "--format", "{{.Name}}", new).stdout.strip() == f"/{new}".encode()
        docker("exec", new, "sh", "-c", "echo x > /added")
        diff = docker("diff", new).stdout.decode().splitlines()
        assert "A /added" in diff
    finally:
        docker("rm", "-f", new)


def test_commit_then_run(docker, running):
    docker("exec", running, "sh", "-c", "echo committed > /marker")
    tag = f"dk-commit:{uuid.uuid4().hex[:6]}"
    r = docker("commit", "-c", 'CMD ["cat", "/marker"]', "-m", "msg", running, tag)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip().startswith("sha256:")
    try:
        run = docker("run", "--rm", tag)
        assert run.stdout == b"committed\n", run.stderr
    finally:
        docker("rmi", "-f", tag)


def test_restart_on_failure_restarts_twice(docker):
    name = _name()
    r = docker("run", "-d", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = json.loads(docker("inspect", name).stdout)[0]
            if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
                break
            time.sleep(0.2)
        assert info["RestartCount"] == 2 and info["State"]["Status"] == "exited", info["State"]
        assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    finally:
        docker("rm", "-f", name)


def test_healthcheck_in_run_shows_in_inspect(docker):
    name = _name()
    r = docker("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "1s",
               "--health-start-period", "0s", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 15
        health = {}
        while time.monotonic() < deadline:
            health = json.loads(docker("inspect", name).stdout)[0]["State"].get("Health") or {}
            if health.get("Status") == "healthy":
                break
            time.sleep(0.3)
        assert health.get("Status") == "healthy", health
        assert b"(healthy)" in docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}").stdout
    finally:
        docker("rm", "-f", name)


def test_export_and_system_df(docker, running, tmp_path):
    out = tmp_path / "fs.tar"
    r = docker("export", "-o", str(out), running)
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as tar:
        assert any(n.lstrip("./").startswith("bin/busybox") for n in tar.getnames())
    df = docker("system", "df", "--format", "{{json .}}")
    assert df.returncode == 0, df.stderr
    rows = {row["Type"]: row for row in map(json.loads, df.stdout.decode().splitlines())}
    assert int(rows["Images"]["TotalCount"]) >= 1 and rows["Images"]["Size"] != "0B"
    assert int(rows["Containers"]["Active"]) >= 1


def test_login_push_and_pull_through_a_registry(engine, busybox_image, tmp_path):
    from tests.support.registries import DOCKER_REGISTRY, DockerRegistry
    if not os.path.exists(DOCKER_REGISTRY):
        pytest.skip("docker-registry not installed")
    env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}", "DOCKER_CONFIG": str(tmp_path)}
    env.pop("DOCKER_CONTEXT", None)

    def docker(*args, input=None):
        return subprocess.run([DOCKER, *args], env=env, input=input, capture_output=True, timeout=120)

    with DockerRegistry(htpasswd={"dk": "secret"}) as reg:
        name = f"{reg.host}/dk/busybox:1"
        assert docker("tag", "busybox", name).returncode == 0
        denied = docker("push", name)
        assert denied.returncode != 0
        login = docker("login", "-u", "dk", "--password-stdin", reg.host, input=b"secret\n")
        assert login.returncode == 0, login.stderr
        pushed = docker("push", name)
        assert pushed.returncode == 0, pushed.stderr
        assert b"digest: sha256:" in pushed.stdout
        assert docker("rmi", name).returncode == 0
        pulled = docker("pull", name)
        assert pulled.returncode == 0, pulled.stderr
        text = pulled.stdout.decode()
        assert "1: Pulling from dk/busybox" in text and "Digest: sha256:" in text
        assert f"Status: Downloaded newer image for {name}" in text or f"Status: Image is up to date for {name}" in text
        run = docker("run", "--rm", name, "echo", "pulled")
        assert run.stdout == b"pulled\n", run.stderr
        docker("rmi", name)
