"""Containers in depth, through the CLI with real processes: exec, terminals and stdin,
attach and detach keys, pause, top, stats, update, cp, export, and their events.

Terminal sessions run `berth` on a pseudo-terminal made here with the pty
module, the way a person's terminal would drive it.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import signal
import struct
import subprocess
import tarfile
import tempfile
import termios
import time

import pytest

from tests.support.engine import PYTHON, REPO


@pytest.fixture
def ctr(engine, busybox_image):
    """A running busybox container, removed afterwards."""
    cid = engine.cli("run", "-d", busybox_image, "sleep", "600", check=True).stdout.strip()
    yield cid
    engine.cli("rm", "-f", cid)


def _running(engine, cid) -> bool:
    return json.loads(engine.cli("inspect", cid, check=True).stdout)[0]["State"]["Running"]


# -- exec ---------------------------------------------------------------------------------

def test_exec_exit_codes_output_env_workdir_user(engine, ctr):
    r = engine.cli("exec", ctr, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert engine.cli("exec", ctr, "true").returncode == 0
    r = engine.cli("exec", "-e", "GREETING=hi there", "-w", "/etc", "-u", "nobody", ctr,
                   "sh", "-c", 'echo "$GREETING"; pwd; id -u')
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["hi there", "/etc", "65534"]
    # The command's own flags are its own, not berth's.
    assert engine.cli("exec", ctr, "ls", "-d", "/etc").stdout == "/etc\n"
    r = engine.cli("exec", ctr, "no-such-binary")
    assert r.returncode == 127, (r.returncode, r.stderr)
    assert "not found" in r.stderr or "no such file" in r.stderr.lower()


def test_exec_detached_is_listed_while_it_runs_and_keeps_its_exit_code(engine, ctr):
    from berth.engine.v1 import engine_pb2 as pb
    stub = engine.engine_stub()
    exec_id = stub.CreateExec(pb.CreateExecRequest(container=ctr, cmd=["sh", "-c", "sleep 1; exit 4"])).id
    before = stub.InspectExec(pb.InspectExecRequest(id=exec_id)).exec
    assert not before.running and not before.exited
    list(stub.StartExec(iter([pb.StartExecRequest(start=pb.ExecStartParams(exec_id=exec_id, detach=True))])))
    running = stub.InspectExec(pb.InspectExecRequest(id=exec_id)).exec
    assert running.running and running.pid > 0 and list(running.cmd) == ["sh", "-c", "sleep 1; exit 4"]
    deadline = time.time() + 10
    while time.time() < deadline:
        info = stub.InspectExec(pb.InspectExecRequest(id=exec_id)).exec
        if info.exited:
            break
        time.sleep(0.1)
    assert info.exited and info.exit_code == 4 and not info.running


def test_exec_into_stopped_container_is_refused(engine, busybox_image):
    cid = engine.cli("run", "-d", busybox_image, "true", check=True).stdout.strip()
    try:
        engine.cli("wait", cid, check=True)
        r = engine.cli("exec", cid, "echo", "hi")
        assert r.returncode != 0
        assert f"container {cid} is not running" in r.stderr
    finally:
        engine.cli("rm", "-f", cid)


# -- stdin ----------------------------------------------------------------------------------

def test_stdin_eof_reaches_the_process(engine, busybox_image):
    r = engine.cli("run", "-i", "--rm", busybox_image, "cat", input="hi\n", timeout=30)
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    r = engine.cli("run", "-i", "--rm", busybox_image, "sh", "-c", "wc -c; exit 5", input="x" * 100000,
                   timeout=30)
    assert (r.returncode, r.stdout.strip()) == (5, "100000"), r.stderr


def test_exec_stdin_eof(engine, ctr):
    r = engine.cli("exec", "-i", ctr, "sh", "-c", "cat; echo done", input="line\n", timeout=30)
    assert (r.returncode, r.stdout) == (0, "line\ndone\n"), r.stderr


# -- terminals ------------------------------------------------------------------------------

class Terminal:
    """`berth ARGS` on a pseudo-terminal of a given size."""

    def __init__(self, engine, *args, rows=30, cols=100):
        self.master, slave = pty.openpty()
        self.resize(rows, cols)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}", *args],
            stdin=slave, stdout=slave, stderr=slave, cwd=REPO, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.buffer = b""

    def resize(self, rows, cols):
        # On the master: the kernel sends SIGWINCH to the terminal's foreground group.
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes):
        os.write(self.master, data)

    def expect(self, needle: bytes, timeout=15.0) -> bytes:
        deadline = time.time() + timeout
        while needle not in self.buffer:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.buffer!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{needle!r} not seen before EOF; got {self.buffer!r}")
                self.buffer += chunk
        before, _, self.buffer = self.buffer.partition(needle)
        return before

    def until_prompt(self, timeout=15.0) -> None:
        """Attaching prints nothing: press Enter until the shell answers with a prompt."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.send(b"\r")
            try:
                self.expect(b"# ", timeout=0.5)
                return
            except AssertionError:
                continue
        raise AssertionError(f"no prompt; got {self.buffer!r}")

    def wait(self, timeout=15.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            os.close(self.master)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_run_it_is_a_real_terminal_that_follows_resizes(engine, busybox_image):
    term = Terminal(engine, "run", "-it", "--rm", busybox_image, "sh", rows=30, cols=100)
    try:
        term.expect(b"# ")  # typed before the prompt, it would race the shell's start-up
        term.send(b"tty; stty size\r")
        term.expect(b"/dev/pts/")
        term.expect(b"30 100")
        term.resize(40, 120)
        time.sleep(0.3)
        term.send(b"stty size\r")
        term.expect(b"40 120")
        term.send(b"exit 7\r")
        assert term.wait() == 7
    finally:
        term.kill()


def test_exec_it_and_ctrl_c_goes_to_the_process(engine, ctr):
    term = Terminal(engine, "exec", "-it", ctr, "sh", rows=25, cols=81)
    try:
        term.expect(b"# ")
        term.send(b"stty size\r")
        term.expect(b"25 81")
        term.send(b"sleep 30\r")
        time.sleep(0.5)
        term.send(b"\x03")  # raw mode: Ctrl-C is a byte for the container's terminal
        term.send(b"echo after-$((40+2))\r")
        term.expect(b"after-42")
        term.send(b"exit 3\r")
        assert term.wait() == 3
    finally:
        term.kill()
    assert _running(engine, ctr)


def test_attach_and_detach_keys(engine, busybox_image):
    cid = engine.cli("run", "-dit", busybox_image, "sh", check=True).stdout.strip()
    try:
        term = Terminal(engine, "attach", cid)
        try:
            term.until_prompt()
            term.send(b"echo attached-$((6*7))\r")
            term.expect(b"attached-42")
            term.send(b"\x10\x11")  # ctrl-p ctrl-q
            assert term.wait() == 0
        finally:
            term.kill()
        assert _running(engine, cid)
        # Still interactive for the next attach.
        term = Terminal(engine, "attach", cid)
        try:
            term.until_prompt()
            term.send(b"echo again\r")
            term.expect(b"again")
            term.send(b"exit 9\r")
            assert term.wait() == 9
        finally:
            term.kill()
    finally:
        engine.cli("rm", "-f", cid)


# -- pause, top, stats, update --------------------------------------------------------------

def test_pause_unpause_top_and_their_events(engine, ctr):
    since = time.time()
    engine.cli("exec", ctr, "true", check=True)
    assert engine.cli("pause", ctr, check=True).stdout.strip() == ctr
    info = json.loads(engine.cli("inspect", ctr, check=True).stdout)[0]
    assert info["State"]["Status"] == "paused" and info["State"]["Paused"]
    with open(f"/sys/fs/cgroup/freezer/berth/{ctr}/freezer.state") as f:
        assert f.read().strip() == "FROZEN"
    r = engine.cli("exec", ctr, "true")
    assert r.returncode != 0 and "paused" in r.stderr
    r = engine.cli("pause", ctr)
    assert r.returncode != 0 and "already paused" in r.stderr
    engine.cli("unpause", ctr, check=True)
    assert json.loads(engine.cli("inspect", ctr, check=True).stdout)[0]["State"]["Status"] == "running"
    top = engine.cli("top", ctr, check=True).stdout.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and top[0].split()[-1] == "CMD"
    assert len(top) == 2 and top[1].endswith("sleep 600")
    events = engine.cli("events", "--since", str(since), "--until", str(time.time() + 0.5),
                        "--filter", f"container={ctr}", "--format", "json", check=True).stdout
    actions = [json.loads(line)["Action"] for line in events.splitlines()]
    assert [a.split(":")[0] for a in actions] == ["exec_create", "exec_start", "exec_die", "pause",
                                                  "unpause", "top"], actions
    assert actions[0] == "exec_create: true"


def test_stats_move_when_the_container_allocates_memory(engine, ctr):
    from berth.engine.v1 import engine_pb2 as pb
    stub = engine.engine_stub()

    def sample():
        return list(stub.GetContainerStats(pb.GetContainerStatsRequest(id=ctr)))[-1]

    before = sample()
    assert before.pids == 1 and before.memory_limit > 0
    engine.cli("exec", ctr, "dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=64", check=True)
    after = sample()
    assert after.memory_usage - before.memory_usage > 50 * 1024 * 1024, (before, after)
    out = engine.cli("stats", "--no-stream", ctr, check=True).stdout.splitlines()
    assert out[0].split()[:2] == ["CONTAINER", "ID"] and out[1].startswith(ctr[:12])
    assert "MiB" in out[1]
    # Streaming: a sample a second until the container stops.
    proc = subprocess.Popen([PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}",
                             "stats", ctr], stdout=subprocess.PIPE, cwd=REPO)
    try:
        time.sleep(2.5)
        engine.cli("stop", "-t", "0", ctr, check=True)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.decode().count(ctr[:12]) >= 2


