"""`make bench BENCH_SCALE=N`: what listing and running cost once N containers run, beside dockerd.

Both engines get the same work through the same client: N detached `sleep` containers
made and started through the Docker Engine API (four at a time), all with --network none
(the throwaway dockerd has no bridge), then `docker ps` and `docker run --rm` with the
docker CLI on each engine, the two engines' samples taken in turn (A B A B ...) so that a
machine whose speed drifts moves both columns alike. berth's own figures beside them:
`berth ps`, and `run --rm` through the gRPC API on the default bridge, at 0 and at N.

The targets are the engine issue's: `ps` with N running no slower than dockerd's, and a
`run` at N within 10% of a `run` at 0.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.support.dockerd import throwaway_dockerd
from tests.support.engine import PYTHON, REPO

SLEEPER = ["sleep", "1000000"]
CONCURRENCY = 4


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 120):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class DockerApi:
    """Just enough of the Docker Engine API to make, start and remove containers."""

    def __init__(self, socket_path: str):
        self.path = socket_path

    def call(self, method: str, url: str, body: dict | None = None) -> dict | None:
        conn = _UnixConnection(self.path)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, url, body=data, headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            raw = reply.read()
            if reply.status >= 300:
                raise RuntimeError(f"{method} {url}: {reply.status} {raw[:300]!r}")
            return json.loads(raw) if raw else None
        finally:
            conn.close()

    def run_detached(self, image: str) -> str:
        cid = self.call("POST", "/containers/create", {
            "Image": image, "Cmd": SLEEPER, "HostConfig": {"NetworkMode": "none"}})["Id"]
        self.call("POST", f"/containers/{cid}/start")
        return cid

    def remove(self, cid: str) -> None:
        self.call("DELETE", f"/containers/{cid}?force=1")


class Side:
    """One engine as the scale rows drive it: its Docker API socket, the docker CLI on it,
    and the image (a busybox) it knows."""

    def __init__(self, name: str, socket_path: str, image: str):
        self.name, self.image = name, image
        self.api = DockerApi(socket_path)
        self.docker = ["docker", "-H", f"unix://{socket_path}"]
        self.ids: list[str] = []

    def timed(self, *args: str) -> float:
        t = time.perf_counter()
        subprocess.run([*self.docker, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return (time.perf_counter() - t) * 1000

    def ps(self) -> float:
        return self.timed("ps")

    def run(self) -> float:
        return self.timed("run", "--rm", "--network", "none", self.image, "/bin/true")

    def fill(self, n: int) -> float:
        """Seconds to make and start n more detached containers, CONCURRENCY at a time."""
        t = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            self.ids += list(pool.map(lambda _: self.api.run_detached(self.image), range(n)))
        return time.perf_counter() - t

    def empty(self) -> float:
        t = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(self.api.remove, self.ids))
        self.ids = []
        return time.perf_counter() - t


def _alternate(fns: dict[str, Callable[[], float]], runs: int) -> dict[str, float]:
    """Median of each in turn: a b c a b c ..."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for key, fn in fns.items():
            samples[key].append(fn())
    return {k: statistics.median(v) for k, v in samples.items()}


