"""`berth volume ...` and the mount flags of run/create (-v, --mount, --tmpfs).

Flags are parsed here into structured MountSpec messages, as docker's CLI
does for --mount; what needs the host or the engine (does the path exist, is
the name valid) is checked by the engine. Importing this module is cheap:
gRPC and generated code are loaded by the functions that need them.
"""

from __future__ import annotations

import sys

from berth_cli import format as fmt

_MODES = {"ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared",
          "slave", "rslave", "consistent", "cached", "delegated"}
_PROPAGATIONS = {"private", "rprivate", "shared", "rshared", "slave", "rslave"}


def add_run_flags(p) -> None:
    p.add_argument("-v", "--volume", action="append", default=[], metavar="[SRC:]DST[:MODE]",
                   help="bind mount a host path or mount a volume")
    p.add_argument("--mount", action="append", default=[], metavar="type=...,dst=...",
                   help="attach a volume, bind or tmpfs mount")
    p.add_argument("--tmpfs", action="append", default=[], metavar="DST[:OPTS]")
    p.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]")


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
    c.add_argument("names", nargs="+")
    c = sub.add_parser("rm", aliases=["remove"], help="remove volumes")
    c.add_argument("-f", "--force", action="store_true")
    c.add_argument("names", nargs="+")
    c = sub.add_parser("prune", help="remove unused volumes (anonymous ones, all with -a)")
    c.add_argument("-a", "--all", action="store_true")
    c.add_argument("-f", "--force", action="store_true", help="do not prompt")
    c.add_argument("--filter", action="append", default=[], metavar="label=KEY[=VALUE]")


# -- mount flags ----------------------------------------------------------------

def parse_volume(spec: str):
    """`-v [SRC:]DST[:MODE]` as docker reads it on Linux."""
    from berth.engine.v1 import engine_pb2
    parts = spec.split(":")
    src, mode = "", ""
    if len(parts) == 1:
        dst = parts[0]
    elif len(parts) == 2 and all(m in _MODES for m in parts[1].split(",")):
        # `-v /data:ro` is an anonymous volume at /data, mounted read-only.
        dst, mode = parts
    elif len(parts) == 2:
        src, dst = parts
    elif len(parts) == 3:
        src, dst, mode = parts
    else:
        raise ValueError(f"invalid volume specification: '{spec}'")
    if not dst.startswith("/") or (len(parts) == 3 and not src) or (len(parts) == 2 and src == ""
                                                                    and not mode):
        raise ValueError(f"invalid volume specification: '{spec}'")
    modes = [m for m in mode.split(",") if m]
    if any(m not in _MODES for m in modes) or ("ro" in modes and "rw" in modes):
        raise ValueError(f"invalid mode: {mode}")
    m = engine_pb2.MountSpec(target=dst, readonly="ro" in modes, volume_nocopy="nocopy" in modes)
    if src.startswith("/"):
        m.type, m.source, m.create_source = "bind", src, True
        m.options.extend(p for p in modes if p in _PROPAGATIONS)
    else:
        m.type, m.source = "volume", src
    return m


def parse_mount(spec: str):
    """`--mount type=volume,src=data,dst=/data,readonly,volume-nocopy` and friends."""
    from berth.engine.v1 import engine_pb2
    m = engine_pb2.MountSpec(type="volume")
    for field in spec.split(","):
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro"):
            m.readonly = _bool(value, spec) if eq else True
        elif key == "volume-nocopy":
            m.volume_nocopy = _bool(value, spec) if eq else True
        elif not eq:
            raise ValueError(f"invalid field '{field}' must be a key=value pair")
        elif key == "type":
            if value not in ("volume", "bind", "tmpfs"):
                raise ValueError(f"invalid argument \"{spec}\" for \"--mount\" flag: "
                                 f"mount type unknown: {value!r}")
            m.type = value
        elif key in ("source", "src"):
            m.source = value
        elif key in ("destination", "dst", "target"):
            m.target = value
        elif key == "bind-propagation":
            if value not in _PROPAGATIONS:
                raise ValueError(f"invalid value for bind-propagation: {value}")
            m.options.append(value)
        elif key == "volume-label":
            label_key, _, label_value = value.partition("=")
            m.volume_labels[label_key] = label_value
        elif key == "tmpfs-size":
            m.options.append(f"size={fmt.parse_bytes(value)}")
        elif key == "tmpfs-mode":
            try:
                m.options.append(f"mode={int(value, 8):o}")
            except ValueError:
                raise ValueError(f"invalid value for tmpfs-mode: {value}") from None
        elif key == "volume-driver":
            if value != "local":
                raise ValueError(f"volume driver {value!r} is not supported (only \"local\")")
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    if not m.target:
        raise ValueError(f"invalid argument \"{spec}\" for \"--mount\" flag: target is required")
    return m


