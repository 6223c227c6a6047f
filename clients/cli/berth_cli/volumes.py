"""`berth volume ...` (run/create's mount flags are runflags/storage.py's).

Importing this module is cheap: the generated code is loaded by the functions that need it.
"""

from __future__ import annotations

import sys

from berth_cli import format as fmt
from berth_cli.errors import RpcError, StatusCode


def add_parser(p) -> None:
    """`berth volume` and its subcommands."""
    p.add_argument("--help", action="help", help="show this help")
    sub = p.add_subparsers(dest="volume_verb", metavar="COMMAND", parser_class=type(p))
    sub.required = True
    c = sub.add_parser("create", help="create a volume")
    c.add_argument("name", nargs="?", default="")
    c.add_argument("--name", dest="name_flag", default="")
    c.add_argument("-d", "--driver", default="local")
    c.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    c = sub.add_parser("ls", aliases=["list"], help="list volumes")
    c.add_argument("-q", "--quiet", action="store_true")
    c.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--format", default="")
    c = sub.add_parser("inspect", help="show volumes as JSON")
    c.add_argument("-f", "--format", default="", help="format the output with a Go template")
    c.add_argument("names", nargs="+")
    c = sub.add_parser("rm", aliases=["remove"], help="remove volumes")
    c.add_argument("-f", "--force", action="store_true")
    c.add_argument("names", nargs="+")
    c = sub.add_parser("prune", help="remove unused volumes (anonymous ones, all with -a)")
    c.add_argument("-a", "--all", action="store_true")
    c.add_argument("-f", "--force", action="store_true", help="do not prompt")
    c.add_argument("--filter", action="append", default=[], metavar="label=KEY[=VALUE]")


# -- berth volume ---------------------------------------------------------------

def dispatch(client, ns) -> int:
    return {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm, "remove": rm,
            "prune": prune}[ns.volume_verb](client, ns)


def create(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    from berth_docker.keyvalues import key_values
    if ns.name and ns.name_flag and ns.name != ns.name_flag:
        raise ValueError("conflicting options: either specify --name or provide positional arg, not both")
    volume = client.stub.CreateVolume(engine_pb2.CreateVolumeRequest(
        name=ns.name or ns.name_flag, driver=ns.driver, labels=key_values(ns.label, "label"),
        options=key_values(ns.opt, "option"))).volume
    print(volume.name)
    return 0


def ls(client, ns) -> int:
    from berth.engine.v1 import engine_pb2

    filters: dict[str, list[str]] = {}
    for f in ns.filter:
        key, eq, value = f.partition("=")
        if not eq or key not in ("name", "label", "dangling", "driver"):
            raise ValueError(f"invalid filter '{f}'")
        filters.setdefault(key, []).append(value)
    volumes = client.stub.ListVolumes(engine_pb2.ListVolumesRequest()).volumes
    rows = [v for v in volumes if _matches(v, filters)]
    if ns.quiet:
        for v in rows:
            print(v.name)
    elif (out := fmt.formatted(ns.format, [volume_row(v) for v in rows], VOLUME_HEADERS)) is not None:
        sys.stdout.write(out)
    else:
        print(fmt.table(("DRIVER", "VOLUME NAME"), [(v.driver, v.name) for v in rows]))
    return 0


VOLUME_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                  "Labels": "LABELS", "Label": "LABEL", "Links": "LINKS", "Size": "SIZE"}


def volume_row(v) -> dict:
    """What `volume ls --format` sees: docker's volume context fields."""
    from berth_cli.templates import Struct
    from berth_docker.units import human_size
    labels = dict(v.labels)
    return Struct(type_name="*formatter.volumeContext", **{
        # docker's ls has no usage data (only `system df -v` has): its Links and Size are N/A;
        # Availability, Group and Status are a cluster volume's.
        "Availability": "N/A", "Driver": v.driver, "Group": "N/A",
        "Labels": ",".join(f"{k}={val}" for k, val in sorted(labels.items())),
        "Links": "N/A", "Mountpoint": v.mountpoint,
        "Name": v.name, "Scope": v.scope or "local", "Size": human_size(v.size) if v.size >= 0 else "N/A",
        "Status": "N/A",
        "Label": lambda key: labels.get(key, "")})


def _matches(v, filters) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(x in v.name for x in values):
            return False
        if key == "driver" and v.driver not in values:
            return False
        if key == "dangling" and any((x in ("true", "1")) != (v.ref_count == 0) for x in values):
            return False
        if key == "label":
            for x in values:
                k, eq, val = x.partition("=")
                if k not in v.labels or (eq and v.labels[k] != val):
                    return False
    return True


def inspect(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    from berth_docker.shapes.volumes import volume_json
    template = fmt.inspect_template(ns.format)
    found, status = [], 0
    for name in ns.names:
        try:
            found.append(
                volume_json(client.stub.InspectVolume(engine_pb2.InspectVolumeRequest(name=name)).volume))
        except RpcError as err:
            if err.code() != StatusCode.NOT_FOUND:
                raise
            print(f"Error: No such volume: {name}", file=sys.stderr)
            status = 1
    fmt.write_inspect(found, template)
    return status


def rm(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    status = 0
    for name in ns.names:
        try:
            client.stub.RemoveVolume(engine_pb2.RemoveVolumeRequest(name=name))
            print(name)
        except RpcError as err:
            if ns.force and err.code() == StatusCode.NOT_FOUND:
                continue
            client.report(err)
            status = 1
    return status


def prune(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    labels = []
    for f in ns.filter:
        key, eq, value = f.partition("=")
        if key != "label" or not eq:
            raise ValueError(f"invalid filter '{f}'")
        labels.append(value)
    if not ns.force:
        what = "all local volumes" if ns.all else "all anonymous local volumes"
        print(f"WARNING! This will remove {what} not used by at least one container.\n"
              "Are you sure you want to continue? [y/N] ", end="", flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    response = client.stub.PruneVolumes(engine_pb2.PruneVolumesRequest(all=ns.all, labels=labels))
    if response.deleted:
        print("Deleted Volumes:")
        for name in response.deleted:
            print(name)
        print()
    from berth_docker.units import human_size
    print(f"Total reclaimed space: {human_size(response.space_reclaimed)}")
    return 0
