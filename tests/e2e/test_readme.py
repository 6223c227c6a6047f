"""README.md's "Using it" commands, run as written against a throwaway engine.

The commands are read from the README, so the test fails when they drift from
what berth does. What a test cannot share with a user's machine is changed,
and only that: /run/berth becomes this engine's run root (berthd takes it and
its data root, bridge and nftables table from the environment, BERTH_HOST and
DOCKER_HOST point at its sockets), the host ports 5000 and 8080 become free
ones, and the files the commands write (rootfs.tar, the registry's root) go to
a temporary directory.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from tests.support.engine import REPO, Engine

README = os.path.join(REPO, "README.md")


def using_it_blocks() -> list[list[str]]:
    """The indented command blocks of the "Using it" section, comments stripped."""
    with open(README) as f:
        text = f.read()
    section = re.search(r"^## Using it\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Using it' section"
    blocks, current = [], []
    for line in section.group(1).splitlines():
        if line.startswith("    ") and line.strip():
            current.append(re.sub(r"\s{2,}#\s.*$", "", line.strip()))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    """The README's commands in order, in this repo, against `engine`."""

    def __init__(self, engine: Engine, tmp: str):
        self.engine = engine
        self.tmp = tmp
        self.registry_port, self.web_port = free_port(), free_port()
        self.background: list[subprocess.Popen] = []
        self.env = {**os.environ, **engine.config.env(),
                    "BERTH_HOST": f"unix://{engine.gateway_socket}",
                    "DOCKER_HOST": f"unix://{engine.docker_socket}",
                    "BERTH_CONFIG": os.path.join(tmp, "berth-config")}

    def adapt(self, command: str) -> str:
        for old, new in (("/run/berth", self.engine.config.run_root),
                         ("127.0.0.1:5000", f"127.0.0.1:{self.registry_port}"),
                         ("8080:", f"{self.web_port}:"), (":8080/", f":{self.web_port}/"),
                         ("/tmp/berth-registry", os.path.join(self.tmp, "registry")),
                         ("rootfs.tar", os.path.join(self.tmp, "rootfs.tar"))):
            command = command.replace(old, new)
        return command

    def run(self, line: str) -> str:
        command = self.adapt(line)
        if command.endswith("&"):
            return self.start(line, command[:-1].strip())
        if " -it " in command:
            return self.interactive(command)
        result = subprocess.run(["bash", "-c", command], cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{line!r} failed:\n{result.stdout}{result.stderr}"
        return result.stdout

    def start(self, line: str, command: str) -> str:
        if "berthd" in command:
            self.engine.start(["bash", "-c", f"exec {command}"])
            return ""
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=REPO, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.background.append(proc)
        assert "berth-registry" in command, f"no readiness check for {line!r}"
        url = f"http://127.0.0.1:{self.registry_port}/v2/"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"{line!r} exited with {proc.returncode}"
            try:
                urllib.request.urlopen(url, timeout=1)
                return ""
            except OSError:
                assert time.monotonic() < deadline, f"{line!r}: {url} does not answer"
                time.sleep(0.1)

    def interactive(self, command: str) -> str:
        """Runs `command` on a terminal: at the shell's prompt types a line, then `exit`."""
        primary, secondary = os.openpty()
        proc = subprocess.Popen(["bash", "-c", command], cwd=REPO, env=self.env,
                                stdin=secondary, stdout=secondary, stderr=secondary,
                                start_new_session=True)
        os.close(secondary)
        shown = b""

        def read_until(done) -> None:
            nonlocal shown
            deadline = time.monotonic() + 60
            while not done(shown) and time.monotonic() < deadline:
                if select.select([primary], [], [], 1)[0]:
                    try:
                        chunk = os.read(primary, 4096)
                    except OSError:  # EIO: the terminal closed, the process is gone
                        return
                    if not chunk:
                        return
                    shown += chunk
                elif proc.poll() is not None:
                    return

        try:
            read_until(lambda out: out.rstrip().endswith(b"#") or b"# \x1b" in out)
            # The terminal is raw now: Enter is a carriage return.
            os.write(primary, b"echo readme-$((6*7))\r")
            read_until(lambda out: b"readme-42" in out)
            os.write(primary, b"exit\r")
            read_until(lambda out: False)
        finally:
            os.close(primary)
        text = shown.decode(errors="replace")
        assert proc.wait(timeout=30) == 0, f"{command!r} failed:\n{text}"
        return text

    def close(self) -> None:
        for proc in self.background:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def session(tmp_path):
    engine = Engine()
    # Its roots now, so the commands' environment can name them before berthd starts.
    engine.root = tempfile.mkdtemp(prefix="/tmp/bt-")
    sess = Session(engine, str(tmp_path))
    try:
        yield sess
    finally:
        sess.close()
        engine.stop()


def test_using_it_runs_as_written(session):
    blocks = using_it_blocks()
    berth_block, registry_block = blocks[0], blocks[1]
    assert berth_block[0].startswith(".venv/bin/berthd &"), berth_block

    shown = {line: session.run(line) for line in berth_block + registry_block}

    log = session.engine.log_text()
    assert "Warning" not in log and "Traceback" not in log, log
    outputs = list(shown.values())
    assert "hello\n" in outputs, shown
    assert any(out.strip() == "hello from web" for out in outputs), shown
    assert any(re.search(r"\bweb\b", out) and "Up" in out for out in outputs), shown
    assert any("readme-42" in out for out in outputs), shown
    pulled = [out for line, out in shown.items() if " pull " in line]
    assert pulled and "1.2" in pulled[0], shown


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI installed")
def test_docker_example_runs_as_written(session):
    berth_block, docker_block = using_it_blocks()[0], using_it_blocks()[2]
    for line in berth_block[:3]:  # berthd, the rootfs, the import
        session.run(line)
    assert [session.run(line) for line in docker_block] == ["hi\n"]