def test_update_limits_and_bad_input_changes_nothing(engine, ctr):
    cg = f"/sys/fs/cgroup/memory/berth/{ctr}/memory.limit_in_bytes"
    r = engine.cli("update", "--memory", "64m", "--pids-limit", "30", "--cpus", "0.5", ctr)
    assert r.returncode == 0, r.stderr
    with open(cg) as f:
        assert int(f.read()) == 64 * 1024 * 1024
    with open(f"/sys/fs/cgroup/pids/berth/{ctr}/pids.max") as f:
        assert f.read().strip() == "30"
    with open(f"/sys/fs/cgroup/cpu/berth/{ctr}/cpu.cfs_quota_us") as f:
        assert int(f.read()) == 50000
    for bad in (["--pids-limit=-3"], ["--cpu-shares=-5"], ["--memory=64m", "--pids-limit=-1"]):
        r = engine.cli("update", *bad, ctr)
        assert r.returncode != 0 and "negative" in r.stderr, (bad, r.stderr)
    with open(cg) as f:
        assert int(f.read()) == 64 * 1024 * 1024
    with open(f"/sys/fs/cgroup/pids/berth/{ctr}/pids.max") as f:
        assert f.read().strip() == "30"
    info = json.loads(engine.cli("inspect", ctr, check=True).stdout)[0]
    assert info["State"]["Running"]
    # inspect tells the limits now in force
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["HostConfig"]["PidsLimit"] == 30
    assert info["HostConfig"]["NanoCpus"] == 500_000_000


