"""What a container's processes use: `berth top` and `berth stats`."""

from __future__ import annotations

import sys
import threading
import time

from berth_cli import argv as arguments
from berth_cli import format as fmt
from berth_cli.errors import RpcError

VERBS = ("top", "stats")


def add_parsers(add_verb) -> None:
    p = add_verb("top", help="show the processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs=arguments.REMAINDER)

    p = add_verb("stats", help="show containers' resource usage")
    p.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("-a", "--all", action="store_true", help="all containers (default: the running ones)")
    p.add_argument("containers", nargs="*")


def top(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    reply = client.stub.ListContainerProcesses(
        pb.ListContainerProcessesRequest(id=ns.container, ps_args=ns.ps_args))
    print(fmt.table(tuple(reply.titles), [tuple(row.values) for row in reply.processes]))
    return 0


def _stats_row(s) -> tuple:
    from berth_docker.units import binary_size, human_size
    mem_pct = 100.0 * s.memory_usage / s.memory_limit if s.memory_limit else 0.0
    return (s.id[:12], s.name, f"{s.cpu_percent:.2f}%",
            f"{binary_size(s.memory_usage)} / {binary_size(s.memory_limit)}", f"{mem_pct:.2f}%",
            f"{human_size(s.net_rx_bytes)} / {human_size(s.net_tx_bytes)}",
            f"{human_size(s.block_read_bytes)} / {human_size(s.block_write_bytes)}", str(s.pids))


STATS_TITLES = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")


def stats(client, ns) -> int:
    from berth.engine.v1 import engine_pb2 as pb
    if not ns.containers:
        # docker: no names shows every running container (-a: every container).
        listed = client.stub.ListContainers(pb.ListContainersRequest(all=ns.all)).containers
        ns.containers = [c.id[:12] for c in listed]
        if not ns.containers:
            print(fmt.table(STATS_TITLES, []))
            return 0
    if ns.no_stream:
        rows, status = [], 0
        for ref in ns.containers:
            try:
                for s in client.stub.GetContainerStats(pb.GetContainerStatsRequest(id=ref)):
                    rows.append(_stats_row(s))
            except RpcError as err:
                client.report(err)
                status = 1
        print(fmt.table(STATS_TITLES, rows))
        return status
    latest: dict[str, tuple] = {}
    errors: list[str] = []

    def follow(ref):
        try:
            for s in client.stub.GetContainerStats(pb.GetContainerStatsRequest(id=ref, stream=True)):
                latest[ref] = _stats_row(s)
        except RpcError as err:
            errors.append(client.describe(err))
        latest.pop(ref, None)

    threads = [threading.Thread(target=follow, args=(ref,), daemon=True) for ref in ns.containers]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        rows = [latest[r] for r in ns.containers if r in latest]
        sys.stdout.write("\033[2J\033[H" if sys.stdout.isatty() else "")
        print(fmt.table(STATS_TITLES, rows), flush=True)
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


HANDLERS = {"top": top, "stats": stats}
