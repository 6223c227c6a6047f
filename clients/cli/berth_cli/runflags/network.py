"""run/create's network flags: --network, -p (checked by berth_docker.ports, as the Docker
API's PortBindings are, so a bad one is refused before anything is sent), -P, --ip,
--network-alias, --expose and --link (as the Docker API's ExposedPorts and HostConfig.Links)."""

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
    p.add_argument("--expose", action="append", default=[], metavar="PORT[/PROTO]",
                   help="expose a port without publishing it (shown by inspect, published by -P)")
    p.add_argument("--link", action="append", default=[], metavar="CONTAINER[:ALIAS]",
                   help="reach another container by name (or ALIAS)")


def apply(ns, config) -> None:
    """--network, -p, -P, --ip, --network-alias, --expose and --link onto an engine ContainerConfig."""
    from berth_docker.ports import publish_flag
    config.network_mode = ns.network
    config.ports.extend(publish_flag(spec) for spec in ns.publish)
    config.publish_all = ns.publish_all
    config.network_aliases.extend(ns.network_alias)
    config.ipv4_address = ns.ip
    from berth_docker.ports import port_key
    for spec in ns.expose:
        number, proto = port_key(spec)
        if f"{number}/{proto}" not in config.exposed_ports:
            config.exposed_ports.append(f"{number}/{proto}")
    for link in ns.link:
        if not link.split(":")[0]:
            raise ValueError(f"--link: invalid link {link!r}: CONTAINER[:ALIAS]")
        if link not in config.endpoint_settings.links:
            config.endpoint_settings.links.append(link)
