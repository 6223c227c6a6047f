"""`make bench`'s CLI rows: each everyday verb through the berth CLI, through the docker CLI
on the same berthd (its Docker API socket), and through the docker CLI on a dockerd when
one is installed: the client's own cost beside docker's, and the engines' beside each other.

The dockerd is a private one (tests/support/dockerd.py: its own roots and socket, no bridge
or iptables rules), started here and stopped after; the containers of every column run
with --network none so the three columns do the same work.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import subprocess
import time

from tests.support.dockerd import PrivateDockerd
from tests.support.engine import PYTHON, REPO

VERBS = ("ps", "images", "inspect", "create", "start", "stop", "rm", "run")
ROWS = (*VERBS, "cycle")
# Issue #14's targets: (what, which column the ratio is taken against); wall time.
TARGETS = {verb: ("berth/docker <= 1.5", "docker") for verb in VERBS}
TARGETS.update(run=("berth/dockerd <= 0.33", "dockerd"), cycle=("berth/dockerd <= 0.5", "dockerd"))
LOOP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.01; done"]


class Cli:
    """One command line (berth's or docker's) pointed at one engine, with the image to use."""

    def __init__(self, argv: list[str], image: str, env: dict[str, str] | None = None):
        self.argv, self.image = argv, image
        self.env = {**os.environ, **(env or {})}

    def __call__(self, *args: str) -> str:
        return self.timed(*args)[2]

    def timed(self, *args: str) -> tuple[float, float, str]:
        """(wall ms, the CLI process's own CPU ms, its output)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        out = subprocess.run([*self.argv, *args], check=True, capture_output=True, text=True,
                             env=self.env, cwd=REPO)
        wall = (time.perf_counter() - t) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
        return wall, cpu, out.stdout.strip()


class Column:
    """One CLI on one engine: a container kept running for inspect, and each verb's times."""

    def __init__(self, cli: Cli):
        self.cli = cli
        self.wall: dict[str, list[float]] = {v: [] for v in ROWS}
        self.cpu: dict[str, list[float]] = {v: [] for v in ROWS}
        self.keeper = ""

    def __enter__(self) -> Column:
        self.keeper = self.cli("run", "-d", "--network", "none", self.cli.image, *LOOP)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run([*self.cli.argv, "rm", "-f", self.keeper], capture_output=True, env=self.cli.env)

    def _time(self, verb: str, *args: str) -> str:
        wall, cpu, out = self.cli.timed(*args)
        self.wall[verb].append(wall)
        self.cpu[verb].append(cpu)
        return out

    def round(self) -> None:
        """Every verb once; create/start/stop/rm on the same container in turn."""
        self._time("ps", "ps")
        self._time("images", "images")
        self._time("inspect", "inspect", self.keeper)
        cid = self._time("create", "create", "--network", "none", self.cli.image, *LOOP)
        self._time("start", "start", cid)
        self._time("stop", "stop", "-t", "5", cid)
        self._time("rm", "rm", cid)
        for series in (self.wall, self.cpu):
            series["cycle"].append(sum(series[v][-1] for v in ("create", "start", "stop", "rm")))
        self._time("run", "run", "--rm", "--network", "none", self.cli.image, "/bin/true")

    def medians(self) -> tuple[dict[str, float], dict[str, float]]:
        return ({v: statistics.median(t) for v, t in self.wall.items()},
                {v: statistics.median(t) for v, t in self.cpu.items()})


def berth_cli(engine) -> list[str]:
    """The berth CLI as users start it: the launcher `make venv` writes (no site, -S)."""
    launcher = os.path.join(REPO, ".venv", "bin", "berth")
    argv = [launcher] if os.access(launcher, os.X_OK) else [PYTHON, "-c", "import berth_cli.__main__"]
    return [*argv, "-H", f"unix://{engine.gateway_socket}"]


def measure(engine, image: str, rootfs_tar: str, runs: int):
    """Each column's (wall, client CPU) medians by verb: berth CLI, docker CLI on berthd, docker
    CLI on dockerd (None when not installed), and a note on the third. The columns run in turn
    round by round, so a machine whose load drifts weighs on all of them alike."""
    columns = [Column(Cli(berth_cli(engine), image))]
    if shutil.which("docker"):
        columns.append(Column(Cli(["docker", "-H", f"unix://{engine.docker_socket}"], image)))
    dockerd, note = None, "docker CLI on dockerd: dockerd is not installed"
    if PrivateDockerd.installed():
        try:
            dockerd = PrivateDockerd().start()
            subprocess.run(["docker", "-H", dockerd.host, "import", rootfs_tar, "berth-bench-busybox:latest"],
                           check=True, capture_output=True)
            columns.append(Column(Cli(["docker", "-H", dockerd.host], "berth-bench-busybox:latest")))
            note = "docker CLI on dockerd: a private dockerd started for this run"
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            note = f"docker CLI on dockerd: not measured ({exc})"
    try:
        with contextlib.ExitStack() as stack:
            for column in columns:
                stack.enter_context(column)
            for _ in range(runs):
                for column in columns:
                    column.round()
    finally:
        if dockerd is not None:
            dockerd.stop()
    results = [c.medians() for c in columns]
    if shutil.which("docker") is None:
        results.insert(1, ({}, {}))
    if len(results) < 3:
        results.append(None)
    return results[0], results[1], results[2], note


def _cell(value: float | None, width: int, digits: int = 1) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def report(berth, docker_on_berth, on_dockerd, note: str) -> None:
    """Two tables: wall time per verb (engine included), and the CLI process's own CPU."""
    (b_wall, b_cpu), (d_wall, d_cpu) = berth, docker_on_berth
    dd_wall, dd_cpu = on_dockerd if on_dockerd else ({}, {})
    print(f"\n{'CLI verb, median wall ms':26} {'berth':>8} {'docker':>8} {'dockerd':>8}   "
          f"{'berth/docker':>12} {'berth/dockerd':>13}   target")
    for verb in ROWS:
        b, d, dd = b_wall[verb], d_wall.get(verb), dd_wall.get(verb)
        r1 = b / d if d else None
        r2 = b / dd if dd else None
        target, ratio = TARGETS.get(verb, ("", None))
        limit = {"docker": r1, "dockerd": r2}.get(ratio)
        bound = float(target.rsplit(" ", 1)[1]) if target else None
        verdict = "" if limit is None else ("ok" if limit <= bound else "MISSED")
        print(f"{verb:26} {_cell(b, 8)} {_cell(d, 8)} {_cell(dd, 8)}   {_cell(r1, 12, 2)} {_cell(r2, 13, 2)}"
              f"   {target} {verdict}")
    print(f"\n{'CLI process CPU, median ms':26} {'berth':>8} {'docker':>8}   {'berth/docker':>12}   target")
    for verb in ROWS:
        b, d = b_cpu[verb], d_cpu.get(verb)
        r = b / d if d else None
        verdict = "" if r is None else ("ok" if r <= 1.5 else "MISSED")
        print(f"{verb:26} {_cell(b, 8)} {_cell(d, 8)}   {_cell(r, 12, 2)}   berth/docker <= 1.5 {verdict}")
    print("berth: the berth CLI on berthd; docker: the docker CLI on berthd's Docker API socket; "
          "dockerd: the docker CLI on dockerd.\ncycle: create + start + stop + rm of one container. "
          f"CPU: the CLI process's own user + system time (the engine's not counted).\n{note}.")
