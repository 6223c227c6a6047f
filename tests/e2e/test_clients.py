"""The generated Go and Node clients, driven by their examples against a live engine.

Each example runs a container through the gateway's Engine API and prints the
engine's events about it until its `die`. `make client-examples` builds them
(the test runs it, so the examples tested are the ones in the tree).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.support.engine import REPO

EXAMPLES = {
    "go": [os.path.join(REPO, ".gopath", "bin", "run-and-watch")],
    "node": ["node", os.path.join(REPO, "clients", "node", "dist", "examples", "run-and-watch.js")],
}


@pytest.fixture(scope="module")
def built():
    result = subprocess.run(["make", "-s", "client-examples"], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"make client-examples failed:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("lang", sorted(EXAMPLES))
def test_example_runs_a_container_and_streams_its_events(lang, built, engine, busybox_image):
    argv = EXAMPLES[lang] + ["--socket" if lang == "node" else "-socket", engine.gateway_socket,
                             busybox_image, "sh", "-c", "echo hi; exit 3"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{lang} example failed:\n{result.stdout}{result.stderr}"

    lines = result.stdout.splitlines()
    container = re.fullmatch(r"container ([0-9a-f]{64})", lines[0])
    assert container, result.stdout
    cid = container.group(1)
    events = [line.split()[1] for line in lines if line.startswith("event ")]
    assert all(line.split()[2] == cid for line in lines if line.startswith("event ")), result.stdout
    assert events[:3] == ["create", "start", "die"], result.stdout
    assert lines[-1] == "exit code 3", result.stdout


@pytest.mark.parametrize("lang", sorted(EXAMPLES))
def test_example_default_socket_follows_berth_run_root(lang, built, engine, busybox_image):
    env = {**os.environ, "BERTH_RUN_ROOT": engine.config.run_root}
    result = subprocess.run(EXAMPLES[lang] + [busybox_image, "true"], capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, f"{lang} example failed:\n{result.stdout}{result.stderr}"
    assert result.stdout.splitlines()[-1] == "exit code 0", result.stdout
