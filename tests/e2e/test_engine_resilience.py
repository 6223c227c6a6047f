"""Containers outlive the engine: berthd restarts and SIGKILLed services.

The issue's promise: with containers running, restart berthd and kill -9 each
service in turn; every container keeps running, and afterwards list, logs,
stop and rm work, with the exit codes of containers that exited meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.support.engine import Engine
from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes

pytestmark = pytest.mark.slow


def import_busybox(engine: Engine, tmp_path) -> str:
    tar = rootfs_tar_bytes(make_busybox_rootfs(str(tmp_path / "rootfs")))
    engine.cli("import", "-", "busybox:latest", "-c", 'CMD ["sh"]', input=tar, check=True)
    return "busybox:latest"


def inspect(engine: Engine, name: str) -> dict:
    out = engine.cli("inspect", name, check=True).stdout
    return json.loads(out)[0]


def running_pids(engine: Engine, names: list[str]) -> dict[str, int]:
    return {n: inspect(engine, n)["State"]["Pid"] for n in names}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_containers_survive_berthd_restart_and_service_kills(fresh_engine, tmp_path):
    engine = fresh_engine
    image = import_busybox(engine, tmp_path)
    runners = [f"keep{i}" for i in range(8)]
    for name in runners:
        engine.cli("run", "-d", "--name", name, image,
                   "sh", "-c", f"echo started {name}; while true; do sleep 1; done", check=True)
    # Two that exit on their own while the engine is down.
    for name, code in (("quits3", 3), ("quits7", 7)):
        engine.cli("run", "-d", "--name", name, image, "sh", "-c", f"sleep 2; exit {code}", check=True)
    pids = running_pids(engine, runners)
    assert all(p > 0 and alive(p) for p in pids.values()), pids

    # Engine fully down while two containers exit, then back.
    assert engine.terminate() == 0
    time.sleep(3)
    assert all(alive(p) for p in pids.values()), "a container died with berthd"
    engine.start()

    for service in ("image", "network", "volume", "container", "gateway"):
        old = engine.kill_service(service, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if engine.pid_of(service) != old:
                    break
            except Exception:
                pass
            time.sleep(0.1)
        engine.wait_serving(service, 30)
        engine.wait_serving("gateway", 30)
        assert all(alive(p) for p in pids.values()), f"a container died with the {service} service"

    assert running_pids(engine, runners) == pids
    listed = engine.cli("ps", "-a", "--format", "json", check=True).stdout.splitlines()
    assert len(listed) == 10
    assert inspect(engine, "quits3")["State"]["ExitCode"] == 3
    assert inspect(engine, "quits7")["State"]["ExitCode"] == 7
    assert inspect(engine, "quits7")["State"]["Status"] == "exited"
    assert "started keep0" in engine.cli("logs", "keep0", check=True).stdout

    engine.cli("stop", "-t", "1", *runners, check=True)
    assert not any(alive(p) for p in pids.values())
    engine.cli("rm", *runners, "quits3", "quits7", check=True)
    assert engine.cli("ps", "-a", "-q", check=True).stdout.strip() == ""
