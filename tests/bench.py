"""`make bench`: berth's speed and memory, side by side with docker when one runs here.

Every number is a median of repeated runs on a berthd started on its own roots.
The docker column is measured in the same run when a Docker engine answers
(`docker info`); otherwise it shows the figures measured on this kind of
machine, marked as such. Targets are from the engine-core issue.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from berth.engine.v1 import engine_pb2 as pb
from tests import bench_build
from tests import bench_output
from tests import bench_cli
from tests import bench_remote
from tests import bench_cluster
from tests import bench_scale
from tests.support.dockerd import throwaway_dockerd
from tests.support.engine import REPO, Engine, _pss
from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes

IMAGE = "berth-bench/busybox:latest"
# Measured on this kind of machine with Debian's docker.io (issue #2).
DOCKER_REFERENCE = {"cli_run_ms": 311.0, "throughput_per_s": 5.2, "idle_mib": 137.0, "idle_after_runs_mib": 137.0,
                    "per_container_mib": 13.0}


def _ms(fn) -> float:
    """The wall time of one call of fn, in ms."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def throughput(fn, total: int = 20, concurrency: int = 4) -> float:
    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: fn(), range(total)))
    return total / (time.perf_counter() - t)


class Berth:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.stub = engine.engine_stub()
        # As users start it: the `berth` launcher (no site), as bench_cli times it.
        self.cli = bench_cli.berth_cli(engine)

    def cli_run(self) -> None:
        subprocess.run([*self.cli, "run", "--rm", IMAGE, "/bin/true"], check=True, cwd=REPO)

    def api_run(self, network: str = "") -> None:
        """One gRPC run --rm; on the default bridge, or on `network` ("none")."""
        replies = list(self.stub.RunContainer(pb.RunContainerRequest(
            config=pb.ContainerConfig(image=IMAGE, cmd=["/bin/true"], auto_remove=True, network_mode=network),
            attach=True)))
        assert replies[-1].exit.exit_code == 0

    def api_run_none(self) -> None:
        self.api_run("none")

    def cycle(self) -> None:
        created = self.stub.CreateContainer(pb.CreateContainerRequest(config=pb.ContainerConfig(
            image=IMAGE, cmd=["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.01; done"])))
        self.stub.StartContainer(pb.StartContainerRequest(id=created.id))
        self.stub.StopContainer(pb.StopContainerRequest(id=created.id, timeout=5))
        self.stub.RemoveContainer(pb.RemoveContainerRequest(id=created.id))

    def memory(self, containers: int = 10) -> tuple[float, float]:
        idle = sum(self.engine.pss_kib().values()) / 1024
        ids = [self.stub.CreateContainer(pb.CreateContainerRequest(config=pb.ContainerConfig(
            image=IMAGE, cmd=["sleep", "1000"]))).id for _ in range(containers)]
        for cid in ids:
            self.stub.StartContainer(pb.StartContainerRequest(id=cid))
        time.sleep(1)
        monitors = sum(_pss(pid) for pid in _monitor_pids(self.engine.root)) / 1024
        busy = sum(self.engine.pss_kib().values()) / 1024
        for cid in ids:
            self.stub.RemoveContainer(pb.RemoveContainerRequest(id=cid, force=True))
        return idle, (busy - idle + monitors) / containers


def _monitor_pids(root: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"conmon") and any(root.encode() in a for a in argv):
            pids.append(int(pid))
    return pids


class Docker:
    """The same operations with the docker CLI against a running Docker engine."""

    def __init__(self, rootfs_tar: str):
        subprocess.run(["docker", "import", rootfs_tar, "berth-bench-busybox:latest"],
                       check=True, capture_output=True)

    @staticmethod
    def available() -> bool:
        return shutil.which("docker") is not None and subprocess.run(
            ["docker", "info"], capture_output=True).returncode == 0

    def cli_run(self, network: str = "") -> None:
        """One docker run --rm; on its default bridge, or on `network` ("none")."""
        subprocess.run(["docker", "run", "--rm", *(["--network", network] if network else []),
                        "berth-bench-busybox", "/bin/true"], check=True)

    def cli_run_none(self) -> None:
        self.cli_run("none")

    @staticmethod
    def engine_pss_mib() -> float | None:
        """PSS of dockerd and what it runs (containerd; shims while containers run), when the
        dockerd is the throwaway one (its pid file beside its socket); None otherwise."""
        host = os.environ.get("DOCKER_HOST", "")
        pidfile = os.path.join(os.path.dirname(host.removeprefix("unix://")), "dockerd.pid")
        try:
            with open(pidfile) as f:
                root = int(f.read().strip())
        except (OSError, ValueError):
            return None
        children: dict[int, list[int]] = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(pid))
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            try:
                total += _pss(pid)
            except OSError:
                pass
        return total / 1024

    def cycle(self) -> None:
        cid = subprocess.run(["docker", "create", "berth-bench-busybox", "sh", "-c",
                              "trap 'exit 0' TERM; while :; do sleep 0.01; done"],
                             check=True, capture_output=True, text=True).stdout.strip()
        for verb in (["start"], ["stop", "-t", "5"], ["rm"]):
            subprocess.run(["docker", *verb, cid], check=True, capture_output=True)


