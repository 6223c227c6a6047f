"""Exec instances as docker shows them (`GET /exec/{id}/json`)."""

from __future__ import annotations

from berth.engine.v1 import engine_pb2


def exec_json(info: engine_pb2.ExecInfo) -> dict:
    """`GET /exec/{id}/json`; ExitCode is null until the process ended, as in docker."""
    cmd = list(info.cmd)
    return {
        "ID": info.id, "ContainerID": info.container_id, "Running": info.running,
        "ExitCode": info.exit_code if info.exited else None, "Pid": info.pid,
        "OpenStdin": info.open_stdin, "OpenStdout": True, "OpenStderr": True,
        "CanRemove": False, "DetachKeys": "",
        "ProcessConfig": {"tty": info.tty, "entrypoint": cmd[0] if cmd else "", "arguments": cmd[1:],
                          "privileged": False, "user": info.user},
    }
