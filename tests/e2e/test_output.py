"""A container's output, byte for byte, through every path a user reads it by.

The berth CLI, the Engine gRPC API and the Docker API (the docker CLI when it is
installed, else a raw hijacked HTTP attach) each run a container in the foreground
and read its `logs` afterwards. One container writes 50 MB of short lines on stdout
while it writes 50 MB with no newline at all on stderr, so the two streams are
also checked apart; another writes all 256 byte values and lines cut short on
both streams; with -t, the terminal's bytes. A reader that stalls for seconds
loses nothing and holds the container up (back-pressure) rather than dropping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from berth.engine.v1 import engine_pb2
from berth.types.v1 import stdio_pb2
from tests.support.engine import PYTHON, REPO

MB50 = 50_000_000
LINE = b"abcdefghijklmnopqrstuvwxyz\n"
# stdout: short lines; stderr: one 50 MB "line" with no newline, written at the same time.
BIG = (f"yes abcdefghijklmnopqrstuvwxyz | head -c {MB50} & "
       f"head -c {MB50} /dev/zero | tr '\\0' a >&2; wait")
BIG_OUT = (LINE * (MB50 // len(LINE) + 1))[:MB50]
BIG_ERR = b"a" * MB50
# Every byte value (printf's octal escapes; % doubled), then lines cut short on both streams.
_ALL_BYTES = "".join("%%" if i == 0o45 else f"\\{i:03o}" for i in range(256))
SMALL = (f"printf '{_ALL_BYTES}'; printf 'e1\\ne2-partial' >&2; printf 'o1\\no2-'; "
         "printf 'e3' >&2; printf 'partial'")
SMALL_OUT = bytes(range(256)) + b"o1\no2-partial"
SMALL_ERR = b"e1\ne2-partiale3"
# Under -t the terminal turns \n into \r\n; a run with no newline comes through as written.
TTY = "head -c 3000000 /dev/zero | tr '\\0' t; printf 'x\\ny'"
TTY_OUT = b"t" * 3_000_000 + b"x\r\ny"
DOCKER = shutil.which("docker")
# The daemon default caps each log (20 MB x 5 files): these runs ask to keep everything.
KEEP_ALL = {"max-size": "-1"}
KEEP_ALL_FLAGS = ("--log-driver", "json-file", "--log-opt", "max-size=-1")


def same(got: bytes, want: bytes, what: str) -> None:
    """Equality that reports where two large outputs part (pytest's diff of 50 MB is no help)."""
    if got == want:
        return
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    pytest.fail(f"{what}: {len(got)} bytes, want {len(want)}; first difference at byte {at}: "
                f"{got[at:at + 40]!r} vs {want[at:at + 40]!r}")


def _name() -> str:
    return f"out-{uuid.uuid4().hex[:8]}"


# -- the three paths ------------------------------------------------------------------

class Cli:
    def __init__(self, engine):
        self._argv = [PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}"]

    def run(self, *args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
        return subprocess.run([*self._argv, *args], stdout=stdout, stderr=subprocess.PIPE,
                              timeout=300, cwd=REPO)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*self._argv, *args], stdout=subprocess.PIPE, cwd=REPO)

    def foreground(self, name: str, script: str, tty: bool = False) -> tuple[bytes, bytes, int]:
        r = self.run("run", *(["-t"] if tty else []), *KEEP_ALL_FLAGS, "--name", name, "busybox", "sh", "-c", script)
        return r.stdout, r.stderr, r.returncode

    def logs(self, name: str) -> tuple[bytes, bytes]:
        r = self.run("logs", name)
        assert r.returncode == 0, r.stderr[-500:]
        return r.stdout, r.stderr

    def remove(self, name: str) -> None:
        self.run("rm", "-f", name)


