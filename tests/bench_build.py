"""`make bench`'s build rows: the tiny build beside BuildKit and docker's legacy builder.

The tiny build is the build issue's anchor:

    FROM busybox
    RUN echo hi > /x
    COPY file /file

Each row is one client driving one engine; rounds interleave them (one build of
every row, then the next round), so a machine that gets slower or faster part way
through moves every row alike, and the ratios to BuildKit are taken from medians
of the same rounds:

    berth build            the berth CLI -> berthd (gRPC), RUN on the default bridge
    berth --network=none   the same, RUN with no network (as the dockerd rows)
    docker -> berth        the docker CLI's legacy builder -> berthd's Docker API
    BuildKit -> dockerd    DOCKER_BUILDKIT=1 docker build -> a throwaway dockerd
    legacy -> dockerd      DOCKER_BUILDKIT=0 docker build -> the same dockerd

The throwaway dockerd runs without a bridge (it must not touch the host's network),
so its builds run with --network=none: BuildKit is spared the network namespace
and veth that berth's default row sets up, which makes the ratio a conservative one;
the --network=none row compares like with like.

The cached rebuild (nothing changed) is timed the same way, and berth's own share of
it, the engine time beyond receiving the context, is read from the build's result
(BuildResult.engine_time) through the Engine API.

    BENCH_ONLY=build make bench       these rows alone
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import tarfile
import time
from collections.abc import Callable

from berth.engine.v1 import engine_pb2 as pb
from berth.types.v1 import build_pb2
from tests.support.dockerd import throwaway_dockerd
from tests.support.engine import REPO

DOCKERFILE = "FROM {image}\nRUN echo hi > /x\nCOPY file /file\n"
DOCKERD_IMAGE = "berth-bench-busybox:latest"
# The build issue's anchor, measured on this kind of machine with Docker 20.10, when no
# dockerd can be started here.
REFERENCE_MS = {"buildkit": 377.0, "legacy": 616.0}
# Debian's docker CLI, of dockerd's release (20.10: BuildKit built in, no buildx plugin
# needed), ahead of a newer one on PATH.
DOCKER = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else shutil.which("docker")
TARGET_VS_BUILDKIT = 0.5
TARGET_CACHED_ENGINE_MS = 100.0


def _context(root: str, image: str) -> str:
    os.makedirs(root)
    with open(os.path.join(root, "file"), "w") as f:
        f.write("file\n")
    with open(os.path.join(root, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE.format(image=image))
    return root


def _tar(root: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in sorted(os.listdir(root)):
            tar.add(os.path.join(root, name), arcname=name)
    return buf.getvalue()


class Row:
    """One client and engine: `argv` plus the flags of a build, in `env`."""

    def __init__(self, label: str, argv: list[str], context: str, env: dict[str, str] | None = None,
                 flags: tuple[str, ...] = ()):
        self.label = label
        self.argv = argv
        self.flags = flags
        self.context = context
        self.env = env
        self.nocache: list[float] = []
        self.cached: list[float] = []

    def build(self, *flags: str) -> float:
        t = time.perf_counter()
        subprocess.run([*self.argv, "build", "-q", *self.flags, *flags, "-t", "berth-bench/tiny",
                        self.context],
                       check=True, capture_output=True, env=self.env, cwd=REPO)
        return (time.perf_counter() - t) * 1000


def _engine_ms(engine, context: str, no_cache: bool) -> float:
    """The engine time of one build through the Engine API, as its result says."""
    options = build_pb2.BuildOptions(tags=["berth-bench/tiny"], no_cache=no_cache)
    data = _tar(context)

    def requests():
        yield pb.BuildImageRequest(options=options)
        yield pb.BuildImageRequest(chunk=data)
    result = None
    for reply in engine.engine_stub().BuildImage(requests()):
        if reply.event.HasField("result"):
            result = reply.event.result
    assert result is not None, "the build ended without a result"
    return result.engine_time.ToNanoseconds() / 1e6


def measure(engine, cli: list[str], image: str, rootfs_tar: str, tmp: str, runs: int) -> dict:
    """Every row's medians over `runs` interleaved rounds; berthd is `engine` (its image
    `image` a busybox), `cli` the berth CLI's argv; the dockerd columns come from a
    throwaway dockerd (with `rootfs_tar` imported as its busybox) when one starts here."""
    base = os.path.join(tmp, "bench-build")
    berth_ctx = _context(os.path.join(base, "berth"), image)
    rows = [Row("berth build (CLI -> berthd)", cli, berth_ctx),
            Row("berth build --network=none", cli, berth_ctx, flags=("--network=none",))]
    if DOCKER:
        env = {**os.environ, "DOCKER_HOST": f"unix://{engine.docker_socket}", "DOCKER_BUILDKIT": "0"}
        env.pop("DOCKER_CONTEXT", None)
        rows.append(Row("docker build -> berthd", [DOCKER], berth_ctx, env))
    note = ""
    engine_nocache: list[float] = []
    engine_cached: list[float] = []
    with throwaway_dockerd() as dockerd:
        if dockerd is None:
            note = "no dockerd could be started here: BuildKit's and legacy's figures are the reference ones."
        else:
            dockerd.cli("import", rootfs_tar, DOCKERD_IMAGE, check=True)
            docker_ctx = _context(os.path.join(base, "docker"), DOCKERD_IMAGE)
            # A throwaway dockerd has no bridge: its RUN steps can only run without a network.
            rows.append(Row("BuildKit --network=none -> dockerd", [DOCKER], docker_ctx,
                            {**dockerd.env, "DOCKER_BUILDKIT": "1"}, ("--network=none",)))
            rows.append(Row("legacy --network=none -> dockerd", [DOCKER], docker_ctx,
                            {**dockerd.env, "DOCKER_BUILDKIT": "0"}, ("--network=none",)))
        for row in rows:      # warm: base images looked up, caches filled once
            row.build("--no-cache")
        for _ in range(runs):
            for row in rows:
                row.nocache.append(row.build("--no-cache"))
            engine_nocache.append(_engine_ms(engine, berth_ctx, no_cache=True))
            for row in rows:
                row.cached.append(row.build())
            engine_cached.append(_engine_ms(engine, berth_ctx, no_cache=False))
    return {"rows": rows, "note": note, "runs": runs,
            "engine_nocache_ms": statistics.median(engine_nocache),
            "engine_cached_ms": statistics.median(engine_cached)}


def report(results: dict) -> None:
    rows: list[Row] = results["rows"]
    med: Callable[[list[float]], float] = statistics.median
    by_label = {r.label.split(" ")[0]: r for r in rows}
    buildkit = by_label.get("BuildKit")
    ref = med(buildkit.nocache) if buildkit else REFERENCE_MS["buildkit"]
    ref_cached = med(buildkit.cached) if buildkit else None
    print(f"\n{'tiny build (FROM busybox, RUN, COPY)':44} {'--no-cache':>11} {'/BuildKit':>9} "
          f"{'cached':>9} {'/BuildKit':>9}")
    for row in rows:
        nc, c = med(row.nocache), med(row.cached)
        ratio_c = f"{c / ref_cached:9.2f}" if ref_cached else f"{'-':>9}"
        print(f"{row.label:44} {nc:9.0f}ms {nc / ref:9.2f} {c:7.0f}ms {ratio_c}")
    if buildkit is None:
        for name, ms in REFERENCE_MS.items():
            print(f"{name + ' -> dockerd (reference)':44} {ms:9.0f}ms {ms / ref:9.2f}")
    for berth in rows[:2]:
        nc = med(berth.nocache)
        verdict = "ok" if nc <= TARGET_VS_BUILDKIT * ref else "MISSED"
        print(f"target: {berth.label} --no-cache <= {TARGET_VS_BUILDKIT} x BuildKit = "
              f"{TARGET_VS_BUILDKIT * ref:.0f} ms: {verdict} ({nc / ref:.2f} x)")
    cached_engine = results["engine_cached_ms"]
    verdict = "ok" if cached_engine <= TARGET_CACHED_ENGINE_MS else "MISSED"
    print(f"berth engine time beyond receiving the context (Engine API, BuildResult.engine_time): "
          f"--no-cache {results['engine_nocache_ms']:.0f} ms, cached rebuild {cached_engine:.0f} ms "
          f"(target <= {TARGET_CACHED_ENGINE_MS:.0f} ms: {verdict})")
    print(f"medians of {results['runs']} interleaved rounds (BENCH_RUNS). {results['note']}")
