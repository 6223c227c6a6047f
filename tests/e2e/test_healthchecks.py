"""Healthchecks through the CLI: starting, healthy, unhealthy, in ps, inspect and events."""

from __future__ import annotations

import json
import time
import uuid

from tests.e2e.test_restart_policies import _inspect, _wait_for


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _health(engine, name: str) -> dict:
    return _inspect(engine, name)["State"].get("Health") or {}


def test_health_turns_healthy_then_unhealthy(engine, busybox_image):
    name = _name("hc")
    since = time.time()
    # The container creates /tmp/ok, and deletes it once the test has seen it healthy.
    engine.cli("run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ok && echo fine",
               "--health-interval", "200ms", "--health-retries", "2", "--health-timeout", "2s",
               busybox_image, "sh", "-c",
               "touch /tmp/ok; while [ ! -f /tmp/flip ]; do sleep 0.1; done; rm /tmp/ok; sleep 300",
               check=True)
    try:
        first = _health(engine, name)
        assert first.get("Status") in ("starting", "healthy")
        assert _wait_for(lambda: _health(engine, name).get("Status") == "healthy", timeout=60)
        healthy = _health(engine, name)
        assert healthy["FailingStreak"] == 0
        assert healthy["Log"][-1]["ExitCode"] == 0 and healthy["Log"][-1]["Output"] == "fine\n"
        row = json.loads(engine.cli("ps", "--format", "json", "-f", f"name={name}", check=True).stdout)
        assert row["Status"].startswith("Up ") and row["Status"].endswith("(healthy)")

        engine.cli("exec", name, "touch", "/tmp/flip", check=True)
        assert _wait_for(lambda: _health(engine, name).get("Status") == "unhealthy", timeout=60)
        unhealthy = _health(engine, name)
        assert unhealthy["FailingStreak"] >= 2
        assert unhealthy["Log"][-1]["ExitCode"] == 1
        # Probes go on while it is unhealthy; the log keeps the last five (docker's).
        assert _wait_for(lambda: len(_health(engine, name)["Log"]) == 5, timeout=60)
        last = _health(engine, name)["Log"][-1]["Start"]
        assert _wait_for(lambda: _health(engine, name)["Log"][-1]["Start"] != last, timeout=60)
        assert len(_health(engine, name)["Log"]) == 5
        assert "(unhealthy)" in engine.cli("ps", "-f", f"name={name}", check=True).stdout

        out = engine.cli("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                         "-f", f"container={name}", "-f", "event=health_status", "--format", "json",
                         check=True).stdout
        actions = [json.loads(line)["Action"] for line in out.splitlines()]
        assert actions == ["health_status: healthy", "health_status: unhealthy"]
    finally:
        engine.cli("rm", "-f", name)


def test_start_period_uses_start_interval_and_no_healthcheck(engine, busybox_image):
    name, off = _name("hcs"), _name("hcoff")
    # Long interval, short start interval: within the start period it is probed quickly,
    # and failures there do not make it unhealthy.
    engine.cli("run", "-d", "--name", name, "--health-cmd", "test -f /tmp/ready",
               "--health-interval", "1h", "--health-start-period", "300s", "--health-start-interval", "200ms",
               "--health-retries", "1", busybox_image, "sleep", "300", check=True)
    engine.cli("run", "-d", "--name", off, "--no-healthcheck", busybox_image, "sleep", "300", check=True)
    try:
        # Failed probes inside the start period leave it "starting" (retries is 1).
        assert _wait_for(lambda: any(e["ExitCode"] == 1 for e in _health(engine, name).get("Log", [])),
                         timeout=60)
        assert _health(engine, name)["Status"] == "starting"
        engine.cli("exec", name, "touch", "/tmp/ready", check=True)
        # Probed at the start interval, not the 1 h interval: healthy soon after.
        assert _wait_for(lambda: _health(engine, name).get("Status") == "healthy", timeout=60)
        log = _health(engine, name)["Log"]
        assert any(e["ExitCode"] == 1 for e in log) and log[-1]["ExitCode"] == 0
        assert "Health" not in _inspect(engine, off)["State"]
        assert _inspect(engine, off)["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    finally:
        engine.cli("rm", "-f", name, off)


def test_bad_health_flags(engine, busybox_image):
    bad = engine.cli("run", "-d", "--health-interval", "soon", busybox_image, "true")
    assert bad.returncode == 125 and "invalid duration" in bad.stderr
    both = engine.cli("run", "-d", "--no-healthcheck", "--health-cmd", "true", busybox_image, "true")
    assert both.returncode == 125 and "conflicts" in both.stderr