def measure(engine, image: str, rootfs_tar: str, n: int, runs: int, api_run: Callable[[], None]):
    """The scale figures: {key: {"berth": x, "dockerd": y}} and a note on the dockerd column."""
    berth = Side("berth", engine.docker_socket, image)
    berth_cli = [PYTHON, "-c", "import berth_cli.__main__", "-H", f"unix://{engine.gateway_socket}"]

    def berth_ps() -> float:
        t = time.perf_counter()
        subprocess.run([*berth_cli, "ps"], check=True, stdout=subprocess.DEVNULL, cwd=REPO)
        return (time.perf_counter() - t) * 1000

    def api_ms() -> float:
        t = time.perf_counter()
        api_run()
        return (time.perf_counter() - t) * 1000

    out: dict[str, dict[str, float]] = {}
    with throwaway_dockerd() as dockerd:
        sides = [berth]
        note = "dockerd: not installed or would not start"
        if dockerd is not None:
            imported = dockerd.cli("import", rootfs_tar, "berth-bench-busybox:latest")
            if imported.returncode == 0:
                sides.append(Side("dockerd", dockerd.host.removeprefix("unix://"), "berth-bench-busybox:latest"))
                note = "dockerd: a private dockerd started for this run"
        try:
            for side in sides:
                side.run()   # warm
            at0 = _alternate({**{f"ps:{s.name}": s.ps for s in sides},
                              **{f"run:{s.name}": s.run for s in sides},
                              "berth_ps:berth": berth_ps, "api_run:berth": api_ms}, runs)
            for side in sides:
                out.setdefault("fill", {})[side.name] = side.fill(n)
            atn = _alternate({**{f"ps:{s.name}": s.ps for s in sides},
                              **{f"run:{s.name}": s.run for s in sides},
                              "berth_ps:berth": berth_ps, "api_run:berth": api_ms}, runs)
            for side in sides:
                out.setdefault("empty", {})[side.name] = side.empty()
        finally:
            for side in sides:
                if side.ids:
                    side.empty()
    for key, value in at0.items():
        row, side = key.split(":")
        out.setdefault(f"{row}@0", {})[side] = value
    for key, value in atn.items():
        row, side = key.split(":")
        out.setdefault(f"{row}@n", {})[side] = value
    return out, note


def report(results: dict[str, dict[str, float]], note: str, n: int) -> None:
    def cell(row: str, side: str, fmt: str = "9.1f") -> str:
        v = results.get(row, {}).get(side)
        return format(v, fmt) if v is not None else f"{'-':>9}"

    def get(row: str, side: str) -> float | None:
        return results.get(row, {}).get(side)

    print(f"\n{f'with {n} containers running (median)':44} {'berth':>9} {'dockerd':>9}   target")
    rows = [
        (f"start {n} detached (Docker API, 4 at once), s", "fill", None),
        (f"remove {n} (Docker API, 4 at once), s", "empty", None),
        ("docker ps, 0 running, ms", "ps@0", None),
        (f"docker ps, {n} running, ms", "ps@n", "ps"),
        ("berth ps (berth CLI), 0 running, ms", "berth_ps@0", None),
        (f"berth ps (berth CLI), {n} running, ms", "berth_ps@n", None),
        ("docker run --rm (docker CLI), 0 running, ms", "run@0", None),
        (f"docker run --rm (docker CLI), {n} running, ms", "run@n", "growth"),
        ("run --rm (gRPC API, bridge), 0 running, ms", "api_run@0", None),
        (f"run --rm (gRPC API, bridge), {n} running, ms", "api_run@n", "api_growth"),
    ]
    for label, key, check in rows:
        target = ""
        if check == "ps" and get(key, "dockerd") is not None:
            ok = get(key, "berth") <= get(key, "dockerd")
            target = f"berth <= dockerd {'ok' if ok else 'MISSED'}"
        elif check in ("growth", "api_growth"):
            base = "run@0" if check == "growth" else "api_run@0"
            ratio = get(key, "berth") / get(base, "berth")
            target = f"x{ratio:.2f} of 0 running, <= 1.10 {'ok' if ratio <= 1.10 else 'MISSED'}"
            theirs = get(key, "dockerd")
            if theirs is not None:
                target += f" (dockerd x{theirs / get(base, 'dockerd'):.2f})"
        print(f"{label:44} {cell(key, 'berth')} {cell(key, 'dockerd')}   {target}")
    print(f"containers: {' '.join(SLEEPER)}, --network none on both engines (BENCH_SCALE to change N). {note}.")


def main() -> None:
    """`python -m tests.bench_scale` (BENCH_SCALE, BENCH_RUNS): these rows alone."""
    from tests import bench
    os.environ.setdefault("BENCH_ONLY", "scale")
    bench.main()


if __name__ == "__main__":
    main()
