"""Mounts in docker's three syntaxes, one meaning: `-v`/HostConfig.Binds ("src:dst[:mode]"),
`--mount`/HostConfig.Mounts (structured) and `--tmpfs`/HostConfig.Tmpfs.

The CLI's --mount is read into the Docker API's Mount object and built by the same
`mount`, and -v and Binds go through the same `volume`, so a flag and an API field can
never disagree. What needs the host or the engine (does the path exist, is the name
valid) is checked by the engine.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: collections.abc loads all of collections (`berth run` imports this)
    from collections.abc import Mapping, Sequence

from berth.engine.v1 import engine_pb2
from berth_errors import InvalidArgument, not_implemented
from berth_docker.units import parse_bytes

PROPAGATIONS = frozenset({"private", "rprivate", "shared", "rshared", "slave", "rslave"})
# Docker Desktop's consistency modes: accepted and meaningless on Linux, as in docker.
_CONSISTENCY = frozenset({"consistent", "cached", "delegated"})
_MODES = frozenset({"ro", "rw", "z", "Z", "nocopy"}) | PROPAGATIONS | _CONSISTENCY
_TYPES = ("volume", "bind", "tmpfs")


def volume(spec: str) -> engine_pb2.MountSpec:
    """`-v [SRC:]DST[:MODE]` or one HostConfig.Binds entry, as docker reads them on Linux.

    A SRC starting with "/" is a bind mount, any other SRC a named volume, none an
    anonymous volume; MODE is a comma-separated list of ro/rw, z/Z, nocopy, a propagation
    and a consistency mode."""
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
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    if not dst.startswith("/") or (len(parts) == 3 and not src) or (len(parts) == 2 and src == ""
                                                                    and not mode):
        raise InvalidArgument(f"invalid volume specification: '{spec}'")
    modes = [m for m in mode.split(",") if m]
    if any(m not in _MODES for m in modes) or ("ro" in modes and "rw" in modes):
        raise InvalidArgument(f"invalid mode: {mode}")
    m = engine_pb2.MountSpec(target=dst, readonly="ro" in modes, volume_nocopy="nocopy" in modes)
    if src.startswith("/"):
        m.type, m.source, m.create_source = "bind", src, True
        m.options.extend(p for p in modes if p in PROPAGATIONS)
    else:
        m.type, m.source = "volume", src
    return m


def mount(spec: Mapping) -> engine_pb2.MountSpec:
    """One HostConfig.Mounts entry ({"Type": "bind", "Source": ..., "Target": ..., ...})."""
    from collections.abc import Mapping
    if not isinstance(spec, Mapping):
        raise InvalidArgument("invalid mount: expected an object")
    kind = spec.get("Type") or "volume"
    if kind not in _TYPES:
        raise InvalidArgument(f"mount type unknown: {kind!r}")
    m = engine_pb2.MountSpec(type=kind, source=spec.get("Source") or "", target=spec.get("Target") or "",
                             readonly=bool(spec.get("ReadOnly")))
    if not m.target:
        raise InvalidArgument("Target is required")
    _refuse_unhonoured(spec)
    bind_opts = spec.get("BindOptions") or {}
    if bind_opts.get("Propagation"):
        if bind_opts["Propagation"] not in PROPAGATIONS:
            raise InvalidArgument(f"invalid propagation mode: {bind_opts['Propagation']}")
        m.options.append(bind_opts["Propagation"])
    m.create_source = bool(bind_opts.get("CreateMountpoint"))
    vol = spec.get("VolumeOptions") or {}
    m.volume_nocopy = bool(vol.get("NoCopy"))
    m.volume_labels.update(vol.get("Labels") or {})
    subpath = vol.get("Subpath") or ""
    if not isinstance(subpath, str):
        raise InvalidArgument("invalid mount: VolumeOptions.Subpath must be a string")
    m.volume_subpath = subpath
    driver = (vol.get("DriverConfig") or {}).get("Name") or "local"
    if driver != "local":
        raise InvalidArgument(f"volume driver {driver!r} is not supported (only \"local\")")
    tmpfs_opts = spec.get("TmpfsOptions") or {}
    if tmpfs_opts.get("SizeBytes"):
        m.options.append(f"size={int(tmpfs_opts['SizeBytes'])}")
    if tmpfs_opts.get("Mode"):
        m.options.append(f"mode={int(tmpfs_opts['Mode']):o}")
    return m


# Mount options berth does not honour yet: set, each is refused naming it (never a mount
# that silently lacks it).
_UNHONOURED = (("BindOptions", "NonRecursive"), ("BindOptions", "ReadOnlyNonRecursive"),
               ("BindOptions", "ReadOnlyForceRecursive"), ("TmpfsOptions", "Options"))


def _refuse_unhonoured(spec: Mapping) -> None:
    from collections.abc import Mapping
    for group, key in _UNHONOURED:
        options = spec.get(group) or {}
        if not isinstance(options, Mapping):
            raise InvalidArgument(f"invalid mount: {group} must be an object")
        if options.get(key):
            raise not_implemented(f"mount option {group}.{key}")
    driver = (spec.get("VolumeOptions") or {}).get("DriverConfig") or {}
    if driver.get("Options"):
        raise not_implemented("mount option VolumeOptions.DriverConfig.Options")


def mount_flag(text: str) -> dict:
    """`--mount type=volume,src=data,dst=/data,readonly,volume-nocopy` as the Docker API's
    Mount object (what docker's CLI sends), for `mount` to build."""
    spec: dict = {"Type": "volume"}

    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(f"invalid argument \"{text}\" for \"--mount\" flag: {why}")

    def boolean(value: str) -> bool:
        if value.lower() in ("1", "true"):
            return True
        if value.lower() in ("0", "false"):
            return False
        raise bad(f"invalid value {value!r}")

    for field in text.split(","):
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro"):
            spec["ReadOnly"] = boolean(value) if eq else True
        elif key == "volume-nocopy":
            spec.setdefault("VolumeOptions", {})["NoCopy"] = boolean(value) if eq else True
        elif not eq:
            raise InvalidArgument(f"invalid field '{field}' must be a key=value pair")
        elif key == "type":
            if value not in _TYPES:
                raise bad(f"mount type unknown: {value!r}")
            spec["Type"] = value
        elif key in ("source", "src"):
            spec["Source"] = value
        elif key in ("destination", "dst", "target"):
            spec["Target"] = value
        elif key == "bind-propagation":
            spec.setdefault("BindOptions", {})["Propagation"] = value
        elif key == "volume-label":
            label_key, _, label_value = value.partition("=")
            spec.setdefault("VolumeOptions", {}).setdefault("Labels", {})[label_key] = label_value
        elif key == "volume-driver":
            spec.setdefault("VolumeOptions", {})["DriverConfig"] = {"Name": value}
        elif key == "volume-subpath":
            spec.setdefault("VolumeOptions", {})["Subpath"] = value
        elif key == "tmpfs-size":
            spec.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_bytes(value)
        elif key == "tmpfs-mode":
            try:
                spec.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
            except ValueError:
                raise InvalidArgument(f"invalid value for tmpfs-mode: {value}") from None
        else:
            raise InvalidArgument(f"unexpected key '{key}' in '{field}'")
    if not spec.get("Target"):
        raise bad("target is required")
    return spec


def tmpfs(target: str, options: str) -> engine_pb2.MountSpec:
    """A tmpfs at `target` with mount options "size=64m,mode=1777[,ro]" (HostConfig.Tmpfs, --tmpfs)."""
    opts = [o for o in (options or "").split(",") if o]
    m = engine_pb2.MountSpec(type="tmpfs", target=target, readonly="ro" in opts)
    m.options.extend(o for o in opts if o not in ("ro", "rw"))
    return m


def tmpfs_flag(spec: str) -> engine_pb2.MountSpec:
    """`--tmpfs /run[:size=64m,mode=1777]`."""
    target, _, options = spec.partition(":")
    return tmpfs(target, options)


def host_config_mounts(host: Mapping, volumes: Mapping | None) -> list[engine_pb2.MountSpec]:
    """Binds, Mounts, Tmpfs and Config.Volumes of a create request, in docker's order."""
    binds = host.get("Binds")
    if binds is not None and (not isinstance(binds, list) or not all(isinstance(b, str) for b in binds)):
        raise InvalidArgument("invalid Binds: expected a list of strings")
    out = [volume(b) for b in binds or []]
    out += [mount(m) for m in host.get("Mounts") or []]
    out += [tmpfs(target, opts) for target, opts in (host.get("Tmpfs") or {}).items()]
    taken = {m.target for m in out}
    # Config.Volumes ({"/data": {}}) asks for anonymous volumes where nothing else is mounted.
    out += [engine_pb2.MountSpec(type="volume", target=t) for t in (volumes or {}) if t not in taken]
    return out


def flag_mounts(volumes: Sequence[str], mounts: Sequence[str], tmpfs_specs: Sequence[str]) -> list[engine_pb2.MountSpec]:
    """The CLI's -v, --mount and --tmpfs flags, in that order."""
    return ([volume(v) for v in volumes] + [mount(mount_flag(m)) for m in mounts]
            + [tmpfs_flag(t) for t in tmpfs_specs])
