"""`make bench`'s rows for moving bytes: output, logs, exec, cp and load, in three columns.

    berth         the berth CLI on berthd (its own gRPC client)
    docker-berth  the docker CLI on berthd's Docker API socket
    dockerd       the docker CLI on a throwaway dockerd (tests/support/dockerd.py)

Each figure is the median of BENCH_BULK_RUNS (default 3) timings of one CLI command whose
output goes to /dev/null, so what is measured is the engine and the CLI moving the bytes,
not a terminal drawing them. The columns are interleaved: each repetition of a row runs the
command once per column in turn, so a load that comes and goes (other work on the machine)
falls on all of them alike; the ratios are what to read.

`BENCH_ONLY=output make bench` runs these rows alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field

MB50 = 50_000_000
LINES = f"yes abcdefghijklmnopqrstuvwxyz | head -c {MB50}"
NO_NEWLINE = f"head -c {MB50} /dev/zero | tr '\\0' a"
BIG_FILE = 100_000_000
BERTH_KEEP_ALL = ("--log-opt", "max-size=-1")
# The image `load` moves: busybox plus a layer of this many incompressible bytes.
IMAGE_LAYER = 250_000_000

ROWS = [
    ("run: 50 MB of short lines (foreground)", "run_lines"),
    ("run: 50 MB with no newline (foreground)", "run_no_newline"),
    ("logs of a 50 MB log (short lines)", "logs"),
    ("logs --tail 10 of that log", "logs_tail"),
    ("logs --since its end (seek, ~no output)", "logs_since"),
    ("logs --until its start (~no output)", "logs_until"),
    ("exec: 50 MB of output", "exec"),
    ("cp of a 100 MB file into a container", "cp_in"),
    ("cp of a 100 MB file out of a container", "cp_out"),
    ("load of a 250 MB image", "load"),
]


@dataclass
class Column:
    """One CLI on one engine, and what the rows set up on it."""
    name: str
    cli: list[str]
    image: str
    env: dict[str, str] | None = None
    keep_all: tuple[str, ...] = ()
    logged: str = ""   # an exited container whose log holds 50 MB of short lines
    box: str = ""      # a running container for exec and cp
    archive: str = ""  # an image saved by this engine, for load
    tag: str = ""
    started: str = ""   # logged's StartedAt and FinishedAt (RFC 3339)
    finished: str = ""
    times: dict[str, list[float]] = field(default_factory=dict)

    def __call__(self, *args: str) -> str:
        r = subprocess.run([*self.cli, *args], check=True, capture_output=True, text=True, env=self.env)
        return r.stdout.strip()

    def timed(self, *args: str) -> float:
        t = time.perf_counter()
        subprocess.run([*self.cli, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=self.env)
        return time.perf_counter() - t

    def setup(self, tmp: str, rows: set[str]) -> None:
        if rows & {"logs", "logs_tail", "logs_since", "logs_until"}:
            self.logged = self("run", "-d", *self.keep_all, self.image, "sh", "-c", LINES)
            self("wait", self.logged)
            self.started = self("inspect", "-f", "{{.State.StartedAt}}", self.logged)
            self.finished = self("inspect", "-f", "{{.State.FinishedAt}}", self.logged)
        if rows & {"exec", "cp_in", "cp_out"}:
            self.box = self("run", "-d", self.image, "sleep", "1000")
        if "load" in rows:
            self.tag = f"bench-load-{self.name}-{os.getpid()}:latest"
            maker = self("run", "-d", self.image, "sh", "-c", f"head -c {IMAGE_LAYER} /dev/urandom > /big")
            try:
                self("wait", maker)
                self("commit", maker, self.tag)
            finally:
                self("rm", "-f", maker)
            self.archive = os.path.join(tmp, f"image-{self.name}.tar")
            self("save", "-o", self.archive, self.tag)

    def teardown(self) -> None:
        for cid in (self.logged, self.box):
            if cid:
                subprocess.run([*self.cli, "rm", "-f", cid], capture_output=True, env=self.env)
        if self.tag:
            subprocess.run([*self.cli, "rmi", "-f", self.tag], capture_output=True, env=self.env)
        if self.archive:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.archive)

    def once(self, row: str, tmp: str, big: str) -> float:
        if row == "run_lines":
            return self.timed("run", "--rm", self.image, "sh", "-c", LINES)
        if row == "run_no_newline":
            return self.timed("run", "--rm", self.image, "sh", "-c", NO_NEWLINE)
        if row == "logs":
            return self.timed("logs", self.logged)
        if row == "logs_tail":
            return self.timed("logs", "--tail", "10", self.logged)
        if row == "logs_since":
            return self.timed("logs", "--since", self.finished, self.logged)
        if row == "logs_until":
            return self.timed("logs", "--until", self.started, self.logged)
        if row == "exec":
            return self.timed("exec", self.box, "sh", "-c", LINES)
        if row == "cp_in":
            return self.timed("cp", big, f"{self.box}:/tmp/big.bin")
        if row == "cp_out":
            back = os.path.join(tmp, f"back-{self.name}")
            shutil.rmtree(back, ignore_errors=True)
            os.mkdir(back)
            try:
                return self.timed("cp", f"{self.box}:/tmp/big.bin", back)
            finally:
                shutil.rmtree(back, ignore_errors=True)
        if row == "load":
            self("rmi", self.tag)
            return self.timed("load", "-i", self.archive)
        raise ValueError(row)


def measure(columns: list[Column], tmp: str) -> dict[str, dict[str, float]]:
    """{column name: {row: median seconds}} with the repetitions of each row interleaved
    across the columns. BENCH_OUTPUT_ROWS (comma-separated keys) picks rows."""
    runs = int(os.environ.get("BENCH_BULK_RUNS", "3"))
    wanted = os.environ.get("BENCH_OUTPUT_ROWS")
    rows = [key for _, key in ROWS if not wanted or key in wanted.split(",")]
    big = os.path.join(tmp, "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(BIG_FILE))
    try:
        for col in columns:
            col.setup(tmp, set(rows))
        for row in rows:
            for _ in range(runs):
                for col in columns:
                    col.times.setdefault(row, []).append(col.once(row, tmp, big))
    finally:
        for col in columns:
            col.teardown()
        os.unlink(big)
    return {col.name: {row: statistics.median(ts) for row, ts in col.times.items()} for col in columns}


def report(results: dict[str, dict[str, float]], note: str = "") -> None:
    names = list(results)
    base = names[0]
    ratio_names = [n for n in names[1:]]
    head = " ".join(f"{n:>12}" for n in names) + "  " + " ".join(f"{base + '/' + n:>18}" for n in ratio_names)
    print(f"\n{'bytes moved, median s':42} {head}   target")
    for label, key in ROWS:
        if key not in results[base]:
            continue
        mine = results[base][key]
        cells = " ".join(f"{results[n][key]:12.2f}" if key in results[n] else f"{'-':>12}" for n in names)
        ratios, verdict = [], ""
        for n in ratio_names:
            theirs = results[n].get(key)
            ratios.append(f"{mine / theirs:18.2f}" if theirs else f"{'-':>18}")
        reference = results.get("dockerd", {}).get(key)
        if reference:
            over = [n for n in names if n != "dockerd" and results[n].get(key, 0) > reference]
            verdict = "<= dockerd: " + ("ok" if not over else "MISSED by " + ", ".join(over))
        print(f"{label:42} {cells}  {' '.join(ratios)}   {verdict}")
    print("berth: the berth CLI on berthd; docker-berth: the docker CLI on berthd's Docker API socket; "
          "dockerd: the docker CLI on a throwaway dockerd. Runs per median: "
          f"{os.environ.get('BENCH_BULK_RUNS', '3')} (BENCH_BULK_RUNS), interleaved." + (f"\n{note}" if note else ""))
