"""run/create's --log-driver and --log-opt: how the container's output is kept.

The engine checks the driver and each option (json-file, local, none; max-size,
max-file, compress) and refuses an unknown one naming it; here they are only
put in the shape docker's CLI gives them.
"""

from __future__ import annotations


def add_flags(p) -> None:
    p.add_argument("--log-driver", default="", metavar="DRIVER",
                   help="logging driver for the container: json-file, local or none")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="log driver option (max-size, max-file, compress)")


def apply(ns, config) -> None:
    """--log-driver/--log-opt onto an engine ContainerConfig; absent both, the daemon default."""
    options = {}
    for opt in ns.log_opt:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid log opt {opt!r}: expected key=value")
        options[key] = value
    if ns.log_driver or options:
        config.log_config.driver = ns.log_driver
        config.log_config.options.update(options)
