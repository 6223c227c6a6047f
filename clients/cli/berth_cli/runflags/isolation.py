"""run/create's user namespace flag (--userns): docker's HostConfig.UsernsMode."""

from __future__ import annotations


def add_flags(p) -> None:
    p.add_argument("--userns", default="", metavar="host",
                   help='"host" runs in the host\'s user namespace when the daemon remaps '
                        "(userns-remap); empty takes the daemon's")


def apply(ns, config) -> None:
    # The engine refuses a mode it does not know, naming it; the CLI passes it as given.
    config.userns_mode = ns.userns
