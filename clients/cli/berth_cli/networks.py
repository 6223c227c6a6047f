"""`berth network ...`, `berth port`, and the network flags of run/create (-p, -P, --ip, --network-alias).

Port specs are parsed here, as docker's CLI does, so a bad one is a usage
error before anything is sent. Importing this module is cheap: gRPC and
generated code are loaded by the functions that need them.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from dataclasses import dataclass

from berth.types.v1 import port_pb2


def add_run_flags(p) -> None:
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]",
                   help="publish a container's port on the host")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="publish every exposed port on an ephemeral host port")
    p.add_argument("--network-alias", action="append", default=[], metavar="NAME")
    p.add_argument("--ip", default="", help="IPv4 address on the container's network")


def add_parser(p) -> None:
    """`berth network` and its subcommands."""
    p.add_argument("--help", action="help", help="show this help")
    sub = p.add_subparsers(dest="network_verb", metavar="COMMAND", parser_class=type(p))
    sub.required = True
    c = sub.add_parser("create", help="create a bridge network")
    c.add_argument("name")
    c.add_argument("-d", "--driver", default="bridge")
    c.add_argument("--subnet", default="")
    c.add_argument("--gateway", default="")
    c.add_argument("--ip-range", default="")
    c.add_argument("--internal", action="store_true")
    c.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    c = sub.add_parser("ls", aliases=["list"], help="list networks")
    c.add_argument("-q", "--quiet", action="store_true")
    c.add_argument("--no-trunc", action="store_true")
    c = sub.add_parser("inspect", help="show networks as JSON")
    c.add_argument("names", nargs="+")
    c = sub.add_parser("rm", aliases=["remove"], help="remove networks")
    c.add_argument("names", nargs="+")
    c = sub.add_parser("prune", help="remove networks no container uses")
    c.add_argument("-f", "--force", action="store_true", help="do not prompt")
    for verb in ("connect", "disconnect"):
        c = sub.add_parser(verb, help=f"{verb} a container to/from a network")
        c.add_argument("network")
        c.add_argument("container")
        if verb == "connect":
            c.add_argument("--ip", default="")
            c.add_argument("--alias", action="append", default=[])
        else:
            c.add_argument("-f", "--force", action="store_true")


def add_port_parser(p) -> None:
    p.add_argument("container")
    p.add_argument("private_port", nargs="?", default="", metavar="PRIVATE_PORT[/PROTO]")


@dataclass(frozen=True)
class Publish:
    protocol: str
    host_ip: str
    host_port: int
    container_port: int


def _port(text: str, what: str, allow_zero: bool = False) -> int:
    if not text.isdigit():
        raise ValueError(f"invalid {what}: {text!r}")
    port = int(text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"invalid {what}: {port} is out of range 1-65535")
    return port


def parse_publish(spec: str) -> Publish:
    """docker's -p: [ip:][hostPort:]containerPort[/proto]; an empty hostPort is ephemeral.

    >>> parse_publish("127.0.0.1:8080:80/udp")
    Publish(protocol='udp', host_ip='127.0.0.1', host_port=8080, container_port=80)
    """
    rest, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise ValueError(f"invalid proto: {proto} in port spec {spec!r}")
    parts = rest.rsplit(":", 2)
    host_ip, host_port = "", ""
    if len(parts) == 3:
        host_ip, host_port, container = parts
    elif len(parts) == 2:
        host_port, container = parts
    else:
        (container,) = parts
    if host_ip:
        try:
            ipaddress.IPv4Address(host_ip.strip("[]"))
        except ValueError:
            raise ValueError(f"invalid IP address {host_ip!r} in port spec {spec!r}") from None
    return Publish(protocol=proto, host_ip=host_ip,
                   host_port=_port(host_port, "hostPort") if host_port else 0,
                   container_port=_port(container, "containerPort"))


def apply_run_flags(ns, config) -> None:
    """Add -p/-P/--ip/--network-alias to an engine ContainerConfig."""
    for spec in ns.publish:
        p = parse_publish(spec)
        config.ports.append(port_pb2.PortBinding(
            protocol=p.protocol, host_ip=p.host_ip, host_port=p.host_port,
            container_port=p.container_port))
    config.publish_all = ns.publish_all
    config.network_aliases.extend(ns.network_alias)
    config.ipv4_address = ns.ip


def ports_column(ports) -> str:
    """docker ps's PORTS: 0.0.0.0:8080->80/tcp, ..."""
    return ", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.protocol}"
                     for p in ports)


