"""`make bench`'s CLI rows: each everyday verb through the berth CLI, through the docker CLI
on the same berthd (its Docker API socket), and through the docker CLI on a dockerd when
one is installed: the client's own cost beside docker's, and the engines' beside each other.

The dockerd is a private one (tests/support/dockerd.py: its own roots and socket, no bridge
or iptables rules), started here and stopped after; the containers of every column run
with --network none so the three columns do the same work.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time

from tests.support.dockerd import PrivateDockerd
from tests.support.engine import PYTHON, REPO

VERBS = ("ps", "images", "inspect", "create", "start", "stop", "rm", "run")
LOOP = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.01; done"]


class Cli:
    """One command line (berth's or docker's) pointed at one engine, with the image to use."""

    def __init__(self, argv: list[str], image: str, env: dict[str, str] | None = None):
        self.argv, self.image = argv, image
        self.env = {**os.environ, **(env or {})}

    def __call__(self, *args: str) -> str:
        out = subprocess.run([*self.argv, *args], check=True, capture_output=True, text=True,
                             env=self.env, cwd=REPO)
        return out.stdout.strip()

    def timed(self, *args: str) -> tuple[float, str]:
        t = time.perf_counter()
        out = self(*args)
        return (time.perf_counter() - t) * 1000, out


def verb_times(cli: Cli, runs: int) -> dict[str, float]:
    """Median wall ms per verb; create/start/stop/rm measured on the same container in turn."""
    times: dict[str, list[float]] = {v: [] for v in VERBS}
    keeper = cli("run", "-d", "--network", "none", cli.image, *LOOP)
    try:
        for _ in range(runs):
            for verb, args in (("ps", ("ps",)), ("images", ("images",)), ("inspect", ("inspect", keeper))):
                times[verb].append(cli.timed(*args)[0])
            ms, cid = cli.timed("create", "--network", "none", cli.image, *LOOP)
            times["create"].append(ms)
            times["start"].append(cli.timed("start", cid)[0])
            times["stop"].append(cli.timed("stop", "-t", "5", cid)[0])
            times["rm"].append(cli.timed("rm", cid)[0])
            times["run"].append(cli.timed("run", "--rm", "--network", "none", cli.image, "/bin/true")[0])
    finally:
        subprocess.run([*cli.argv, "rm", "-f", keeper], capture_output=True, env=cli.env)
    return {verb: statistics.median(ts) for verb, ts in times.items()}


def measure(engine, image: str, rootfs_tar: str, runs: int) -> tuple[dict, dict, dict | None, str]:
    """(berth CLI, docker CLI on berthd, docker CLI on dockerd or None, a note on the third)."""
    berth = Cli([PYTHON, "-c", "import berth_cli.__main__", "-H", f"unix://{engine.gateway_socket}"], image)
    docker_on_berth = Cli(["docker", "-H", f"unix://{engine.docker_socket}"], image)
    results = [verb_times(berth, runs)]
    results.append(verb_times(docker_on_berth, runs) if shutil.which("docker") else {})
    on_dockerd, note = None, "docker CLI on dockerd: dockerd is not installed"
    if PrivateDockerd.installed():
        dockerd = PrivateDockerd()
        try:
            dockerd.start()
            subprocess.run(["docker", "-H", dockerd.host, "import", rootfs_tar, "berth-bench-busybox:latest"],
                           check=True, capture_output=True)
            on_dockerd = verb_times(Cli(["docker", "-H", dockerd.host], "berth-bench-busybox:latest"), runs)
            note = "docker CLI on dockerd: a private dockerd started for this run"
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            note = f"docker CLI on dockerd: not measured ({exc})"
        finally:
            dockerd.stop()
    return results[0], results[1], on_dockerd, note


def report(berth: dict, docker_on_berth: dict, on_dockerd: dict | None, note: str) -> None:
    print(f"\n{'CLI verb, median ms':22} {'berth':>8} {'docker':>8} {'dockerd':>8}   "
          f"{'berth/docker':>12} {'berth/dockerd':>13}   target")
    for verb in VERBS:
        b, d = berth[verb], docker_on_berth.get(verb)
        dd = on_dockerd.get(verb) if on_dockerd else None
        r1 = b / d if d else None
        r2 = b / dd if dd else None
        if verb == "run":
            target, ok = "berth/dockerd <= 0.33", (None if r2 is None else r2 <= 0.33)
        else:
            target, ok = "berth/docker <= 1.5", (None if r1 is None else r1 <= 1.5)
        cells = [f"{x:8.1f}" if x is not None else f"{'-':>8}" for x in (b, d, dd)]
        ratios = [f"{x:12.2f}" if x is not None else f"{'-':>12}" for x in (r1,)] + \
                 [f"{x:13.2f}" if x is not None else f"{'-':>13}" for x in (r2,)]
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"{verb:22} {' '.join(cells)}   {' '.join(ratios)}   {target} {verdict}")
    print("berth: the berth CLI on berthd; docker: the docker CLI on berthd's Docker API socket; "
          f"dockerd: the docker CLI on dockerd.\n{note}.")
