"""`make bench` row: TCP throughput between containers on two nodes over an overlay network,
beside the same between two containers on one node's bridge network (target: >= 70%).

Two berth nodes in network namespaces (tests/support/cluster.py); iperf3 (Debian's, with its
libraries copied into a busybox image) as server and client. Overlay and bridge runs are
interleaved, so that load from elsewhere on the machine weighs on both alike; medians.

    python -m tests.bench_cluster        # or BENCH_ONLY=cluster make bench
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile

from tests.support.cluster import Cluster
from tests.support.rootfs import make_busybox_rootfs, rootfs_tar_bytes

IMAGE = "bench-iperf3:latest"
TARGET = 0.70


def _iperf3_rootfs(root: str) -> str:
    """A busybox rootfs with /usr/bin/iperf3 and the shared objects it loads."""
    make_busybox_rootfs(root)
    binary = shutil.which("iperf3")
    if binary is None:
        raise RuntimeError("iperf3 is not installed (make test-deps installs it)")
    needed = [binary]
    for line in subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            needed.append(path)
    for path in needed:
        real = os.path.realpath(path)
        for dest in {path, real}:
            target = os.path.join(root, dest.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(real, target)
    return root


def _throughput(client_node, server_address: str, network: str, name: str, seconds: int) -> float:
    """Gbit/s one iperf3 client on `client_node` reaches to the server at `server_address`."""
    out = client_node.cli("run", "--rm", "--name", name, "--network", network, IMAGE,
                          "/usr/bin/iperf3", "-c", server_address, "-t", str(seconds), "-J",
                          timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"iperf3 client failed: {out.stdout[-400:]} {out.stderr[-400:]}")
    result = json.loads(out.stdout)
    return result["end"]["sum_received"]["bits_per_second"] / 1e9


def _address(node, container: str) -> str:
    return node.cli("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    container, check=True).stdout.strip()


def measure(rounds: int = 5, seconds: int = 4) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="/tmp/bt-bench-cluster-")
    try:
        tar = rootfs_tar_bytes(_iperf3_rootfs(os.path.join(tmp, "rootfs")))
        with Cluster(2, ttl=10) as cluster:
            a, b = cluster.nodes
            for node in (a, b):
                node.cli("import", "-", IMAGE, "-c", 'CMD ["sh"]', input=tar, check=True)
            a.cli("network", "create", "-d", "overlay", "benchov", check=True)
            a.cli("network", "create", "benchbr", check=True)
            for network in ("benchov", "benchbr"):
                a.cli("run", "-d", "--name", f"srv-{network}", "--network", network, IMAGE,
                      "/usr/bin/iperf3", "-s", check=True)
            overlay_ip, bridge_ip = _address(a, "srv-benchov"), _address(a, "srv-benchbr")
            overlay, bridge = [], []
            for i in range(rounds):
                overlay.append(_throughput(b, overlay_ip, "benchov", f"cl-ov{i}", seconds))
                bridge.append(_throughput(a, bridge_ip, "benchbr", f"cl-br{i}", seconds))
            a.cli("rm", "-f", "srv-benchov", "srv-benchbr")
            return {"overlay_gbps": statistics.median(overlay), "bridge_gbps": statistics.median(bridge),
                    "rounds": rounds, "seconds": seconds}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict[str, float]) -> None:
    ratio = r["overlay_gbps"] / r["bridge_gbps"] if r["bridge_gbps"] else 0.0
    ok = "ok" if ratio >= TARGET else "MISSED"
    print(f"\n{'TCP between containers (iperf3)':44} {'Gbit/s':>9}")
    print(f"{'  same node, bridge network':44} {r['bridge_gbps']:9.2f}")
    print(f"{'  two nodes, overlay (VXLAN, MTU 1450)':44} {r['overlay_gbps']:9.2f}   "
          f"{ratio:.0%} of bridge, target >= {TARGET:.0%} {ok}")
    print(f"medians of {r['rounds']} interleaved {r['seconds']}s runs each; nodes are network "
          "namespaces of one machine (the underlay: veths on a bridge in a namespace of its own).")


def main() -> None:
    report(measure())


if __name__ == "__main__":
    main()
