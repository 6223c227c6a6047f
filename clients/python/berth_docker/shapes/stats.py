"""Resource usage as docker streams it (`GET /containers/{id}/stats`)."""

from __future__ import annotations

from berth.engine.v1 import engine_pb2
from berth_docker.times import rfc3339


def _stats_time(s: engine_pb2.GetContainerStatsResponse | None) -> str:
    return rfc3339(s.time if s is not None and s.HasField("time") else None)


def _cpu_json(s: engine_pb2.GetContainerStatsResponse | None) -> dict:
    if s is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {"cpu_usage": {"total_usage": s.cpu_usage_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": s.system_cpu_ns, "online_cpus": s.online_cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def stats_json(s: engine_pb2.GetContainerStatsResponse,
               previous: engine_pb2.GetContainerStatsResponse | None) -> dict:
    """One message of `GET /containers/{id}/stats` in docker's (cgroup v2) shape.

    The CLI computes CPU % as Δcpu_usage.total_usage / Δsystem_cpu_usage × online_cpus × 100
    between cpu_stats and precpu_stats, and memory % as usage / limit."""
    return {
        "name": "/" + s.name.lstrip("/"), "id": s.id,
        "read": _stats_time(s), "preread": _stats_time(previous),
        "pids_stats": {"current": s.pids},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": s.block_read_bytes},
            {"major": 0, "minor": 0, "op": "write", "value": s.block_write_bytes}],
            "io_serviced_recursive": None, "io_queue_recursive": None, "io_service_time_recursive": None,
            "io_wait_time_recursive": None, "io_merged_recursive": None, "io_time_recursive": None,
            "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": _cpu_json(s),
        "precpu_stats": _cpu_json(previous),
        "memory_stats": {"usage": s.memory_usage, "limit": s.memory_limit, "stats": {}},
        "networks": {"eth0": {"rx_bytes": s.net_rx_bytes, "rx_packets": 0, "rx_errors": 0, "rx_dropped": 0,
                              "tx_bytes": s.net_tx_bytes, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0}},
    }
