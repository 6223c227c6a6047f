"""The berth CLI against a real berthd, as a docker user would drive it."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ps(engine, *args) -> list[dict]:
    out = engine.cli("ps", "--format", "json", *args, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_run_detached_ps_logs_stop_rm(engine, busybox_image):
    name = _name("web")
    run = engine.cli("run", "-d", "--name", name, busybox_image, "sh", "-c", "echo ready; sleep 30")
    assert run.returncode == 0, run.stderr
    cid = run.stdout.strip()
    assert len(cid) == 64

    rows = _ps(engine, "-f", f"name={name}")
    assert [(r["ID"], r["Names"], r["State"]) for r in rows] == [(cid[:12], name, "running")]
    assert rows[0]["Status"].startswith("Up ")
    table = engine.cli("ps", check=True).stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert any(line.startswith(cid[:12]) and line.endswith(name) for line in table)

    deadline = time.monotonic() + 5
    while "ready" not in engine.cli("logs", name).stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.cli("logs", name, check=True).stdout == "ready\n"

    inspect = json.loads(engine.cli("inspect", name, check=True).stdout)
    assert inspect[0]["Id"] == cid and inspect[0]["Name"] == f"/{name}"
    assert inspect[0]["State"]["Running"] is True and inspect[0]["Config"]["Hostname"] == cid[:12]

    assert engine.cli("stop", "-t", "1", name).stdout.strip() == name
    rows = _ps(engine, "-a", "-f", f"name={name}")
    assert rows[0]["State"] == "exited" and rows[0]["Status"].startswith("Exited (")
    assert _ps(engine, "-f", f"name={name}") == []

    rm = engine.cli("rm", name)
    assert (rm.returncode, rm.stdout.strip()) == (0, name)
    assert _ps(engine, "-a", "-f", f"name={name}") == []


@pytest.mark.parametrize("command,code", [
    (["true"], 0),
    (["sh", "-c", "exit 3"], 3),
    (["nosuchcommand"], 127),
])
def test_foreground_exit_codes(engine, busybox_image, command, code):
    result = engine.cli("run", "--rm", busybox_image, *command)
    assert result.returncode == code, result.stderr
    if code == 127:
        assert "Error response from daemon:" in result.stderr
        assert "executable file not found" in result.stderr


def test_foreground_output_goes_to_stdout_and_stderr(engine, busybox_image):
    result = engine.cli("run", "--rm", busybox_image, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (result.returncode, result.stdout, result.stderr) == (5, "out\n", "err\n")


def test_rm_leaves_nothing(engine, busybox_image):
    netns_dir = os.path.join(engine.config.run_root, "netns")

    def namespaces() -> set[str]:
        return set(os.listdir(netns_dir)) if os.path.isdir(netns_dir) else set()

    # What was there before (other containers, a build's spare endpoint) is not this run's.
    before = namespaces()
    name = _name("gone")
    assert engine.cli("run", "--rm", "--name", name, busybox_image, "true").returncode == 0
    assert _ps(engine, "-a", "-f", f"name={name}") == []
    listed = {r["ID"] for r in _ps(engine, "-a")}
    assert all(n[:12] in listed for n in namespaces() - before)


def test_detached_rm_is_removed_after_exit(engine, busybox_image):
    name = _name("bg")
    assert engine.cli("run", "-d", "--rm", "--name", name, busybox_image, "sleep", "0.2").returncode == 0
    deadline = time.monotonic() + 10
    while _ps(engine, "-a", "-f", f"name={name}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ps(engine, "-a", "-f", f"name={name}") == []


def test_taken_name_is_an_error(engine, busybox_image):
    name = _name("taken")
    engine.cli("create", "--name", name, busybox_image, check=True)
    try:
        again = engine.cli("run", "--name", name, busybox_image, "true")
        assert again.returncode == 125
        assert again.stderr.startswith("Error response from daemon:")
        assert "already in use" in again.stderr
        assert len(_ps(engine, "-a", "-f", f"name={name}")) == 1
    finally:
        engine.cli("rm", "-f", name)


def test_unknown_container(engine):
    result = engine.cli("rm", "nosuch-container-xyz")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error response from daemon: No such container: nosuch-container-xyz"
    assert engine.cli("stop", "nosuch-container-xyz").returncode == 1


def test_images_and_events(engine, busybox_image):
    table = engine.cli("images", check=True).stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:2] == ["busybox", "latest"] for line in table[1:])

    name = _name("ev")
    engine.cli("run", "--rm", "--name", name, busybox_image, "sh", "-c", "exit 2")
    events = engine.cli("events", "--since", "1m", "--until", "0s", "-f", f"container={name}",
                        check=True).stdout.splitlines()
    actions = [line.split()[2] for line in events]
    assert actions == ["create", "start", "die", "destroy"]
    assert "exitCode=2" in events[2]


def test_stop_events_come_in_dockers_order(engine, busybox_image):
    name = _name("stopev")
    engine.cli("run", "-d", "--name", name, busybox_image, "sleep", "30", check=True)
    try:
        engine.cli("stop", "-t", "0", name, check=True)
        events = engine.cli("events", "--since", "1m", "--until", "0s", "-f", f"container={name}",
                            check=True).stdout.splitlines()
        actions = [line.split()[2] for line in events]
        assert actions[-2:] == ["die", "stop"], actions
    finally:
        engine.cli("rm", "-f", name)


def test_sigint_during_foreground_run_reaches_the_container(engine, busybox_image):
    import signal
    import subprocess

    from tests.support.engine import PYTHON, REPO
    name = _name("sig")
    proc = subprocess.Popen(
        [PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}", "run", "--rm",
         "--name", name, busybox_image, "sh", "-c", "trap 'echo got INT; exit 7' INT; echo up; "
         "while true; do sleep 0.05; done"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout.readline() == b"up\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, out) == (7, b"got INT\n"), err
    assert _ps(engine, "-a", "-f", f"name={name}") == []


def test_restart_and_start_again_keep_the_writable_layer(engine, busybox_image):
    name = _name("again")
    engine.cli("run", "-d", "--name", name, busybox_image, "sh", "-c",
               "echo run >> /count; echo run $(wc -l < /count); sleep 30", check=True)
    try:
        assert engine.cli("restart", "-t", "0", name).returncode == 0
        assert _ps(engine, "-f", f"name={name}")[0]["State"] == "running"
        engine.cli("stop", "-t", "0", name, check=True)
        assert engine.cli("start", name).returncode == 0
        assert _ps(engine, "-f", f"name={name}")[0]["State"] == "running"
    finally:
        engine.cli("rm", "-f", name)


def _wait_for(what, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := what()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_start_and_restart_keep_earlier_logs_and_created_time(engine, busybox_image):
    """Docker keeps every run's output and the Created time: the same container runs again."""
    name = _name("keeps")
    engine.cli("run", "-d", "--name", name, busybox_image, "sh", "-c",
               "echo run >> /count; echo run $(wc -l < /count); exec sleep 30", check=True)
    try:
        before = json.loads(engine.cli("inspect", name, check=True).stdout)[0]
        assert _wait_for(lambda: engine.cli("logs", name).stdout == "run 1\n")
        engine.cli("stop", "-t", "0", name, check=True)
        assert engine.cli("start", name).returncode == 0
        assert _wait_for(lambda: engine.cli("logs", name).stdout == "run 1\nrun 2\n")
        assert engine.cli("restart", "-t", "0", name).returncode == 0
        assert _wait_for(lambda: engine.cli("logs", name).stdout == "run 1\nrun 2\nrun 3\n")
        assert engine.cli("logs", "--tail", "1", name, check=True).stdout == "run 3\n"
        after = json.loads(engine.cli("inspect", name, check=True).stdout)[0]
        assert after["Id"] == before["Id"] and after["Created"] == before["Created"]
        assert after["State"]["Running"] and after["State"]["StartedAt"] > before["State"]["StartedAt"]
        assert after["State"]["Pid"] != before["State"]["Pid"]
        assert [c["Names"] for c in _ps(engine, "-a", "-f", f"name={name}")] == [name]
    finally:
        engine.cli("rm", "-f", name)
