"""The security and further resource flags of run/create (docker's names and syntax):
--privileged, --cap-add/--cap-drop, --device, --device-cgroup-rule, --sysctl, --ulimit,
--pids-limit, --group-add, --pid/--ipc/--uts, --cpuset-cpus/--cpuset-mems,
--memory-swap, --memory-reservation, --oom-kill-disable, --oom-score-adj, --shm-size,
--init, --runtime and --security-opt.

The engine checks the values; here they are only spelled into the ContainerConfig, with
one thing the docker CLI also does on the client: `--security-opt seccomp=FILE` sends the
file's content, so the profile is read where the user is, not where the engine runs.
"""

from __future__ import annotations


def add_flags(p) -> None:
    p.add_argument("--privileged", action="store_true", help="give extended privileges to this container")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add Linux capabilities")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop Linux capabilities")
    p.add_argument("--device", action="append", default=[], metavar="HOST[:CTR][:PERMS]",
                   help="add a host device to the container")
    p.add_argument("--device-cgroup-rule", action="append", default=[], metavar="RULE",
                   help="add a rule to the cgroup allowed devices list")
    p.add_argument("--sysctl", action="append", default=[], metavar="K=V", help="sysctl options")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]", help="ulimit options")
    p.add_argument("--group-add", action="append", default=[], metavar="GROUP",
                   help="add additional groups to join")
    p.add_argument("--pid", default="", help="PID namespace to use (host or container:NAME)")
    p.add_argument("--ipc", default="", help="IPC mode to use (host, private, shareable, container:NAME)")
    p.add_argument("--uts", default="", help="UTS namespace to use (host or container:NAME)")
    p.add_argument("--cpuset-cpus", default="", help="CPUs in which to allow execution (0-3, 0,1)")
    p.add_argument("--cpuset-mems", default="", help="MEMs in which to allow execution (0-3, 0,1)")
    p.add_argument("--memory-swap", default="", help="swap limit equal to memory plus swap: -1 unlimited")
    p.add_argument("--memory-reservation", default="", help="memory soft limit")
    p.add_argument("--oom-kill-disable", action="store_true", help="disable OOM killer")
    p.add_argument("--oom-score-adj", type=int, default=0, help="tune host's OOM preferences (raise only)")
    p.add_argument("--shm-size", default="", help="size of /dev/shm")
    p.add_argument("--init", action="store_true", help="run an init inside the container")
    p.add_argument("--runtime", default="", help="runtime to use for this container")
    p.add_argument("--security-opt", action="append", default=[], metavar="OPT", help="security options")


def apply(ns, config) -> None:
    from berth_docker.keyvalues import key_values
    from berth_docker.units import parse_bytes
    # --pids-limit (a flag of the general set): unset takes the engine's default; 0
    # and -1 are unlimited, as in docker.
    if getattr(ns, "pids_limit", None) is not None:
        config.pids_limit = ns.pids_limit if ns.pids_limit > 0 else -1
    config.privileged = ns.privileged
    config.cap_add.extend(ns.cap_add)
    config.cap_drop.extend(ns.cap_drop)
    if ns.device or ns.ulimit:
        from berth_docker.create import device, ulimit  # here: a big module most runs do not need
        config.devices.extend(device(d) for d in ns.device)
        config.ulimits.extend(ulimit(u) for u in ns.ulimit)
    config.device_cgroup_rules.extend(ns.device_cgroup_rule)
    config.sysctls.update(key_values(ns.sysctl, "sysctl"))
    config.group_add.extend(ns.group_add)
    config.pid_mode, config.ipc_mode, config.uts_mode = ns.pid, ns.ipc, ns.uts
    config.cpuset_cpus, config.cpuset_mems = ns.cpuset_cpus, ns.cpuset_mems
    if ns.memory_swap:
        config.memory_swap = -1 if ns.memory_swap.strip() == "-1" else parse_bytes(ns.memory_swap)
    if ns.memory_reservation:
        config.memory_reservation = parse_bytes(ns.memory_reservation)
    config.oom_kill_disable = ns.oom_kill_disable
    config.oom_score_adj = ns.oom_score_adj
    if ns.shm_size:
        config.shm_size = parse_bytes(ns.shm_size)
    config.init = ns.init
    config.runtime = ns.runtime
    config.security_opt.extend(security_opt(o) for o in ns.security_opt)


def security_opt(opt: str) -> str:
    """seccomp=FILE as seccomp=<the file's JSON> (docker's CLI does the same)."""
    key, sep, value = opt.partition("=")
    if key != "seccomp" or not sep or value in ("unconfined", "builtin") or value.lstrip().startswith("{"):
        return opt
    try:
        with open(value) as f:
            return "seccomp=" + f.read()
    except OSError as exc:
        raise ValueError(f"opening seccomp profile ({value}) failed: {exc.strerror}") from None
