"""berthd: start berth's services on this host and keep them running.

    python -m services.berthd [--run-root DIR] [--data-root DIR] [--runtime runc]
                              [--log-format json|console] [--services image,network,...] [--exec]
                              [--userns-remap USER[:GROUP]|default]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

from services.berthd.supervisor import REGISTRY, Supervisor
from services.common import config as config_mod
from services.common import logging as logging_mod


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = config_mod.load()
    parser = argparse.ArgumentParser(prog="berthd", description="Run the berth engine on this host.")
    parser.add_argument("--run-root", default=defaults.run_root,
                        help=f"sockets and namespaces (default {defaults.run_root})")
    parser.add_argument("--data-root", default=defaults.data_root,
                        help=f"persistent state (default {defaults.data_root})")
    parser.add_argument("--runtime", default=defaults.runtime, help="OCI runtime binary")
    parser.add_argument("--log-format", choices=("json", "console", "auto"),
                        default=defaults.log_format)
    parser.add_argument("--log-level", default=defaults.log_level)
    parser.add_argument("--services", default=",".join(s.name for s in REGISTRY),
                        help="the services to run here; the others run elsewhere "
                             "(see BERTH_<SERVICE>_ADDRESS)")
    parser.add_argument("--userns-remap", default=defaults.userns_remap, metavar="USER[:GROUP]",
                        help="run containers in a user namespace mapping root onto the "
                             "subordinate ids of USER (/etc/subuid, /etc/subgid); \"default\" "
                             "makes and uses the user \"berth\" (docker's userns-remap)")
    parser.add_argument("--exec", dest="warm", action="store_false",
                        help="start each service with exec instead of forking it from "
                             "berthd's preloaded modules (more memory; for debugging)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = dataclasses.replace(
        config_mod.load(), run_root=args.run_root, data_root=args.data_root,
        runtime=args.runtime, log_format=args.log_format, log_level=args.log_level,
        userns_remap=args.userns_remap)
    logging_mod.setup("berthd", config.log_format, config.log_level)
    names = [s for s in args.services.split(",") if s]
    unknown = sorted(set(names) - {s.name for s in REGISTRY})
    if unknown:
        print(f"berthd: unknown service(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    return asyncio.run(Supervisor(config, names, warm=args.warm).run())


if __name__ == "__main__":
    sys.exit(main())
