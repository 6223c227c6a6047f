"""`berth network ...` and `berth port` (run/create's network flags are runflags/network.py's).

Importing this module is cheap: the generated code is loaded by the functions that need it.
"""

from __future__ import annotations

import sys

from berth_cli import format as fmt
from berth_cli.errors import RpcError


def add_parser(p) -> None:
    """`berth network` and its subcommands."""
    p.add_argument("--help", action="help", help="show this help")
    sub = p.add_subparsers(dest="network_verb", metavar="COMMAND", parser_class=type(p))
    sub.required = True
    c = sub.add_parser("create", help="create a bridge network, or an overlay one across the cluster")
    c.add_argument("name")
    c.add_argument("-d", "--driver", default="bridge", help="bridge or overlay")
    c.add_argument("--attachable", action="store_true")
    c.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a driver option")
    c.add_argument("--subnet", default="")
    c.add_argument("--gateway", default="")
    c.add_argument("--ip-range", default="")
    c.add_argument("--internal", action="store_true")
    c.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    c = sub.add_parser("ls", aliases=["list"], help="list networks")
    c.add_argument("-q", "--quiet", action="store_true")
    c.add_argument("--no-trunc", action="store_true")
    c.add_argument("--format", default="", help="format the output with a Go template")
    c = sub.add_parser("inspect", help="show networks as JSON")
    c.add_argument("-f", "--format", default="", help="format the output with a Go template")
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
    from berth_docker.keyvalues import key_values
    n = client.stub.CreateNetwork(engine_pb2.CreateNetworkRequest(
        name=ns.name, driver=ns.driver, subnet=ns.subnet, gateway=ns.gateway,
        ip_range=ns.ip_range, internal=ns.internal, labels=key_values(ns.label, "label"),
        attachable=ns.attachable, options=key_values(ns.opt, "opt"))).network
    print(n.id)
    return 0


def ls(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    networks = client.stub.ListNetworks(engine_pb2.ListNetworksRequest()).networks
    if ns.quiet:
        for n in networks:
            print(n.id if ns.no_trunc else n.id[:12])
        return 0
    rows = [network_row(n, ns.no_trunc) for n in networks]
    if (out := fmt.formatted(ns.format, rows, NETWORK_HEADERS)) is not None:
        sys.stdout.write(out)
        return 0
    print(fmt.table(("NETWORK ID", "NAME", "DRIVER", "SCOPE"),
                    [(n.id if ns.no_trunc else n.id[:12], n.name, n.driver, _scope(n))
                     for n in networks]))
    return 0


NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                   "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "Label": "LABEL",
                   "CreatedAt": "CREATED AT"}


def go_time(iso: str) -> str:
    """An RFC 3339 time as Go prints a time.Time (docker's CreatedAt): "2024-05-01 10:00:00.12 +0000 UTC"."""
    date, t, clock = iso.partition("T")
    if not t:
        return iso
    zone = "Z" if clock.endswith("Z") else clock[-6:] if clock[-6:-5] in "+-" and clock[-3:-2] == ":" else ""
    clock = clock[:len(clock) - len(zone)]
    whole, _, fraction = clock.partition(".")
    fraction = fraction.rstrip("0")
    offset = "+0000" if zone in ("Z", "+00:00", "") else zone.replace(":", "")
    return f"{date} {whole}{'.' + fraction if fraction else ''} {offset} {'UTC' if offset == '+0000' else offset}"


def network_row(n, no_trunc: bool = False) -> dict:
    """What `network ls --format` sees: docker's network context fields."""
    from berth_cli.templates import Struct
    labels = dict(n.labels)
    return Struct(type_name="*formatter.networkContext", **{
        "CreatedAt": go_time(n.created), "Driver": n.driver, "ID": n.id if no_trunc else n.id[:12],
        "IPv6": "false", "Internal": "true" if n.internal else "false",
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())), "Name": n.name,
        "Scope": _scope(n), "Label": lambda key: labels.get(key, "")})


def _scope(n) -> str:
    return "global" if n.driver == "overlay" else "local"


def add_node_parser(p) -> None:
    """`berth node ls`: the cluster's nodes."""
    sub = p.add_subparsers(dest="node_verb", metavar="COMMAND", parser_class=type(p))
    sub.required = True
    c = sub.add_parser("ls", aliases=["list"], help="list the cluster's nodes")
    c.add_argument("-q", "--quiet", action="store_true")


def node(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    response = client.stub.ListNodes(engine_pb2.ListNodesRequest())
    if ns.quiet:
        for n in response.nodes:
            print(n.name)
        return 0
    print(fmt.table(("NAME", "ADDRESS", "STATUS", "CPUS", "MEMORY", "STARTED"),
                    [(n.name + (" *" if n.name == response.self else ""), n.address, "Ready",
                      str(n.cpus), f"{n.memory / (1 << 30):.1f}GiB", n.started)
                     for n in response.nodes]))
    return 0


def inspect(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    from berth_docker.shapes.networks import network_json
    template = fmt.inspect_template(ns.format)
    out, status = [], 0
    for name in ns.names:
        try:
            out.append(
                network_json(client.stub.InspectNetwork(engine_pb2.InspectNetworkRequest(name=name)).network))
        except RpcError as err:
            client.report(err)
            status = 1
    fmt.write_inspect(out, template)
    return status


def rm(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    status = 0
    for name in ns.names:
        try:
            client.stub.RemoveNetwork(engine_pb2.RemoveNetworkRequest(name=name))
            print(name)
        except RpcError as err:
            client.report(err)
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