def ports_json(ports) -> dict:
    out: dict[str, list] = {}
    for p in ports:
        out.setdefault(f"{p.container_port}/{p.protocol}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    return out


def networks_json(c) -> dict:
    return {n.network: {"NetworkID": n.network_id, "IPAddress": n.ipv4_address,
                        "IPPrefixLen": n.prefix_len, "Gateway": n.gateway,
                        "Aliases": list(n.aliases) or None} for n in c.networks}


def port(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    c = client.stub.InspectContainer(engine_pb2.InspectContainerRequest(id=ns.container)).container
    want_port, _, want_proto = ns.private_port.partition("/")
    shown = 0
    for p in c.ports:
        if want_port and (str(p.container_port) != want_port or
                          (want_proto or "tcp") != p.protocol):
            continue
        prefix = "" if want_port else f"{p.container_port}/{p.protocol} -> "
        print(f"{prefix}{p.host_ip or '0.0.0.0'}:{p.host_port}")
        shown += 1
    if want_port and not shown:
        print(f"Error: No public port '{want_port}/{want_proto or 'tcp'}' published for "
              f"{ns.container}", file=sys.stderr)
        return 1
    return 0


def dispatch(client, ns) -> int:
    return {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm, "remove": rm,
            "prune": prune, "connect": connect, "disconnect": disconnect}[ns.network_verb](client, ns)


def create(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    labels = {}
    for v in ns.label:
        key, _, value = v.partition("=")
        labels[key] = value
    n = client.stub.CreateNetwork(engine_pb2.CreateNetworkRequest(
        name=ns.name, driver=ns.driver, subnet=ns.subnet, gateway=ns.gateway,
        ip_range=ns.ip_range, internal=ns.internal, labels=labels)).network
    print(n.id)
    return 0


def ls(client, ns) -> int:
    from berth.engine.v1 import engine_pb2

    from berth_cli import format as fmt
    networks = client.stub.ListNetworks(engine_pb2.ListNetworksRequest()).networks
    if ns.quiet:
        for n in networks:
            print(n.id if ns.no_trunc else n.id[:12])
        return 0
    print(fmt.table(("NETWORK ID", "NAME", "DRIVER", "SCOPE"),
                    [(n.id if ns.no_trunc else n.id[:12], n.name, n.driver, "local")
                     for n in networks]))
    return 0


def network_json(n) -> dict:
    return {
        "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Config": [
            {"Subnet": n.subnet, "Gateway": n.gateway, **({"IPRange": n.ip_range} if n.ip_range else {})}
        ] if n.subnet else []},
        "Internal": n.internal,
        "Containers": {cid: {} for cid in n.containers},
        "Options": {"com.docker.network.bridge.name": n.bridge} if n.bridge else {},
        "Labels": dict(n.labels),
    }


def inspect(client, ns) -> int:
    from berth_cli.transport import RpcError

    from berth.engine.v1 import engine_pb2
    out, status = [], 0
    for name in ns.names:
        try:
            out.append(
                network_json(client.stub.InspectNetwork(engine_pb2.InspectNetworkRequest(name=name)).network))
        except RpcError as err:
            print(f"Error response from daemon: {err.details()}", file=sys.stderr)
            status = 1
    print(json.dumps(out, indent=4))
    return status


def rm(client, ns) -> int:
    from berth_cli.transport import RpcError

    from berth.engine.v1 import engine_pb2
    status = 0
    for name in ns.names:
        try:
            client.stub.RemoveNetwork(engine_pb2.RemoveNetworkRequest(name=name))
            print(name)
        except RpcError as err:
            print(f"Error response from daemon: {err.details()}", file=sys.stderr)
            status = 1
    return status


def prune(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    removed = client.stub.PruneNetworks(engine_pb2.PruneNetworksRequest()).removed
    if removed:
        print("Deleted Networks:")
        for name in removed:
            print(name)
    return 0


def connect(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    client.stub.ConnectNetwork(engine_pb2.ConnectNetworkRequest(
        network=ns.network, container=ns.container, ipv4_address=ns.ip, aliases=ns.alias))
    return 0


def disconnect(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    client.stub.DisconnectNetwork(engine_pb2.DisconnectNetworkRequest(
        network=ns.network, container=ns.container))
    return 0
