"""The healthcheck state machine with a fake probe: statuses, streaks, start period, log."""

from __future__ import annotations

import asyncio

from berth.types.v1 import healthcheck_pb2
from services.gateway.backends import health

MS = 1_000_000


def test_settings_merge_image_and_container():
    image = healthcheck_pb2.HealthConfig(test=["CMD", "check"], interval=2000 * MS, retries=5)
    mine = healthcheck_pb2.HealthConfig(test=["CMD-SHELL", "test -f /ok"], interval=200 * MS)
    s = health.settings(image, mine)
    assert s.argv == ("/bin/sh", "-c", "test -f /ok")
    assert (s.interval, s.retries, s.timeout, s.start_interval) == (0.2, 5, 30.0, 5.0)
    assert health.settings(image, None).argv == ("check",)
    assert health.settings(image, healthcheck_pb2.HealthConfig(test=["NONE"])) is None
    assert health.settings(None, None) is None


def _run(script, check, until):
    """Probe results come from `script` (exit codes in order); returns published statuses."""
    published, results = [], list(script)

    async def probe(cid, argv, timeout):
        code = results.pop(0) if results else 0
        if code == "hang":
            await asyncio.sleep(10)
        return code, f"out{code}"

    async def main():
        monitors = health.Monitors(probe, lambda cid, status: published.append(status),
                                   asyncio.ensure_future)
        monitors.start("c1", check)
        while not until(monitors.state("c1"), published):
            await asyncio.sleep(0.01)
        state = monitors.state("c1")
        monitors.stop("c1", forget=True)
        assert monitors.state("c1") is None
        return state
    state = asyncio.run(asyncio.wait_for(main(), 5))
    return published, state


def test_healthy_then_unhealthy_after_retries():
    check = health.Settings(argv=("x",), interval=0.02, timeout=1, retries=2, start_period=0,
                            start_interval=0.02)
    published, state = _run([0, 1, 1, 1], check, lambda s, p: len(p) == 2)
    assert published == ["healthy", "unhealthy"]
    assert state.status == "unhealthy" and state.failing_streak == 2
    assert [e.exit_code for e in state.log] == [0, 1, 1]
    assert state.log[0].output == "out0"


def test_failures_in_start_period_do_not_count_and_use_start_interval():
    # Start period of 0.3 s probed every 0.02 s: many failures, still "starting".
    check = health.Settings(argv=("x",), interval=5, timeout=1, retries=1, start_period=0.3,
                            start_interval=0.02)
    published, state = _run([1] * 8 + [0], check, lambda s, p: p == ["healthy"])
    assert state.status == "healthy" and state.failing_streak == 0
    assert len(state.log) == health.KEEP_RESULTS


def test_timeout_is_a_failure():
    check = health.Settings(argv=("x",), interval=0.02, timeout=0.05, retries=1, start_period=0,
                            start_interval=0.02)
    published, state = _run(["hang"], check, lambda s, p: p == ["unhealthy"])
    assert state.log[0].exit_code == -1 and "exceeded timeout" in state.log[0].output
