"""berthd: start berth's services on this host and keep them running.

    python -m services.berthd [--run-root DIR] [--data-root DIR] [--runtime runc]
                              [--log-format json|console] [--services image,network,...] [--exec]
                              [--log-driver json-file|local|none] [--log-opt key=value ...]
                              [--userns-remap USER[:GROUP]|default]
                              [--tls-dir DIR] [--metrics-addr HOST:PORT]
                              [--cluster-store http://HOST:PORT --cluster-advertise ADDR
                               [--node-name NAME] [--cluster-ttl SECONDS]]
    python -m services.berthd certs DIR [--san HOST_OR_IP ...] [--force] [NAME ...]

--log-driver and --log-opt are docker's daemon.json "log-driver" and "log-opts": the
log driver of containers created without one (BERTH_LOG_DRIVER, BERTH_LOG_OPTS).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import socket
import sys

from services.berthd.supervisor import REGISTRY, Supervisor
from services.common import config as config_mod
from services.common import errors, tls
from services.common import logging as logging_mod
from services.container import logfiles
from services.container.model import LogConfig
from services.network.cluster import parse_endpoints


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
    parser.add_argument("--log-driver", default=defaults.log_driver,
                        help="log driver of containers created without one: json-file, local or none "
                             f"(default {defaults.log_driver})")
    parser.add_argument("--log-opt", action="append", default=None, metavar="KEY=VALUE",
                        help="an option of the default log driver (max-size, max-file, compress); "
                             f"repeatable (default {defaults.log_opts or 'none'})")
    parser.add_argument("--services", default=",".join(s.name for s in REGISTRY),
                        help="the services to run here; the others run elsewhere "
                             "(see BERTH_<SERVICE>_ADDRESS)")
    parser.add_argument("--userns-remap", default=defaults.userns_remap, metavar="USER[:GROUP]",
                        help="run containers in a user namespace mapping root onto the "
                             "subordinate ids of USER (/etc/subuid, /etc/subgid); \"default\" "
                             "makes and uses the user \"berth\" (docker's userns-remap)")
    parser.add_argument("--tls-dir", default=defaults.tls_dir, metavar="DIR",
                        help="certificates for services on TCP (ca.pem, <service>-cert.pem, "
                             "<service>-key.pem; see `berthd certs`): TCP is served and called "
                             "only with mutual TLS (BERTH_TLS_DIR)")
    parser.add_argument("--metrics-addr", default=defaults.metrics_address, metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics from the gateway "
                             "(BERTH_METRICS_ADDRESS; default off)")
    parser.add_argument("--cluster-store", default=defaults.cluster_store, metavar="URL",
                        help="etcd client URL(s) of the cluster this node joins (overlay "
                             "networks, berth node ls); empty: no cluster")
    parser.add_argument("--node-name", default=defaults.node_name,
                        help="this node's name in the cluster (default: the host name)")
    parser.add_argument("--cluster-advertise", default=defaults.cluster_advertise, metavar="ADDR",
                        help="the IPv4 address other nodes reach this one at (VXLAN tunnels)")
    parser.add_argument("--cluster-ttl", type=int, default=defaults.cluster_ttl, metavar="SECONDS",
                        help="lease of this node in the cluster store: a node silent that long "
                             f"drops out (default {defaults.cluster_ttl})")
    parser.add_argument("--exec", dest="warm", action="store_false",
                        help="start each service with exec instead of forking it from "
                             "berthd's preloaded modules (more memory; for debugging)")
    return parser.parse_args(argv)


def certs(argv: list[str]) -> int:
    """`berthd certs`: a CA and a certificate for each service (and client) of a deployment."""
    parser = argparse.ArgumentParser(
        prog="berthd certs", description="Make a CA (when DIR has none) and a certificate and key for each "
        "NAME, for mutual TLS between berth's services on TCP and their clients.")
    parser.add_argument("dir", help="where ca.pem, ca-key.pem and NAME-cert.pem/NAME-key.pem go")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="services and clients to certify (default: every service and \"client\")")
    parser.add_argument("--san", action="append", default=[], metavar="HOST_OR_IP",
                        help="a host name or IP address the certified services are reached at; "
                             "repeatable (localhost and 127.0.0.1 are always in)")
    parser.add_argument("--force", action="store_true", help="replace certificates that exist")
    args = parser.parse_args(argv)
    names = args.names or [*config_mod.SERVICES, "client"]
    try:
        for path in tls.issue(args.dir, names, args.san, force=args.force):
            print(path)
    except errors.BerthError as exc:
        print(f"berthd certs: {exc.message}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["certs"]:
        return certs(argv[1:])
    args = parse_args(argv)
    config = dataclasses.replace(
        config_mod.load(), run_root=args.run_root, data_root=args.data_root,
        runtime=args.runtime, log_format=args.log_format, log_level=args.log_level,
        log_driver=args.log_driver,
        log_opts=",".join(args.log_opt) if args.log_opt is not None else config_mod.load().log_opts,
        userns_remap=args.userns_remap, tls_dir=args.tls_dir, metrics_address=args.metrics_addr,
        cluster_store=args.cluster_store,
        node_name=args.node_name or (socket.gethostname() if args.cluster_store else ""),
        cluster_advertise=args.cluster_advertise, cluster_ttl=args.cluster_ttl)
    logging_mod.setup("berthd", config.log_format, config.log_level)
    try:
        # Checked here, where the user can see it, rather than as a failing container service.
        logfiles.resolve(LogConfig(config.log_driver, logfiles.parse_options(config.log_opts)),
                         LogConfig())
    except errors.InvalidArgument as exc:
        print(f"berthd: --log-driver/--log-opt: {exc.message}", file=sys.stderr)
        return 2
    try:
        tls.check(config)
    except errors.InvalidArgument as exc:
        print(f"berthd: {exc.message}", file=sys.stderr)
        return 2
    problem = _check_cluster(config)
    if problem:
        print(f"berthd: {problem}", file=sys.stderr)
        return 2
    names = [s for s in args.services.split(",") if s]
    unknown = sorted(set(names) - {s.name for s in REGISTRY})
    if unknown:
        print(f"berthd: unknown service(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    return asyncio.run(Supervisor(config, names, warm=args.warm).run())


def _check_cluster(config: config_mod.Config) -> str:
    """What is wrong with the cluster flags, or ""."""
    if not config.cluster_store:
        return ""
    try:
        parse_endpoints(config.cluster_store)
    except ValueError as exc:
        return f"--cluster-store: {exc}"
    try:
        if ipaddress.ip_address(config.cluster_advertise).version != 4:
            return "--cluster-advertise: an IPv4 address is wanted (VXLAN over IPv4)"
    except ValueError:
        return ("--cluster-advertise: give the IPv4 address other nodes reach this one at "
                f"(got {config.cluster_advertise!r})")
    if config.cluster_ttl < 2:
        return "--cluster-ttl: at least 2 seconds"
    return ""


if __name__ == "__main__":
    sys.exit(main())
