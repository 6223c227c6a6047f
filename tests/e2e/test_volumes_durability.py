"""Volume data and "in use" survive engine restarts and SIGKILLs; 100 runs leave no mounts."""

from __future__ import annotations

import signal
import tempfile
import time

import pytest

from tests.support.engine import mounts_under
from tests.support.rootfs import busybox_available, make_busybox_rootfs, rootfs_tar_bytes


def ok(engine, *args, input=None) -> str:
    result = engine.cli(*args, input=input)
    assert result.returncode == 0, f"berth {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def retry_ok(engine, *args, timeout: float = 30.0) -> str:
    """While berthd restarts a killed service, calls may fail for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        result = engine.cli(*args)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, f"berth {' '.join(args)}: {result.stdout}{result.stderr}"
            return result.stdout
        time.sleep(0.2)


@pytest.fixture
def busybox_engine(fresh_engine):
    if not busybox_available():
        pytest.skip("busybox-static is not installed")
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-rootfs-") as root:
        tar = rootfs_tar_bytes(make_busybox_rootfs(root))
    ok(fresh_engine, "import", "-", "busybox:latest", "-c", 'CMD ["sh"]', input=tar)
    return fresh_engine


def test_data_and_use_survive_restart_and_kills(busybox_engine):
    eng = busybox_engine
    ok(eng, "run", "--rm", "-v", "keep:/d", "busybox", "sh", "-c", "echo 1 > /d/f")
    ok(eng, "volume", "create", "-o", "type=tmpfs", "-o", "o=size=1m", "scratch")
    ok(eng, "run", "-d", "--name", "holder", "-v", "keep:/d", "-v", "scratch:/s", "busybox", "sh", "-c",
       "echo in-tmpfs > /s/f; sleep 300")

    eng.restart()
    assert ok(eng, "run", "--rm", "-v", "keep:/d", "busybox", "cat", "/d/f") == "1\n"
    assert "volume is in use" in eng.cli("volume", "rm", "keep").stderr

    eng.kill_service("volume", signal.SIGKILL)
    retry_ok(eng, "run", "--rm", "-v", "keep:/d", "busybox", "sh", "-c", "echo 2 >> /d/f")
    # The holder still runs, its tmpfs volume still mounted and shared, after the kill.
    assert retry_ok(eng, "run", "--rm", "-v", "scratch:/s", "busybox", "cat", "/s/f") == "in-tmpfs\n"
    assert "volume is in use" in eng.cli("volume", "rm", "keep").stderr

    # SIGKILL of berthd takes its services down; a new berthd on the same roots finds it all.
    eng.proc.send_signal(signal.SIGKILL)
    eng.proc.wait()
    eng.terminate()
    eng.start()
    assert retry_ok(eng, "run", "--rm", "-v", "keep:/d", "busybox", "cat", "/d/f") == "1\n2\n"
    ok(eng, "rm", "-f", "holder")
    ok(eng, "volume", "rm", "keep", "scratch")
    assert not [m for m in mounts_under(eng.root) if "/volume/" in m]


@pytest.mark.slow
def test_hundred_runs_with_volumes_leave_no_mounts(busybox_engine):
    eng = busybox_engine
    ok(eng, "volume", "create", "-o", "type=tmpfs", "-o", "o=size=1m", "tv")
    ok(eng, "run", "--rm", "-v", "leak:/d", "busybox", "true")
    before = sorted(mounts_under(eng.root))
    with tempfile.TemporaryDirectory(prefix="/tmp/bt-bind-") as host:
        for i in range(100):
            # Named, anonymous, tmpfs volume, bind and tmpfs mounts in one container.
            ok(eng, "run", "--rm", "-v", "leak:/d", "-v", "/anon", "-v", "tv:/tv",
               "-v", f"{host}:/h", "--tmpfs", "/t", "busybox", "sh", "-c",
               f"echo {i} >> /d/log; echo {i} > /h/last")
    assert sorted(mounts_under(eng.root)) == before
    assert ok(eng, "volume", "ls", "-q").split() == ["leak", "tv"]
    assert ok(eng, "run", "--rm", "-v", "leak:/d", "busybox", "wc", "-l", "/d/log").split()[0] == "100"
    ok(eng, "volume", "rm", "leak", "tv")
