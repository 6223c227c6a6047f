"""`make bench`'s rows for moving bytes: output, logs, exec, cp and load, beside docker.

Each figure is the median of BENCH_BULK_RUNS (default 3) timings of one CLI command
whose output goes to /dev/null, so what is measured is the engine and the CLI moving
the bytes, not a terminal drawing them. The docker column is the same command with the
docker CLI on a Docker engine on this machine: the one that answers, or else (when
Debian's dockerd is installed) a throwaway one that `throwaway_dockerd` starts on
its own roots under a temporary directory and stops, with no bridge or firewall rules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time

MB50 = 50_000_000
LINES = f"yes abcdefghijklmnopqrstuvwxyz | head -c {MB50}"
NO_NEWLINE = f"head -c {MB50} /dev/zero | tr '\\0' a"
BIG_FILE = 100_000_000
BERTH_KEEP_ALL = ("--log-opt", "max-size=-1")
# The image `load` moves: busybox plus a layer of this many incompressible bytes.
IMAGE_LAYER = 200_000_000

ROWS = [
    ("run: 50 MB of short lines (foreground), s", "run_lines"),
    ("run: 50 MB with no newline (foreground), s", "run_no_newline"),
    ("logs of a 50 MB log (short lines), s", "logs"),
    ("exec: 50 MB of output, s", "exec"),
    ("cp of a 100 MB file into a container, s", "cp_in"),
    ("cp of a 100 MB file out of a container, s", "cp_out"),
    ("load of a 200 MB image, s", "load"),
]


def _timed(argv: list[str], env=None, stdin=None) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   stdin=stdin)
    return time.perf_counter() - t


def _median(fn, runs: int) -> float:
    return statistics.median(fn() for _ in range(runs))


def measure(cli: list[str], image: str, tmp: str, env=None, keep_all: tuple[str, ...] = ()) -> dict[str, float]:
    """The rows for one engine driven by `cli` (the berth CLI or the docker CLI), on `image`
    (a busybox); `keep_all` are the run flags with which its log keeps all 50 MB (berth's
    default driver caps a log, docker's does not). Leaves no container or image behind."""
    runs = int(os.environ.get("BENCH_BULK_RUNS", "3"))
    out: dict[str, float] = {}

    def run(*args: str) -> str:
        r = subprocess.run([*cli, *args], check=True, capture_output=True, text=True, env=env)
        return r.stdout.strip()

    out["run_lines"] = _median(lambda: _timed([*cli, "run", "--rm", image, "sh", "-c", LINES], env), runs)
    out["run_no_newline"] = _median(
        lambda: _timed([*cli, "run", "--rm", image, "sh", "-c", NO_NEWLINE], env), runs)

    logged = run("run", "-d", *keep_all, image, "sh", "-c", LINES)
    try:
        run("wait", logged)
        out["logs"] = _median(lambda: _timed([*cli, "logs", logged], env), runs)
    finally:
        run("rm", "-f", logged)

    box = run("run", "-d", image, "sleep", "1000")
    try:
        out["exec"] = _median(lambda: _timed([*cli, "exec", box, "sh", "-c", LINES], env), runs)
        big = os.path.join(tmp, "big.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(BIG_FILE))
        out["cp_in"] = _median(lambda: _timed([*cli, "cp", big, f"{box}:/tmp/big.bin"], env), runs)
        back = os.path.join(tmp, "back")

        def cp_out() -> float:
            shutil.rmtree(back, ignore_errors=True)
            os.mkdir(back)
            return _timed([*cli, "cp", f"{box}:/tmp/big.bin", back], env)
        out["cp_out"] = _median(cp_out, runs)
        shutil.rmtree(back, ignore_errors=True)
        os.unlink(big)
    finally:
        run("rm", "-f", box)

    # A large image: busybox with a 200 MB layer, saved by the same engine, loaded back.
    tag = f"bench-load-{os.getpid()}:latest"
    maker = run("run", "-d", image, "sh", "-c", f"head -c {IMAGE_LAYER} /dev/urandom > /big")
    try:
        run("wait", maker)
        run("commit", maker, tag)
    finally:
        run("rm", "-f", maker)
    archive = os.path.join(tmp, "image.tar")
    try:
        run("save", "-o", archive, tag)

        def load() -> float:
            run("rmi", tag)
            return _timed([*cli, "load", "-i", archive], env)
        out["load"] = _median(load, runs)
    finally:
        subprocess.run([*cli, "rmi", "-f", tag], capture_output=True, env=env)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(archive)
    return out


@contextlib.contextmanager
def throwaway_dockerd():
    """A Docker engine for the side-by-side figures: the one that answers, or Debian's dockerd
    started on temporary roots (no bridge, no iptables) and stopped at the end. Yields the
    environment for the docker CLI, or None when there is no docker."""
    if shutil.which("docker") is None:
        yield None
        return
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        yield dict(os.environ)
        return
    dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None)
    if dockerd is None:
        yield None
        return
    root = tempfile.mkdtemp(prefix="/tmp/bt-dockerd-")
    sock = os.path.join(root, "docker.sock")
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    env.pop("DOCKER_CONTEXT", None)
    with open(os.path.join(root, "dockerd.log"), "wb") as log:
        proc = subprocess.Popen(
            [dockerd, "--data-root", os.path.join(root, "data"), "--exec-root", os.path.join(root, "exec"),
             "--pidfile", os.path.join(root, "dockerd.pid"), "-H", f"unix://{sock}", "--bridge", "none",
             "--iptables=false", "--ip6tables=false"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "info"], capture_output=True, env=env).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                yield None
                return
            time.sleep(0.5)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Its overlay mounts are gone with it; whatever is left is plain files.
        subprocess.run(["umount", "-R", "-l", os.path.join(root, "data")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def report(berth: dict[str, float], docker: dict[str, float] | None) -> None:
    print(f"\n{'bytes moved (median seconds)':44} {'berth':>9} {'docker':>9}   target")
    for label, key in ROWS:
        theirs = docker.get(key) if docker else None
        target = f"<= {theirs:.2f} {'ok' if berth[key] <= theirs else 'MISSED'}" if theirs is not None else ""
        theirs_s = f"{theirs:9.2f}" if theirs is not None else f"{'-':>9}"
        print(f"{label:44} {berth[key]:9.2f} {theirs_s}   {target}")
    print("docker column: " + ("measured now, same commands with the docker CLI." if docker else
                               "no Docker engine here (install docker.io for it)."))
