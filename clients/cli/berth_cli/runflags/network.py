"""run/create's network flags: --network, -p (checked by berth_docker.ports, as the Docker
API's PortBindings are, so a bad one is refused before anything is sent), -P, --ip,
--network-alias."""

from __future__ import annotations


def add_flags(p) -> None:
    p.add_argument("--network", "--net", default="", help="bridge (default), host, none or a network's name")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]",
                   help="publish a container's port on the host")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="publish every exposed port on an ephemeral host port")
    p.add_argument("--network-alias", action="append", default=[], metavar="NAME")
    p.add_argument("--ip", default="", help="IPv4 address on the container's network")


def apply(ns, config) -> None:
    """--network, -p, -P, --ip and --network-alias onto an engine ContainerConfig."""
    from berth_docker.ports import publish_flag
    config.network_mode = ns.network
    config.ports.extend(publish_flag(spec) for spec in ns.publish)
    config.publish_all = ns.publish_all
    config.network_aliases.extend(ns.network_alias)
    config.ipv4_address = ns.ip
