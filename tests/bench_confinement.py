"""The cost of seccomp on `run --rm /bin/true`: the same run through the Engine API with
docker's default profile and with `seccomp=unconfined`, interleaved so that load on the
machine weighs on both alike; medians of BENCH_RUNS (default 30) each.

    python -m tests.bench_confinement
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

from berth.engine.v1 import engine_pb2 as pb
from tests.bench import IMAGE
from tests.support.engine import Engine
from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes

VARIANTS = {"default seccomp": [], "seccomp=unconfined": ["seccomp=unconfined"]}


def main() -> None:
    runs = int(os.environ.get("BENCH_RUNS") or "30")
    engine = Engine().start()
    tmp = tempfile.mkdtemp(prefix="/tmp/bt-bench-")
    try:
        tar_path = os.path.join(tmp, "rootfs.tar")
        with open(tar_path, "wb") as f:
            f.write(rootfs_tar_bytes(make_busybox_rootfs(os.path.join(tmp, "rootfs"))))
        engine.cli("import", tar_path, IMAGE, check=True)
        stub = engine.engine_stub()

        def run(opts: list[str]) -> float:
            t = time.perf_counter()
            replies = list(stub.RunContainer(pb.RunContainerRequest(config=pb.ContainerConfig(
                image=IMAGE, cmd=["/bin/true"], auto_remove=True, security_opt=opts), attach=True)))
            assert replies[-1].exit.exit_code == 0
            return (time.perf_counter() - t) * 1000

        for opts in VARIANTS.values():
            run(opts)  # warm
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(runs):
            for name, opts in VARIANTS.items():
                times[name].append(run(opts))
        base = statistics.median(times["seccomp=unconfined"])
        for name, values in times.items():
            m = statistics.median(values)
            print(f"{name:20s} median {m:7.1f} ms  (p25 {statistics.quantiles(values, n=4)[0]:.1f}, "
                  f"p75 {statistics.quantiles(values, n=4)[2]:.1f})  {m - base:+.1f} ms")
    finally:
        engine.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