class Grpc:
    def __init__(self, engine):
        self._stub = engine.engine_stub()

    def foreground(self, name: str, script: str, tty: bool = False) -> tuple[bytes, bytes, int]:
        out, err, code = [], [], None
        for r in self._stub.RunContainer(engine_pb2.RunContainerRequest(attach=True, config=engine_pb2.ContainerConfig(
                image="busybox", name=name, cmd=["sh", "-c", script], tty=tty,
                log_config=engine_pb2.LogConfig(driver="json-file", options=KEEP_ALL))), timeout=300):
            if r.WhichOneof("event") == "output":
                (err if r.output.stream == stdio_pb2.OUTPUT_STREAM_STDERR else out).append(r.output.data)
            elif r.WhichOneof("event") == "exit":
                code = r.exit.exit_code
        return b"".join(out), b"".join(err), code

    def logs(self, name: str) -> tuple[bytes, bytes]:
        out, err = [], []
        for r in self._stub.GetContainerLogs(engine_pb2.GetContainerLogsRequest(id=name, tail=-1), timeout=300):
            (err if r.chunk.stream == stdio_pb2.OUTPUT_STREAM_STDERR else out).append(r.chunk.data)
        return b"".join(out), b"".join(err)

    def remove(self, name: str) -> None:
        self._stub.RemoveContainer(engine_pb2.RemoveContainerRequest(id=name, force=True))


class DockerCli:
    """The docker CLI (hijacked attach, then start, then wait), as `docker run` does it."""

    def __init__(self, engine):
        self._env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}",
                     "DOCKER_CONFIG": "/nonexistent-berth-docker-config"}
        self._env.pop("DOCKER_CONTEXT", None)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER, *args], env=self._env, capture_output=True, timeout=300)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([DOCKER, *args], env=self._env, stdout=subprocess.PIPE)

    def foreground(self, name: str, script: str, tty: bool = False) -> tuple[bytes, bytes, int]:
        # Without a terminal on our side the CLI still asks for one: its bytes come raw.
        r = self.run("run", *(["-t"] if tty else []), *KEEP_ALL_FLAGS, "--name", name, "busybox", "sh", "-c", script)
        return r.stdout, r.stderr, r.returncode

    def logs(self, name: str) -> tuple[bytes, bytes]:
        r = self.run("logs", name)
        assert r.returncode == 0, r.stderr[-500:]
        return r.stdout, r.stderr

    def remove(self, name: str) -> None:
        self.run("rm", "-f", name)


