"""run/create's general flags: the process, its identity, its resources."""

from __future__ import annotations

import os

from berth_cli import argv as arguments


def add_flags(p) -> None:
    p.add_argument("--help", action="help", help="show this help")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", default="", help="the container's name")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                   help="set an environment variable")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="read environment variables from a file")
    p.add_argument("-w", "--workdir", default="", help="working directory inside the container")
    p.add_argument("-u", "--user", default="", help="user name or UID[:GID]")
    p.add_argument("-m", "--memory", default="", help="memory limit, e.g. 64m")
    p.add_argument("--cpus", default="", help="number of CPUs, e.g. 0.5")
    p.add_argument("-c", "--cpu-shares", type=int, default=0, help="CPU shares (relative weight)")
    # Unset takes the engine's default limit (the security group spells it, 0 and -1 unlimited).
    p.add_argument("--pids-limit", type=int, default=None, help="process limit (0 or -1: unlimited)")
    p.add_argument("-h", "--hostname", default="", help="the container's host name")
    p.add_argument("--entrypoint", default=None, help="override the image's ENTRYPOINT")
    p.add_argument("-l", "--label", action="append", default=[], metavar="K=V", help="set a label")
    p.add_argument("--label-file", action="append", default=[], metavar="FILE",
                   help="read labels from a file of K=V lines")
    p.add_argument("--stop-signal", default="", help="signal that stops the container")
    p.add_argument("--stop-timeout", type=int, default=None, help="seconds to wait before killing")
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument("image")
    p.add_argument("command", nargs=arguments.REMAINDER)


def _label_files(paths) -> list[str]:
    labels = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise ValueError(f"--label-file: {path}: {exc.strerror}") from None
        labels += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return labels


def check_signal(value: str) -> None:
    """docker refuses a bad --stop-signal at create, not at the first stop."""
    if not value:
        return
    import signal
    name = value.upper()
    if value.isdigit():
        if 0 < int(value) < signal.NSIG:
            return
    elif (name if name.startswith("SIG") else "SIG" + name) in signal.Signals.__members__ or \
            name.startswith(("SIGRTMIN", "RTMIN", "SIGRTMAX", "RTMAX")):
        return
    raise ValueError(f"invalid signal: {value}")


def apply(ns, config) -> None:
    from berth_docker import keyvalues
    from berth_docker.units import parse_bytes, parse_cpus
    check_signal(ns.stop_signal)
    # --env-file first, then -e, so a flag overrides the file (docker's order); same for labels.
    env = [e for path in ns.env_file for e in keyvalues.env_file(path, os.environ)]
    env += keyvalues.env(ns.env, os.environ)
    config.image = ns.image
    config.name = ns.name
    config.cmd.extend(ns.command)
    config.env.extend(env)
    config.working_dir = ns.workdir
    config.user = ns.user
    config.hostname = ns.hostname
    config.labels.update(keyvalues.key_values(_label_files(ns.label_file) + ns.label, "label"))
    config.memory_bytes = parse_bytes(ns.memory) if ns.memory else 0
    config.nano_cpus = parse_cpus(ns.cpus) if ns.cpus else 0
    config.cpu_shares = ns.cpu_shares
    config.auto_remove = ns.rm
    config.stop_signal = ns.stop_signal
    config.readonly_rootfs = ns.read_only
    if ns.entrypoint is not None:
        config.entrypoint.SetInParent()
        if ns.entrypoint:
            config.entrypoint.values.append(ns.entrypoint)
    if ns.stop_timeout is not None:
        config.stop_timeout = ns.stop_timeout
    # docker's -i/-t: a later `start -a`/`attach` uses them too.
    config.tty = ns.tty
    config.open_stdin = ns.interactive