def test_kill_with_an_unknown_signal_changes_nothing(engine, ctr):
    r = engine.cli("kill", "-s", "SIGNOPE", ctr)
    assert r.returncode != 0 and "Invalid signal: SIGNOPE" in r.stderr
    assert _running(engine, ctr)


# -- cp and export -----------------------------------------------------------------------------

def test_cp_files_and_directories_both_ways(engine, ctr, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("to the container\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("deep\n")
    os.symlink("sub/f", tree / "link")
    engine.cli("cp", str(src), f"{ctr}:/tmp/", check=True)
    engine.cli("cp", str(src), f"{ctr}:/tmp/renamed.txt", check=True)
    engine.cli("cp", str(tree), f"{ctr}:/opt", check=True)  # /opt does not exist: the tree becomes it
    r = engine.cli("exec", ctr, "sh", "-c",
                   "cat /tmp/in.txt /tmp/renamed.txt /opt/sub/f; readlink /opt/link", check=True)
    assert r.stdout == "to the container\nto the container\ndeep\nsub/f\n"

    engine.cli("exec", ctr, "sh", "-c", "mkdir -p /data/d && echo from > /data/d/x && echo one > /data/one",
               check=True)
    out = tmp_path / "out"
    out.mkdir()
    engine.cli("cp", f"{ctr}:/data/one", str(out), check=True)
    engine.cli("cp", f"{ctr}:/data/one", str(out / "two"), check=True)
    engine.cli("cp", f"{ctr}:/data/d", str(out), check=True)
    engine.cli("cp", f"{ctr}:/data/d", str(out / "copy"), check=True)
    assert (out / "one").read_text() == "one\n" and (out / "two").read_text() == "one\n"
    assert (out / "d" / "x").read_text() == "from\n" and (out / "copy" / "x").read_text() == "from\n"
    r = engine.cli("cp", f"{ctr}:/no/such", str(out))
    assert r.returncode != 0 and "Could not find the file /no/such in container" in r.stderr


def test_cp_lands_exactly_the_bytes_of_large_files_many_small_ones_and_links(engine, ctr, tmp_path):
    """A file of many megabytes (not a whole number of chunks), an empty one, a tree of
    many small files with a symlink: in and back out, byte for byte, modes kept."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(9 * (1 << 20) + 777))
    os.chmod(big, 0o640)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    tree = tmp_path / "many"
    for i in range(300):
        (tree / f"d{i % 7}").mkdir(parents=True, exist_ok=True)
        (tree / f"d{i % 7}" / f"f{i}").write_bytes(os.urandom(i * 37))
    os.symlink("d1/f1", tree / "link")
    for src in (big, empty, tree):
        engine.cli("cp", str(src), f"{ctr}:/tmp/", check=True)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("big.bin", "empty", "many"):
        engine.cli("cp", f"{ctr}:/tmp/{name}", str(out), check=True)
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    assert os.stat(out / "big.bin").st_mode & 0o777 == 0o640
    assert (out / "empty").read_bytes() == b""
    for i in range(300):
        assert (out / "many" / f"d{i % 7}" / f"f{i}").read_bytes() == (tree / f"d{i % 7}" / f"f{i}").read_bytes()
    assert os.readlink(out / "many" / "link") == "d1/f1"
    # A link given as the source is copied as the link.
    engine.cli("cp", str(tree / "link"), f"{ctr}:/tmp/alink", check=True)
    assert engine.cli("exec", ctr, "sh", "-c", "readlink /tmp/alink", check=True).stdout == "d1/f1\n"


def test_a_cp_killed_midway_leaves_the_next_cp_whole(engine, ctr, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * (1 << 20)))
    cli = subprocess.Popen([PYTHON, "-m", "berth_cli", "-H", f"unix://{engine.gateway_socket}", "cp", str(big),
                            f"{ctr}:/tmp/big.bin"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Killed once the copy has begun to arrive (or, on a fast machine, has finished).
    deadline = time.monotonic() + 60
    while cli.poll() is None and time.monotonic() < deadline:
        if engine.cli("exec", ctr, "sh", "-c", "test -e /tmp/big.bin").returncode == 0:
            break
        time.sleep(0.05)
    cli.kill()
    cli.wait()
    engine.cli("cp", str(big), f"{ctr}:/tmp/big.bin", check=True)
    out = tmp_path / "out"
    out.mkdir()
    engine.cli("cp", f"{ctr}:/tmp/big.bin", str(out), check=True)
    assert (out / "big.bin").read_bytes() == big.read_bytes()


def test_cp_cannot_reach_host_files_through_symlinks(engine, ctr, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    secret = host / "secret"
    secret.write_text("host secret\n")
    engine.cli("exec", ctr, "sh", "-c",
               f"ln -s {secret} /leak && ln -s {host} /leakdir && ln -s ../../../../../../{host} /rel",
               check=True)
    out = tmp_path / "out"
    out.mkdir()
    # Reading: the link comes out as a link; through it nothing resolves outside the container.
    engine.cli("cp", f"{ctr}:/leak", str(out / "leak"), check=True)
    assert os.path.islink(out / "leak") and os.readlink(out / "leak") == str(secret)
    for path in ("/leakdir/secret", "/rel/secret", f"/../../../..{secret}"):
        r = engine.cli("cp", f"{ctr}:{path}", str(out / "x"))
        assert r.returncode != 0 and "Could not find the file" in r.stderr, (path, r.stderr)
        assert not (out / "x").exists()
    # Container's /etc/passwd, not the host's, however many ..s.
    engine.cli("cp", f"{ctr}:/../../../../etc/passwd", str(out / "passwd"), check=True)
    with open("/etc/passwd") as f:
        assert (out / "passwd").read_text() != f.read()
    # Writing: never through a link to the host.
    payload = tmp_path / "payload"
    payload.write_text("overwritten\n")
    engine.cli("cp", str(payload), f"{ctr}:/leak")  # replaces the link in the container
    r = engine.cli("cp", str(payload), f"{ctr}:/leakdir/secret")
    r2 = engine.cli("cp", str(payload), f"{ctr}:/rel/")
    assert secret.read_text() == "host secret\n" and sorted(os.listdir(host)) == ["secret"]
    assert r.returncode != 0 and r2.returncode != 0
    assert engine.cli("exec", ctr, "cat", "/leak", check=True).stdout == "overwritten\n"
    # A crafted archive with a member going up is refused.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../../../../../" + str(host / "evil"))
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    r = engine.cli("cp", "-", f"{ctr}:/tmp", input=buf.getvalue())
    assert r.returncode != 0 and not (host / "evil").exists()


def test_export_is_the_containers_filesystem(engine, ctr, tmp_path):
    engine.cli("exec", ctr, "sh", "-c", "echo exported > /marker", check=True)
    out = tmp_path / "fs.tar"
    engine.cli("export", "-o", str(out), ctr, check=True)
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        assert {"bin/busybox", "etc/passwd", "marker"} <= names
        assert tar.extractfile("marker").read() == b"exported\n"
        assert tar.getmember("bin/sh").issym()


# -- restarts -------------------------------------------------------------------------------

def test_exec_exit_code_survives_a_container_service_restart(fresh_engine, tmp_path):
    from berth.engine.v1 import engine_pb2 as pb
    from tests.e2e.test_engine_resilience import import_busybox
    engine = fresh_engine
    image = import_busybox(engine, tmp_path)
    cid = engine.cli("run", "-d", image, "sleep", "600", check=True).stdout.strip()
    stub = engine.engine_stub()
    exec_id = stub.CreateExec(pb.CreateExecRequest(container=cid, cmd=["sh", "-c", "sleep 3; exit 4"])).id
    list(stub.StartExec(iter([pb.StartExecRequest(start=pb.ExecStartParams(exec_id=exec_id, detach=True))])))
    since = time.time()
    old = engine.kill_service("container", signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if engine.pid_of("container") != old:
                break
        except Exception:  # noqa: BLE001 - between the kill and the respawn
            pass
        time.sleep(0.1)
    engine.wait_serving("container", 30)
    stub = engine.engine_stub()
    import grpc
    deadline = time.time() + 20
    info = None
    while time.time() < deadline:
        try:
            info = stub.InspectExec(pb.InspectExecRequest(id=exec_id)).exec
        except grpc.RpcError as err:  # the gateway reconnecting to the new service
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            info = None
        if info is not None and info.exited:
            break
        time.sleep(0.2)
    assert info is not None and info.exited and info.exit_code == 4
    # The restarted service watched the exec's monitor and reported its end.
    deadline = time.time() + 10
    while time.time() < deadline:
        events = engine.cli("events", "--since", str(since), "--until", str(time.time()),
                            "--filter", "event=exec_die", "--format", "json", check=True).stdout
        if events.strip():
            break
        time.sleep(0.3)
    attrs = json.loads(events.splitlines()[0])["Actor"]["Attributes"]
    assert attrs["execID"] == exec_id and attrs["exitCode"] == "4"