class RawDocker:
    """The Docker API by hand: create, hijacked attach, start, and the framed stream read."""

    def __init__(self, engine):
        self._path = engine.docker_socket

    def _request(self, method: str, path: str, body: bytes = b"", upgrade: bool = False) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(300)
        sock.connect(self._path)
        head = (f"{method} /v1.47{path} HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n")
        head += "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else "Connection: close\r\n"
        sock.sendall(head.encode() + b"\r\n" + body)
        return sock

    def _call(self, method: str, path: str, body: bytes = b"") -> bytes:
        sock = self._request(method, path, body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.split()[1][:1] == b"2", data[:500]
        return _unchunk(rest) if b"chunked" in head.lower() else rest

    def _stream(self, sock: socket.socket, tty: bool, head_read: bool = False) -> tuple[bytes, bytes]:
        data = bytearray()
        while chunk := sock.recv(1 << 20):
            data += chunk
        sock.close()
        head, rest = (b"", bytes(data)) if head_read else bytes(data).split(b"\r\n\r\n", 1)
        if b"chunked" in head.lower():
            rest = _unchunk(rest)
        if tty:
            return rest, b""
        return _demux(rest)

    def foreground(self, name: str, script: str, tty: bool = False) -> tuple[bytes, bytes, int]:
        import json
        self._call("POST", f"/containers/create?name={name}", json.dumps(
            {"Image": "busybox", "Cmd": ["sh", "-c", script], "Tty": tty,
             "HostConfig": {"LogConfig": {"Type": "json-file", "Config": KEEP_ALL}}}).encode())
        sock = self._request("POST", f"/containers/{name}/attach?stream=1&stdout=1&stderr=1", upgrade=True)
        # The 101 first: only then is the attach in place (as the docker CLI waits for it).
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self._call("POST", f"/containers/{name}/start")
        out, err = self._stream(sock, tty, head_read=True)
        code = json.loads(self._call("POST", f"/containers/{name}/wait"))["StatusCode"]
        return out, err, code

    def logs(self, name: str) -> tuple[bytes, bytes]:
        return self._stream(self._request("GET", f"/containers/{name}/logs?stdout=1&stderr=1"), False)

    def remove(self, name: str) -> None:
        self._call("DELETE", f"/containers/{name}?force=1")


def _unchunk(body: bytes) -> bytes:
    out, i = bytearray(), 0
    while True:
        j = body.index(b"\r\n", i)
        size = int(body[i:j], 16)
        if size == 0:
            return bytes(out)
        out += body[j + 2:j + 2 + size]
        i = j + 4 + size


def _demux(data: bytes) -> tuple[bytes, bytes]:
    """Docker's stdcopy framing: [stream, 0, 0, 0, big-endian length] + payload."""
    streams = {1: bytearray(), 2: bytearray()}
    i = 0
    while i < len(data):
        size = int.from_bytes(data[i + 4:i + 8], "big")
        streams[data[i]] += data[i + 8:i + 8 + size]
        i += 8 + size
    return bytes(streams[1]), bytes(streams[2])


PATHS = {"cli": Cli, "grpc": Grpc, "docker": DockerCli if DOCKER else RawDocker}


@pytest.fixture(params=list(PATHS))
def path(request, engine, busybox_image):
    return PATHS[request.param](engine)


# -- the round trips --------------------------------------------------------------------

def test_50mb_of_short_lines_and_50mb_without_newline_arrive_whole_then_logs_return_them(path):
    name = _name()
    try:
        out, err, code = path.foreground(name, BIG)
        assert code == 0
        same(out, BIG_OUT, "foreground stdout")
        same(err, BIG_ERR, "foreground stderr")
        out, err = path.logs(name)
        same(out, BIG_OUT, "logs stdout")
        same(err, BIG_ERR, "logs stderr")
    finally:
        path.remove(name)


def test_binary_output_and_partial_lines_keep_their_bytes_and_streams(path):
    name = _name()
    try:
        out, err, code = path.foreground(name, SMALL + "; exit 7")
        assert code == 7
        same(out, SMALL_OUT, "foreground stdout")
        same(err, SMALL_ERR, "foreground stderr")
        out, err = path.logs(name)
        same(out, SMALL_OUT, "logs stdout")
        same(err, SMALL_ERR, "logs stderr")
    finally:
        path.remove(name)


def test_with_a_terminal_the_output_is_the_terminals_bytes(path):
    name = _name()
    try:
        out, _, code = path.foreground(name, TTY, tty=True)
        assert code == 0
        same(out, TTY_OUT, "foreground with -t")
        out, _ = path.logs(name)
        same(out, TTY_OUT, "logs of a -t run")
    finally:
        path.remove(name)


# -- back-pressure ------------------------------------------------------------------------

STALL = f"head -c {MB50} /dev/zero | tr '\\0' s; echo END"


def test_a_reader_that_stalls_loses_nothing_and_holds_the_container_up(engine, busybox_image):
    """While the reader reads nothing, the container cannot finish writing: its writes wait
    (no buffer on the way holds 50 MB); once the reader goes on, every byte arrives.
    Through the docker CLI (hijacked socket, then the gateway's and the node's gRPC
    streams, then conmon), else the berth CLI (its HTTP/2 window, the same streams)."""
    c = DockerCli(engine) if DOCKER else Cli(engine)
    name = _name()
    proc = c.popen("run", "--name", name, "busybox", "sh", "-c", STALL)
    try:
        first = proc.stdout.read(1)  # the run is under way
        stub = engine.engine_stub()
        time.sleep(3)  # the stall itself
        state = stub.InspectContainer(engine_pb2.InspectContainerRequest(id=name)).container.state
        assert state.running, "the container finished writing while nobody read its output"
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0
        same(first + rest, b"s" * MB50 + b"END\n", "stalled reader's output")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        Cli(engine).remove(name)


# -- log drivers as the APIs take them -------------------------------------------------------

def test_log_driver_and_options_are_honoured_shown_and_unknown_ones_refused(engine, busybox_image):
    cli, name = Cli(engine), _name()
    try:
        r = cli.run("create", "--name", name, "--log-driver", "local", "--log-opt", "max-size=1m",
                    "busybox", "true")
        assert r.returncode == 0, r.stderr
        info = engine.engine_stub().InspectContainer(engine_pb2.InspectContainerRequest(id=name)).container
        assert info.log_config.driver == "local"
        assert dict(info.log_config.options) == {"max-size": "1m", "max-file": "5", "compress": "true"}
    finally:
        cli.remove(name)
    r = cli.run("run", "--log-driver", "journald-ish", "busybox", "true")
    assert r.returncode != 0 and b"journald-ish" in r.stderr
    r = cli.run("run", "--log-opt", "max-sise=1m", "busybox", "true")
    assert r.returncode != 0 and b"max-sise" in r.stderr


def test_docker_hostconfig_logconfig_is_honoured_and_unknown_ones_are_400(engine, busybox_image):
    import json
    raw, name = RawDocker(engine), _name()
    try:
        raw._call("POST", f"/containers/create?name={name}", json.dumps({
            "Image": "busybox", "Cmd": ["true"],
            "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {"max-file": "3", "max-size": "2m"}}},
        }).encode())
        inspected = json.loads(raw._call("GET", f"/containers/{name}/json"))
        assert inspected["HostConfig"]["LogConfig"] == {
            "Type": "json-file", "Config": {"max-file": "3", "max-size": "2m"}}
    finally:
        raw.remove(name)
    for log_config, word in (({"Type": "syslogd"}, b"syslogd"),
                             ({"Type": "json-file", "Config": {"max-sise": "1m"}}, b"max-sise")):
        sock = raw._request("POST", "/containers/create", json.dumps(
            {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"LogConfig": log_config}}).encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.1 400") and word in data, data[:300]


def test_an_attached_exec_delivers_every_byte_on_its_own_stream(engine, busybox_image):
    """An attached exec's output reaches its caller only (conmon logs none of it), whole:
    50 MB of short lines on stdout beside 50 MB with no newline on stderr, then every byte
    value and partial lines."""
    stub = engine.engine_stub()
    name = _name()
    engine.cli("run", "-d", "--name", name, busybox_image, "sleep", "600", check=True)
    try:
        for script, want_out, want_err, want_code in ((BIG, BIG_OUT, BIG_ERR, 0),
                                                      (SMALL + "; exit 7", SMALL_OUT, SMALL_ERR, 7)):
            exec_id = stub.CreateExec(engine_pb2.CreateExecRequest(container=name, cmd=["sh", "-c", script])).id
            out, err, code = [], [], None
            for r in stub.StartExec(iter([engine_pb2.StartExecRequest(
                    start=engine_pb2.ExecStartParams(exec_id=exec_id))]), timeout=300):
                if r.WhichOneof("msg") == "output":
                    (err if r.output.stream == stdio_pb2.OUTPUT_STREAM_STDERR else out).append(r.output.data)
                elif r.WhichOneof("msg") == "exit_code":
                    code = r.exit_code
            assert code == want_code
            same(b"".join(out), want_out, "exec stdout")
            same(b"".join(err), want_err, "exec stderr")
    finally:
        stub.RemoveContainer(engine_pb2.RemoveContainerRequest(id=name, force=True))