def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS") or "20")
    if os.environ.get("BENCH_ONLY") == "cluster":
        bench_cluster.main()
        return
    engine = Engine().start()
    tmp = tempfile.mkdtemp(prefix="/tmp/bt-bench-")
    try:
        tar_path = os.path.join(tmp, "rootfs.tar")
        with open(tar_path, "wb") as f:
            f.write(rootfs_tar_bytes(make_busybox_rootfs(os.path.join(tmp, "rootfs"))))
        engine.cli("import", tar_path, IMAGE, check=True)
        berth = Berth(engine)
        berth.api_run()  # warm: layers unpacked, caches filled
        if os.environ.get("BENCH_ONLY") == "cli":
            bench_cli.report(*bench_cli.measure(engine, IMAGE, tar_path, runs))
            return
        if os.environ.get("BENCH_ONLY") == "build":
            bench_build.report(bench_build.measure(engine, berth.cli, IMAGE, tar_path, tmp, runs))
            return
        if os.environ.get("BENCH_ONLY") == "remote":
            bench_remote.report(bench_remote.measure(tar_path, runs))
            return
        scale = int(os.environ.get("BENCH_SCALE") or "0")
        if os.environ.get("BENCH_ONLY") == "scale":
            bench_scale.report(*bench_scale.measure(engine, IMAGE, tar_path, scale or 100, runs, berth.api_run),
                               scale or 100)
            return
        # BENCH_ONLY=engine: the engine's rows above the byte, build and CLI ones.
        engine_only = os.environ.get("BENCH_ONLY") == "engine"
        if os.environ.get("BENCH_ONLY") == "output":
            output_rows(berth, engine, tar_path, tmp)
            return
        idle_fresh = sum(engine.pss_kib().values()) / 1024
        docker: dict[str, float] = {}
        with throwaway_dockerd() as dockerd:
            if dockerd is not None:
                os.environ.update(dockerd.env)
            measured = Docker.available()
            d = Docker(tar_path) if measured else None
            idle = d.engine_pss_mib() if d is not None else None
            # Both engines' samples in turn (a b c a b c ...), so that a machine whose speed
            # drifts (it is shared) moves both columns alike and the ratios hold. The API
            # run twice a turn: it is the shortest, and the row the engine issue targets.
            # The throwaway dockerd has a bridge of its own, so the default rows compare a
            # container on each engine's default bridge; the --network none rows compare
            # containers without a network (what the rows compared when dockerd ran with
            # --bridge none: the "old" row puts berth's bridge beside docker's none).
            turn = [("berth", "cli_run_ms", berth.cli_run), ("berth", "api_run_ms", berth.api_run),
                    ("berth", "api_run_ms", berth.api_run), ("berth", "cycle_ms", berth.cycle),
                    ("berth", "api_run_none_ms", berth.api_run_none)]
            if d is not None:
                d.cli_run()  # warm
                turn += [("docker", "cli_run_ms", d.cli_run), ("docker", "cycle_ms", d.cycle),
                         ("docker", "cli_run_none_ms", d.cli_run_none)]
            samples: dict[tuple[str, str], list[float]] = {}
            for _ in range(runs):
                for side, key, fn in turn:
                    samples.setdefault((side, key), []).append(_ms(fn))
            for _ in range(3):
                samples.setdefault(("berth", "throughput_per_s"), []).append(throughput(berth.api_run))
                samples.setdefault(("berth", "throughput_none_per_s"), []).append(throughput(berth.api_run_none))
                if d is not None:
                    samples.setdefault(("docker", "throughput_per_s"), []).append(throughput(d.cli_run))
                    samples.setdefault(("docker", "throughput_none_per_s"), []).append(throughput(d.cli_run_none))
            results = {key: statistics.median(v) for (side, key), v in samples.items() if side == "berth"}
            if d is not None:
                docker = {key: statistics.median(v) for (side, key), v in samples.items() if side == "docker"}
                if idle is not None:
                    docker["idle_mib"], docker["idle_after_runs_mib"] = idle, d.engine_pss_mib()
            results["idle_after_runs_mib"], results["per_container_mib"] = berth.memory()
            results["idle_mib"] = idle_fresh
            bulk = None if engine_only else bench_output.measure(_output_columns(berth, engine, dockerd), tmp)
        report(results, docker, measured)
        if not engine_only:
            bench_output.report(bulk)
            bench_cli.report(*bench_cli.measure(engine, IMAGE, tar_path, runs))
            bench_build.report(bench_build.measure(engine, berth.cli, IMAGE, tar_path, tmp, runs))
            bench_remote.report(bench_remote.measure(tar_path, runs))
            bench_cluster.report(bench_cluster.measure())
        if scale:
            bench_scale.report(*bench_scale.measure(engine, IMAGE, tar_path, scale, runs, berth.api_run), scale)
    finally:
        engine.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _output_columns(berth: Berth, engine: Engine, dockerd) -> list[bench_output.Column]:
    """bench_output's columns: the berth CLI and the docker CLI on this berthd, the docker
    CLI on `dockerd` (a PrivateDockerd with the busybox imported) when there is one."""
    columns = [bench_output.Column("berth", berth.cli, IMAGE, keep_all=bench_output.BERTH_KEEP_ALL)]
    if shutil.which("docker"):
        columns.append(bench_output.Column("docker-berth", ["docker", "-H", f"unix://{engine.docker_socket}"], IMAGE,
                                           keep_all=bench_output.BERTH_KEEP_ALL))
    if dockerd is not None:
        columns.append(bench_output.Column("dockerd", ["docker", "-H", dockerd.host], "berth-bench-busybox:latest"))
    return columns


