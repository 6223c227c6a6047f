"""run/create's namespace isolation flags: --userns and --cgroupns (docker's
HostConfig.UsernsMode and CgroupnsMode)."""

from __future__ import annotations


def add_flags(p) -> None:
    p.add_argument("--userns", default="", metavar="host",
                   help='"host" runs in the host\'s user namespace when the daemon remaps '
                        "(userns-remap); empty takes the daemon's")
    p.add_argument("--cgroupns", default="", choices=("", "host", "private"),
                   help='cgroup namespace: "private" (its own) or "host" (the default)')
    p.add_argument("--isolation", default="", help='"default": namespaces, the only isolation on Linux')


def apply(ns, config) -> None:
    # The engine refuses a mode it does not know, naming it; the CLI passes it as given.
    config.userns_mode = ns.userns
    config.cgroupns_mode = ns.cgroupns
    if ns.isolation not in ("", "default"):
        # dockerd's answer on Linux.
        raise ValueError(f"--isolation: invalid isolation {ns.isolation!r} - linux only supports 'default'")
    config.isolation = ns.isolation
