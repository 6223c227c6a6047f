"""docker run's flags that berth does not carry out: refused by name, never dropped.

DOCKER_RUN_FLAGS is docker's `run`/`create` flag set (docker CLI 28). Whatever flag of it
no group module defines is added here with an action that stops the command line with
a message naming the flag, so a group that later implements a flag only has to define it.
"""

from __future__ import annotations

from berth_cli import argv as arguments

# (long name, short name or "", takes a value)
DOCKER_RUN_FLAGS: tuple[tuple[str, str, bool], ...] = (
    ("--add-host", "", True), ("--annotation", "", True), ("--attach", "-a", True),
    ("--blkio-weight", "", True), ("--blkio-weight-device", "", True), ("--cap-add", "", True),
    ("--cap-drop", "", True), ("--cgroup-parent", "", True), ("--cgroupns", "", True),
    ("--cidfile", "", True), ("--cpu-count", "", True), ("--cpu-percent", "", True),
    ("--cpu-period", "", True), ("--cpu-quota", "", True), ("--cpu-rt-period", "", True),
    ("--cpu-rt-runtime", "", True), ("--cpu-shares", "-c", True), ("--cpus", "", True),
    ("--cpuset-cpus", "", True), ("--cpuset-mems", "", True), ("--detach", "-d", False),
    ("--detach-keys", "", True), ("--device", "", True), ("--device-cgroup-rule", "", True),
    ("--device-read-bps", "", True), ("--device-read-iops", "", True),
    ("--device-write-bps", "", True), ("--device-write-iops", "", True),
    ("--disable-content-trust", "", False), ("--dns", "", True), ("--dns-option", "", True),
    ("--dns-search", "", True), ("--domainname", "", True), ("--entrypoint", "", True),
    ("--env", "-e", True), ("--env-file", "", True), ("--expose", "", True), ("--gpus", "", True),
    ("--group-add", "", True), ("--health-cmd", "", True), ("--health-interval", "", True),
    ("--health-retries", "", True), ("--health-start-interval", "", True),
    ("--health-start-period", "", True), ("--health-timeout", "", True), ("--help", "", False),
    ("--hostname", "-h", True), ("--init", "", False), ("--interactive", "-i", False),
    ("--io-maxbandwidth", "", True), ("--io-maxiops", "", True), ("--ip", "", True),
    ("--ip6", "", True), ("--ipc", "", True), ("--isolation", "", True),
    ("--kernel-memory", "", True), ("--label", "-l", True), ("--label-file", "", True),
    ("--link", "", True), ("--link-local-ip", "", True), ("--log-driver", "", True),
    ("--log-opt", "", True), ("--mac-address", "", True), ("--memory", "-m", True),
    ("--memory-reservation", "", True), ("--memory-swap", "", True),
    ("--memory-swappiness", "", True), ("--mount", "", True), ("--name", "", True),
    ("--network", "", True), ("--network-alias", "", True), ("--no-healthcheck", "", False),
    ("--oom-kill-disable", "", False), ("--oom-score-adj", "", True), ("--pid", "", True),
    ("--pids-limit", "", True), ("--platform", "", True), ("--privileged", "", False),
    ("--publish", "-p", True), ("--publish-all", "-P", False), ("--pull", "", True),
    ("--quiet", "-q", False), ("--read-only", "", False), ("--restart", "", True),
    ("--rm", "", False), ("--runtime", "", True), ("--security-opt", "", True),
    ("--shm-size", "", True), ("--sig-proxy", "", False), ("--stop-signal", "", True),
    ("--stop-timeout", "", True), ("--storage-opt", "", True), ("--sysctl", "", True),
    ("--tmpfs", "", True), ("--tty", "-t", False), ("--ulimit", "", True),
    ("--use-api-socket", "", False), ("--user", "-u", True), ("--userns", "", True),
    ("--uts", "", True), ("--volume", "-v", True), ("--volume-driver", "", True),
    ("--volumes-from", "", True), ("--workdir", "-w", True),
)


_ACTION: list[type] = []


def _refuse(**kwargs):
    """argparse's action for a refused flag (argparse reads every line that uses one)."""
    if not _ACTION:
        import argparse

        class Refuse(argparse.Action):
            def __call__(self, parser, namespace, values, option_string=None):
                parser.error(f"{self.dest} is not supported by berth")

        _ACTION.append(Refuse)
    return _ACTION[0](**kwargs)


def add_flags(p) -> None:
    defined = p._option_string_actions
    for long, short, takes_value in DOCKER_RUN_FLAGS:
        names = [n for n in (short, long) if n and n not in defined]
        if long in defined or not names:
            continue
        p.add_argument(*names, dest=long, action=_refuse, nargs=None if takes_value else 0,
                       default=arguments.SUPPRESS, help=arguments.SUPPRESS)