def output_rows(berth: Berth, engine: Engine, tar_path: str, tmp: str) -> None:
    """BENCH_ONLY=output: bench_output's rows alone, beside a throwaway dockerd."""
    with throwaway_dockerd() as dockerd:
        note = "dockerd: not installed or did not start, no column." if dockerd is None else ""
        if dockerd is not None:
            dockerd.cli("import", tar_path, "berth-bench-busybox:latest", check=True)
        results = bench_output.measure(_output_columns(berth, engine, dockerd), tmp)
    bench_output.report(results, note)


def report(berth: dict[str, float], docker: dict[str, float], measured: bool) -> None:
    ref = docker if measured else DOCKER_REFERENCE
    source = "measured now" if measured else "reference, measured on this kind of machine"
    rows = [
        ("berth run --rm /bin/true (CLI), ms", "cli_run_ms", "cli_run_ms", 0.5, "<="),
        ("run --rm /bin/true (API, one client), ms", "api_run_ms", "cli_run_ms", 0.15, "<="),
        ("  the same with --network none on both, ms", "api_run_none_ms", "cli_run_none_ms", 0.15, "<="),
        ("  bridge beside docker --network none, ms", "api_run_ms", "cli_run_none_ms", 0.15, "<="),
        ("create+start+stop+rm cycle, ms", "cycle_ms", "cycle_ms", 0.3, "<="),
        ("20 runs at concurrency 4, containers/s", "throughput_per_s", "throughput_per_s", 3.0, ">="),
        ("  the same with --network none on both", "throughput_none_per_s", "throughput_none_per_s", 3.0, ">="),
        ("idle memory (PSS, all processes), MiB", "idle_mib", "idle_mib", 1.0, "<="),
        ("  the same after all the runs above, MiB", "idle_after_runs_mib", "idle_after_runs_mib", 1.0, "<="),
        ("added memory per running container, MiB", "per_container_mib", None, None, "<="),
    ]
    print(f"\n{'':44} {'berth':>9} {'docker':>9}   target")
    for label, key, docker_key, factor, op in rows:
        if key not in berth:
            continue   # not measured in this run (BENCH_ONLY)
        theirs = ref.get(docker_key) if docker_key else None
        if key == "per_container_mib":
            target, theirs = 2.5, ref.get("per_container_mib")
        elif theirs is not None:
            target = theirs * factor
        else:
            target = None
        ok = "" if target is None else ("ok" if (berth[key] <= target if op == "<=" else berth[key] >= target) else "MISSED")
        theirs_s = f"{theirs:9.1f}" if theirs is not None else f"{'-':>9}"
        target_s = f"{op} {target:.1f} {ok}" if target is not None else ""
        print(f"{label:44} {berth[key]:9.1f} {theirs_s}   {target_s}")
    print(f"\ndocker column: {source}. Runs per median: {os.environ.get('BENCH_RUNS', '20')} "
          f"(BENCH_RUNS to change). Python {sys.version.split()[0]}, {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
