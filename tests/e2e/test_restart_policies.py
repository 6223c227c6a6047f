"""Restart policies through the CLI: on-failure counts, always survives berthd, stop ends it."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import uuid

import pytest

from tests.support.rootfs import busybox_available, make_busybox_rootfs, rootfs_tar_bytes


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _inspect(engine, ref: str) -> dict:
    return json.loads(engine.cli("inspect", "--type", "container", ref, check=True).stdout)[0]


def _wait_for(what, timeout: float = 15.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def _events(engine, since: float, name: str) -> list[str]:
    out = engine.cli("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                     "-f", f"container={name}", "--format", "json", check=True).stdout
    return [json.loads(line)["Action"] for line in out.splitlines()]


@pytest.fixture
def fresh_busybox(fresh_engine):
    if not busybox_available():
        pytest.skip("busybox-static is not installed")
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-rootfs-") as root:
        tar = rootfs_tar_bytes(make_busybox_rootfs(root))
    fresh_engine.cli("import", "-", "busybox:latest", "-c", 'CMD ["sh"]', input=tar, check=True)
    return "busybox:latest"


def test_on_failure_restarts_exactly_n_times(engine, busybox_image):
    name = _name("flaky")
    since = time.time()
    run = engine.cli("run", "-d", "--name", name, "--restart", "on-failure:3", busybox_image,
                     "sh", "-c", "echo try; exit 3")
    assert run.returncode == 0, run.stderr
    try:
        # 100 + 200 + 400 ms of back-off, then it stays down.
        assert _wait_for(lambda: _inspect(engine, name)["RestartCount"] == 3, timeout=20)
        time.sleep(1.5)
        state = _inspect(engine, name)
        assert state["RestartCount"] == 3
        assert state["State"]["Status"] == "exited" and state["State"]["ExitCode"] == 3
        assert state["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
        # Every run's output: a restart runs the same container again, log and all.
        assert engine.cli("logs", name, check=True).stdout == "try\n" * 4
        actions = _events(engine, since, name)
        assert actions.count("die") == 4 and actions.count("restart") == 3
        assert actions[:3] == ["create", "start", "die"]
        assert actions[-1] == "die"
    finally:
        engine.cli("rm", "-f", name)


def test_on_failure_keeps_writable_layer_and_ignores_success(engine, busybox_image):
    name = _name("layer")
    # Fails the first time only: the file it leaves in its writable layer is there on the restart.
    script = "if [ -f /ran ]; then echo second; exit 0; fi; touch /ran; echo first; exit 1"
    engine.cli("run", "-d", "--name", name, "--restart", "on-failure", busybox_image, "sh", "-c", script,
               check=True)
    try:
        assert _wait_for(lambda: engine.cli("logs", name).stdout.endswith("second\n"))
        time.sleep(0.5)
        state = _inspect(engine, name)
        assert state["RestartCount"] == 1 and state["State"]["ExitCode"] == 0
        assert state["State"]["Status"] == "exited"
        assert engine.cli("logs", name, check=True).stdout == "first\nsecond\n"
    finally:
        engine.cli("rm", "-f", name)


def test_stop_ends_always_policy_and_start_resumes_it(engine, busybox_image):
    name = _name("always")
    engine.cli("run", "-d", "--name", name, "--restart", "always", busybox_image, "sh", "-c", "sleep 0.3",
               check=True)
    try:
        assert _wait_for(lambda: _inspect(engine, name)["RestartCount"] >= 1)
        engine.cli("stop", "-t", "1", name, check=True)
        count = _inspect(engine, name)["RestartCount"]
        time.sleep(1.5)
        state = _inspect(engine, name)
        assert state["State"]["Status"] == "exited"
        assert state["RestartCount"] == count
        engine.cli("start", name, check=True)
        assert _wait_for(lambda: _inspect(engine, name)["RestartCount"] >= 1)
    finally:
        engine.cli("rm", "-f", name)


def test_update_restart_on_running_container(engine, busybox_image):
    name = _name("upd")
    engine.cli("run", "-d", "--name", name, busybox_image, "sh", "-c", "sleep 2; exit 2", check=True)
    try:
        assert engine.cli("update", "--restart", "on-failure:1", name, check=True).stdout.strip() == name
        assert _inspect(engine, name)["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
        assert _wait_for(lambda: _inspect(engine, name)["RestartCount"] == 1)
        bad = engine.cli("update", "--restart", "sometimes", name)
        assert bad.returncode != 0 and "invalid restart policy" in bad.stderr
    finally:
        engine.cli("rm", "-f", name)


@pytest.mark.parametrize("policy, message", [
    ("sometimes", "invalid restart policy 'sometimes'"),
    ("on-failure:-1", "maximum retry count can't be negative"),
    ("always:3", "maximum retry count can only be used with 'on-failure'"),
])
def test_bad_restart_policies_change_nothing(engine, busybox_image, policy, message):
    name = _name("bad")
    before = engine.cli("ps", "-aq", "--no-trunc", check=True).stdout
    result = engine.cli("run", "-d", "--name", name, "--restart", policy, busybox_image, "true")
    assert result.returncode == 125
    assert message in result.stderr
    assert engine.cli("ps", "-aq", "--no-trunc", check=True).stdout == before


def test_always_container_back_after_berthd_restarts(fresh_engine, fresh_busybox):
    eng = fresh_engine
    eng.cli("run", "-d", "--name", "keeper", "--restart", "always", fresh_busybox, "sleep", "300", check=True)
    eng.cli("run", "-d", "--name", "dies", "--restart", "always", fresh_busybox, "sleep", "300", check=True)
    eng.cli("run", "-d", "--name", "held", "--restart", "unless-stopped", fresh_busybox, "sleep", "300",
            check=True)
    eng.cli("stop", "-t", "0", "held", check=True)
    keeper_pid = _inspect(eng, "keeper")["State"]["Pid"]
    dies_pid = _inspect(eng, "dies")["State"]["Pid"]

    eng.terminate()
    # Its process dies while berth is down: berth restarts it when it comes back.
    os.kill(dies_pid, signal.SIGKILL)
    eng.start()

    keeper = _inspect(eng, "keeper")
    assert keeper["State"]["Running"] and keeper["State"]["Pid"] == keeper_pid
    assert _wait_for(lambda: _inspect(eng, "dies")["State"]["Running"])
    dies = _inspect(eng, "dies")
    assert dies["State"]["Pid"] != dies_pid and dies["RestartCount"] == 1
    # unless-stopped that the user stopped stays stopped across the engine restart.
    time.sleep(0.5)
    assert _inspect(eng, "held")["State"]["Status"] == "exited"

    eng.restart()
    assert _inspect(eng, "dies")["State"]["Running"]
    assert _inspect(eng, "held")["State"]["Status"] == "exited"