def _bool(value: str, spec: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise ValueError(f"invalid argument \"{spec}\" for \"--mount\" flag: invalid value {value!r}")


def parse_tmpfs(spec: str):
    """`--tmpfs /run[:size=64m,mode=1777]`."""
    from berth.engine.v1 import engine_pb2
    dst, _, opts = spec.partition(":")
    options = [o for o in opts.split(",") if o]
    m = engine_pb2.MountSpec(type="tmpfs", target=dst, readonly="ro" in options)
    m.options.extend(o for o in options if o not in ("ro", "rw"))
    return m


def mount_specs(ns) -> list:
    return ([parse_volume(v) for v in ns.volume] + [parse_mount(m) for m in ns.mount]
            + [parse_tmpfs(t) for t in ns.tmpfs])


# -- berth volume ---------------------------------------------------------------

def dispatch(client, ns) -> int:
    return {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm, "remove": rm,
            "prune": prune}[ns.volume_verb](client, ns)


def create(client, ns) -> int:
    from berth.engine.v1 import engine_pb2
    if ns.name and ns.name_flag and ns.name != ns.name_flag:
        raise ValueError("conflicting options: either specify --name or provide positional arg, not both")
    volume = client.stub.CreateVolume(engine_pb2.CreateVolumeRequest(
        name=ns.name or ns.name_flag, driver=ns.driver, labels=fmt.key_values(ns.label, "label"),
        options=fmt.key_values(ns.opt, "option"))).volume
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
    elif ns.format:
        for v in rows:
            print(ns.format.replace("{{.Name}}", v.name).replace("{{.Driver}}", v.driver)
                  .replace("{{.Mountpoint}}", v.mountpoint).replace("\\t", "\t"))
    else:
        print(fmt.table(("DRIVER", "VOLUME NAME"), [(v.driver, v.name) for v in rows]))
    return 0


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


def volume_json(v) -> dict:
    return {
        "CreatedAt": fmt.rfc3339(v.created_at.seconds) if v.created_at.seconds else "",
        "Driver": v.driver,
        "Labels": dict(v.labels),
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": dict(v.options) or None,
        "Scope": v.scope or "local",
        **({"UsageData": {"Size": v.size, "RefCount": v.ref_count}} if v.size >= 0 else {}),
    }


def inspect(client, ns) -> int:
    import json

    from berth_cli.transport import RpcError, StatusCode

    from berth.engine.v1 import engine_pb2
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
    print(json.dumps(found, indent=4))
    return status


def rm(client, ns) -> int:
    from berth_cli.transport import RpcError, StatusCode

    from berth.engine.v1 import engine_pb2
    status = 0
    for name in ns.names:
        try:
            client.stub.RemoveVolume(engine_pb2.RemoveVolumeRequest(name=name))
            print(name)
        except RpcError as err:
            if ns.force and err.code() == StatusCode.NOT_FOUND:
                continue
            print(client.describe(err), file=sys.stderr)
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
    print(f"Total reclaimed space: {fmt.human_size(response.space_reclaimed)}")
    return 0


def mount_json(m) -> dict:
    """One entry of docker inspect's "Mounts"."""
    out = {"Type": m.type}
    if m.type == "volume":
        out.update(Name=m.name, Source=m.source, Destination=m.destination, Driver=m.driver,
                   Mode=m.mode, RW=m.rw, Propagation="")
    else:
        out.update(Source=m.source, Destination=m.destination, Mode=m.mode, RW=m.rw,
                   Propagation=m.propagation)
    return out
