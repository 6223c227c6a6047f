"""Docker Engine API JSON <-> the gateway's engine types. Pure, so unit tests need no daemon.

What berth cannot do yet is refused here with a clear error (never accepted and
silently ignored): a `docker run -p 80:80` that answered 201 but published nothing
would be a lie.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import time
from collections.abc import Mapping, Sequence

from google.protobuf import timestamp_pb2

from berth.engine.v1 import engine_pb2
from berth.types.v1 import file_change_pb2
from berth.types.v1 import healthcheck_pb2
from berth.types.v1 import port_pb2
from berth.types.v1 import stdio_pb2
from services.common import errors
from services.common.humanize import human_duration
from services.common.reference import familiar
from services.gateway.docker.errors import not_implemented

ZERO_TIME = "0001-01-01T00:00:00Z"


# -- request parsing ------------------------------------------------------------------

def flag(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Docker's boolean query values: "1", "true", "True" are true; "0", "false", "" false."""
    value = query.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "false", "no")


def integer(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.InvalidArgument(f"invalid value for {name}: {value!r}") from None


def filters(query: Mapping[str, str]) -> dict[str, list[str]]:
    """The `filters` parameter: {"key": ["v", ...]} or the old {"key": {"v": true}} form."""
    raw = query.get("filters")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise errors.InvalidArgument(f"invalid filter: {raw!r}") from None
    if not isinstance(data, dict):
        raise errors.InvalidArgument(f"invalid filter: {raw!r}")
    out = {}
    for key, values in data.items():
        if isinstance(values, dict):
            out[key] = [v for v, on in values.items() if on]
        elif isinstance(values, list):
            out[key] = [str(v) for v in values]
        else:
            out[key] = [str(values)]
    return out


def timestamp(value: str | None) -> float | None:
    """`since`/`until`: unix seconds ("1700000000.123456789") or RFC 3339; "" or "0" means unset."""
    if value in (None, "", "0"):
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise errors.InvalidArgument(f"invalid time value: {value!r}") from None


def to_pb_time(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def rfc3339(ts: timestamp_pb2.Timestamp | None) -> str:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ZERO_TIME
    when = dt.datetime.fromtimestamp(ts.seconds, dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.nanos:09d}Z"


# -- containers: create --------------------------------------------------------------------

# HostConfig / Config keys berth honours; anything else non-empty is refused below.
_NETWORK_DEFAULTS = ("", "default")


def container_config(body: Mapping, name: str) -> engine_pb2.ContainerConfig:
    """A create request's JSON body (Config with HostConfig and NetworkingConfig inside)."""
    if not isinstance(body, Mapping):
        raise errors.InvalidArgument("invalid JSON: the body must be an object")
    host = body.get("HostConfig") or {}
    _refuse_unsupported(body, host)
    cfg = engine_pb2.ContainerConfig(image=body.get("Image") or "", name=name)
    cfg.cmd.extend(_strings(body.get("Cmd"), "Cmd"))
    if body.get("Entrypoint") is not None:
        cfg.entrypoint.values.extend(_strings(body.get("Entrypoint"), "Entrypoint"))
    cfg.env.extend(_strings(body.get("Env"), "Env"))
    cfg.working_dir = body.get("WorkingDir") or ""
    cfg.user = body.get("User") or ""
    cfg.hostname = body.get("Hostname") or ""
    cfg.labels.update({str(k): str(v) for k, v in (body.get("Labels") or {}).items()})
    mode = host.get("NetworkMode") or ""
    # "default" is the engine's default network, whichever that is: the gateway picks it.
    cfg.network_mode = "" if mode in _NETWORK_DEFAULTS else mode
    cfg.memory_bytes = int(host.get("Memory") or 0)
    cfg.nano_cpus = int(host.get("NanoCpus") or 0)
    cfg.cpu_shares = int(host.get("CpuShares") or 0)
    cfg.pids_limit = int(host.get("PidsLimit") or 0)
    cfg.auto_remove = bool(host.get("AutoRemove"))
    cfg.readonly_rootfs = bool(host.get("ReadonlyRootfs"))
    cfg.stop_signal = body.get("StopSignal") or ""
    if body.get("StopTimeout") is not None:
        cfg.stop_timeout = int(body["StopTimeout"])
    cfg.mounts.extend(mounts(host, body.get("Volumes")))
    cfg.ports.extend(port_bindings(host.get("PortBindings") or {}))
    cfg.publish_all = bool(host.get("PublishAllPorts"))
    for endpoint in ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).values():
        endpoint = endpoint or {}
        cfg.network_aliases.extend(endpoint.get("Aliases") or [])
        cfg.ipv4_address = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or cfg.ipv4_address
    cfg.volumes_from.extend(_strings(host.get("VolumesFrom"), "VolumesFrom"))
    cfg.tty = bool(body.get("Tty"))
    cfg.open_stdin = bool(body.get("OpenStdin"))
    cfg.stdin_once = bool(body.get("StdinOnce"))
    policy = host.get("RestartPolicy") or {}
    cfg.restart_policy.name = policy.get("Name") or ""
    cfg.restart_policy.maximum_retry_count = int(policy.get("MaximumRetryCount") or 0)
    if body.get("Healthcheck"):
        cfg.healthcheck.CopyFrom(healthcheck(body["Healthcheck"]))
    return cfg


def healthcheck(h: Mapping) -> healthcheck_pb2.HealthConfig:
    """Config.Healthcheck: Test (["CMD", ...], ["CMD-SHELL", "..."], ["NONE"]), durations in ns."""
    if not isinstance(h, Mapping):
        raise errors.InvalidArgument("invalid Healthcheck: expected an object")
    out = healthcheck_pb2.HealthConfig(test=_strings(h.get("Test"), "Healthcheck.Test"))
    for key, field in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"),
                       ("StartInterval", "start_interval")):
        value = int(h.get(key) or 0)
        if value < 0:
            raise errors.InvalidArgument(f"Healthcheck.{key} can't be negative")
        setattr(out, field, value)
    retries = int(h.get("Retries") or 0)
    if retries < 0:
        raise errors.InvalidArgument("Healthcheck.Retries can't be negative")
    out.retries = retries
    return out


def healthcheck_json(h: healthcheck_pb2.HealthConfig) -> dict:
    out = {"Test": list(h.test)}
    for key, field in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"),
                       ("StartInterval", "start_interval"), ("Retries", "retries")):
        if getattr(h, field):
            out[key] = getattr(h, field)
    return out


def health_json(h: engine_pb2.Health) -> dict:
    """State.Health: what `docker ps` shows as "(healthy)" and `inspect` prints."""
    return {"Status": h.status, "FailingStreak": h.failing_streak,
            "Log": [{"Start": rfc3339(e.start), "End": rfc3339(e.end), "ExitCode": e.exit_code,
                     "Output": e.output} for e in h.log]}


_MODES = {"ro", "rw", "z", "Z", "nocopy", "shared", "rshared", "slave", "rslave", "private", "rprivate"}
_PROPAGATIONS = {"shared", "rshared", "slave", "rslave", "private", "rprivate"}


def port_bindings(bindings: Mapping) -> list[port_pb2.PortBinding]:
    """{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}; an empty HostPort asks for an ephemeral one."""
    out = []
    for key, hosts in bindings.items():
        number, _, proto = key.partition("/")
        if not number.isdigit():
            raise errors.InvalidArgument(f"invalid port: {key!r}")
        for h in hosts or [{}]:
            host_port = (h or {}).get("HostPort") or "0"
            if "-" in host_port:
                raise not_implemented("host port ranges")
            if not host_port.isdigit():
                raise errors.InvalidArgument(f"invalid host port: {host_port!r}")
            out.append(port_pb2.PortBinding(protocol=proto or "tcp", host_ip=(h or {}).get("HostIp") or "",
                                            host_port=int(host_port), container_port=int(number)))
    return out


def ports_json(ports) -> dict:
    """NetworkSettings.Ports: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}."""
    out: dict = {}
    for p in ports:
        out.setdefault(f"{p.container_port}/{p.protocol or 'tcp'}", []).append(
            {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    return out


def mounts(host: Mapping, volumes: Mapping | None) -> list[engine_pb2.MountSpec]:
    """Binds ("src:dst[:opts]"), Mounts (structured), Tmpfs and Config.Volumes, in docker's order."""
    out = [bind(b) for b in _strings(host.get("Binds"), "Binds")]
    out += [mount(m) for m in host.get("Mounts") or []]
    for target, opts in (host.get("Tmpfs") or {}).items():
        options = [o for o in (opts or "").split(",") if o]
        m = engine_pb2.MountSpec(type="tmpfs", target=target, readonly="ro" in options)
        m.options.extend(o for o in options if o not in ("ro", "rw"))
        out.append(m)
    taken = {m.target for m in out}
    # Config.Volumes ({"/data": {}}) asks for anonymous volumes where nothing else is mounted.
    out += [engine_pb2.MountSpec(type="volume", target=t) for t in (volumes or {}) if t not in taken]
    return out


def bind(spec: str) -> engine_pb2.MountSpec:
    parts = spec.split(":")
    if len(parts) == 2:
        src, dst, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        src, dst, mode = parts
    else:
        raise errors.InvalidArgument(f"invalid volume specification: '{spec}'")
    modes = [m for m in mode.split(",") if m]
    if not src or not dst.startswith("/") or any(m not in _MODES for m in modes):
        raise errors.InvalidArgument(f"invalid volume specification: '{spec}'")
    m = engine_pb2.MountSpec(target=dst, readonly="ro" in modes, volume_nocopy="nocopy" in modes)
    if src.startswith("/"):
        m.type, m.source, m.create_source = "bind", src, True
        m.options.extend(p for p in modes if p in _PROPAGATIONS)
    else:
        m.type, m.source = "volume", src
    return m


def mount(spec: Mapping) -> engine_pb2.MountSpec:
    kind = spec.get("Type") or "volume"
    if kind not in ("volume", "bind", "tmpfs"):
        raise errors.InvalidArgument(f"mount type unknown: {kind!r}")
    m = engine_pb2.MountSpec(type=kind, source=spec.get("Source") or "", target=spec.get("Target") or "",
                             readonly=bool(spec.get("ReadOnly")))
    if not m.target:
        raise errors.InvalidArgument("Target is required")
    bind_opts = spec.get("BindOptions") or {}
    if bind_opts.get("Propagation"):
        m.options.append(bind_opts["Propagation"])
    m.create_source = bool(bind_opts.get("CreateMountpoint"))
    vol = spec.get("VolumeOptions") or {}
    m.volume_nocopy = bool(vol.get("NoCopy"))
    m.volume_labels.update(vol.get("Labels") or {})
    driver = (vol.get("DriverConfig") or {}).get("Name") or "local"
    if driver != "local":
        raise errors.InvalidArgument(f"volume driver {driver!r} is not supported (only \"local\")")
    tmpfs = spec.get("TmpfsOptions") or {}
    if tmpfs.get("SizeBytes"):
        m.options.append(f"size={int(tmpfs['SizeBytes'])}")
    if tmpfs.get("Mode"):
        m.options.append(f"mode={int(tmpfs['Mode']):o}")
    return m


def _strings(value, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        # docker accepts a bare string for Cmd/Entrypoint (one word each).
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.InvalidArgument(f"invalid {field}: expected a list of strings")
    return value


def _refuse_unsupported(body: Mapping, host: Mapping) -> None:
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    mode = host.get("NetworkMode") or ""
    extra = [n for n in endpoints if n not in (mode, "default", "bridge")]
    if extra:
        raise not_implemented("creating a container on more than one network (connect it afterwards)")
    if any((e or {}).get("Links") for e in endpoints.values()):
        raise not_implemented("links")
    for key in ("Privileged", "CapAdd", "Devices", "Dns", "ExtraHosts", "Links", "Sysctls"):
        if host.get(key):
            raise not_implemented(f"HostConfig.{key}")


# -- containers: inspect and list -----------------------------------------------------------

def container_json(info: engine_pb2.ContainerInfo) -> dict:
    """`GET /containers/{id}/json`: the fields the docker CLI and the SDKs read."""
    cfg = info.config
    state = info.state
    network = info.network_mode or "none"
    stop_timeout = cfg.stop_timeout if cfg.HasField("stop_timeout") else None
    return {
        "Id": info.id,
        "Created": rfc3339(info.created),
        "Path": info.path,
        "Args": list(info.args),
        "State": {
            "Status": state.status,
            "Running": state.running,
            "Paused": state.paused,
            "Restarting": state.restarting,
            "OOMKilled": state.oom_killed,
            "Dead": False,
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": rfc3339(state.started_at if state.HasField("started_at") else None),
            "FinishedAt": rfc3339(state.finished_at if state.HasField("finished_at") else None),
            **({"Health": health_json(state.health)} if state.HasField("health") else {}),
        },
        "Image": info.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": info.log_path,
        "Name": "/" + info.name,
        "RestartCount": info.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {
            "NetworkMode": network,
            "AutoRemove": cfg.auto_remove,
            "RestartPolicy": {"Name": cfg.restart_policy.name or "no",
                              "MaximumRetryCount": cfg.restart_policy.maximum_retry_count},
            "Memory": cfg.memory_bytes,
            "NanoCpus": cfg.nano_cpus,
            "CpuShares": cfg.cpu_shares,
            "PidsLimit": cfg.pids_limit or None,
            "ReadonlyRootfs": cfg.readonly_rootfs,
            "Binds": [f"{m.source}:{m.destination}" + ("" if m.rw else ":ro")
                      for m in info.mounts if m.type == "bind"] or None,
            "PortBindings": ports_json(cfg.ports),
            "PublishAllPorts": cfg.publish_all,
            # conmon writes k8s-file logs, but clients (docker-py's run) read logs back only when
            # they see "json-file": the name that means "the logs endpoint has everything".
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
        "GraphDriver": {"Name": "overlay", "Data": None},
        "Mounts": [mount_point_json(m) for m in info.mounts],
        "Config": {
            "Hostname": info.hostname,
            "Domainname": "",
            "User": cfg.user,
            "AttachStdin": cfg.open_stdin and cfg.stdin_once,
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "StdinOnce": cfg.stdin_once,
            "Env": list(info.env),
            "Cmd": list(cfg.cmd) or None,
            "Image": info.image,
            "Volumes": None,
            "WorkingDir": info.working_dir,
            "Entrypoint": list(cfg.entrypoint.values) if cfg.HasField("entrypoint") else None,
            "OnBuild": None,
            "Labels": dict(cfg.labels),
            "StopSignal": cfg.stop_signal or None,
            "StopTimeout": stop_timeout,
            **({"Healthcheck": healthcheck_json(cfg.healthcheck)} if cfg.HasField("healthcheck") else {}),
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": info.netns_path,
            "Ports": ports_json(info.ports),
            "IPAddress": info.networks[0].ipv4_address if info.networks else "",
            "Gateway": info.networks[0].gateway if info.networks else "",
            "Networks": {n.network: {"NetworkID": n.network_id, "EndpointID": "", "Gateway": n.gateway,
                                     "IPAddress": n.ipv4_address, "IPPrefixLen": n.prefix_len,
                                     "MacAddress": "", "Aliases": list(n.aliases) or None}
                         for n in info.networks} or {network: {}},
        },
    }


def container_summary(info: engine_pb2.ContainerInfo, now: float | None = None) -> dict:
    """One entry of `GET /containers/json` (what `docker ps` prints)."""
    command = " ".join([info.path, *info.args]).strip()
    return {
        "Id": info.id,
        "Names": ["/" + info.name],
        "Image": info.image,
        "ImageID": info.image_id,
        "Command": command,
        "Created": info.created.seconds,
        "Ports": [{"IP": p.host_ip or "0.0.0.0", "PrivatePort": p.container_port, "PublicPort": p.host_port,
                   "Type": p.protocol or "tcp"} for p in info.ports],
        "Labels": dict(info.config.labels),
        "State": info.state.status,
        "Status": status_text(info.state, now),
        "HostConfig": {"NetworkMode": info.network_mode or "none"},
        "NetworkSettings": {"Networks": {n.network: {"NetworkID": n.network_id, "IPAddress": n.ipv4_address,
                                                     "Gateway": n.gateway} for n in info.networks}},
        "Mounts": [mount_point_json(m) for m in info.mounts],
    }


def mount_point_json(m: engine_pb2.MountPoint) -> dict:
    out = {"Type": m.type, "Source": m.source, "Destination": m.destination, "Mode": m.mode,
           "RW": m.rw, "Propagation": m.propagation}
    if m.type == "volume":
        out.update(Name=m.name, Driver=m.driver)
    return out


def status_text(state: engine_pb2.ContainerState, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if state.status == "restarting":
        return f"Restarting ({state.exit_code}) {human_duration(now - state.finished_at.seconds)} ago"
    if state.status in ("running", "paused"):
        up = f"Up {human_duration(now - state.started_at.seconds)}"
        if state.status == "paused":
            return up + " (Paused)"
        health = state.health.status if state.HasField("health") else ""
        if health == "starting":
            return up + " (health: starting)"
        return up + (f" ({health})" if health in ("healthy", "unhealthy") else "")
    if state.status == "exited":
        if not state.HasField("finished_at"):
            return f"Exited ({state.exit_code})"
        return f"Exited ({state.exit_code}) {human_duration(now - state.finished_at.seconds)} ago"
    return state.status.capitalize()


def log_line(chunk: stdio_pb2.OutputChunk, timestamps: bool) -> bytes:
    if not timestamps:
        return chunk.data
    return rfc3339(chunk.time if chunk.HasField("time") else None).encode() + b" " + chunk.data


# -- images --------------------------------------------------------------------------------

def _image_config(info: engine_pb2.ImageInfo) -> dict:
    try:
        return json.loads(info.config_json) if info.config_json else {}
    except json.JSONDecodeError:
        return {}


def image_labels(info: engine_pb2.ImageInfo) -> dict:
    return (_image_config(info).get("config") or {}).get("Labels") or {}


def image_summary(info: engine_pb2.ImageInfo) -> dict:
    """One entry of `GET /images/json` (what `docker images` prints)."""
    return {
        "Id": info.id,
        "ParentId": "",
        "RepoTags": [familiar(t) for t in info.repo_tags] or ["<none>:<none>"],
        "RepoDigests": [familiar(d) for d in info.repo_digests] or ["<none>@<none>"],
        "Created": info.created.seconds,
        "Size": info.size,
        "SharedSize": -1,
        "VirtualSize": info.size,
        "Labels": image_labels(info) or None,
        "Containers": info.containers,
    }


def image_json(info: engine_pb2.ImageInfo) -> dict:
    """`GET /images/{name}/json` (what `docker image inspect` prints)."""
    config = _image_config(info)
    return {
        "Id": info.id,
        "RepoTags": [familiar(t) for t in info.repo_tags],
        "RepoDigests": [familiar(d) for d in info.repo_digests],
        "Parent": "",
        "Comment": _comment(config),
        "Created": rfc3339(info.created if info.HasField("created") else None),
        "DockerVersion": "",
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": info.architecture,
        "Os": info.os,
        "Size": info.size,
        "VirtualSize": info.size,
        "GraphDriver": {"Name": "overlay", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list(info.diff_ids)},
        "Metadata": {"LastTagTime": ZERO_TIME},
    }


def _comment(config: dict) -> str:
    history = config.get("history") or []
    return history[-1].get("comment", "") if history else ""


def image_history(info: engine_pb2.ImageInfo) -> list[dict]:
    """`GET /images/{name}/history`, newest first; only the top entry carries the id."""
    history = _image_config(info).get("history") or []
    entries = []
    for i, h in enumerate(reversed(history)):
        created = timestamp(h.get("created")) if h.get("created") else 0
        entries.append({
            "Id": info.id if i == 0 else "<missing>",
            "Created": int(created or 0),
            "CreatedBy": h.get("created_by", ""),
            "Tags": [familiar(t) for t in info.repo_tags] if i == 0 else None,
            "Size": info.size if i == len(history) - 1 else 0,
            "Comment": h.get("comment", ""),
        })
    if not entries:
        entries.append({"Id": info.id, "Created": info.created.seconds, "CreatedBy": "",
                        "Tags": [familiar(t) for t in info.repo_tags], "Size": info.size, "Comment": ""})
    return entries


_IMAGE_FILTERS = ("reference", "dangling", "label", "before", "since")


def filter_images(infos: Sequence[engine_pb2.ImageInfo], flt: Mapping[str, Sequence[str]],
                  by_ref: Mapping[str, str] | None = None) -> list[engine_pb2.ImageInfo]:
    """docker images filters: values of one key OR-ed (labels AND-ed), keys AND-ed.
    `by_ref` resolves before/since references to image ids."""
    unknown = sorted(set(flt) - set(_IMAGE_FILTERS))
    if unknown:
        raise errors.InvalidArgument(f"invalid filter '{unknown[0]}'")
    by_ref = by_ref or {}
    created = {i.id: i.created.seconds for i in infos}
    out = []
    for info in infos:
        if "dangling" in flt:
            want = [v.lower() in ("1", "true") for v in flt["dangling"]]
            if (not info.repo_tags) not in want:
                continue
        if flt.get("reference"):
            names = [familiar(t) for t in info.repo_tags]
            if not any(_reference_matches(p, n) for p in flt["reference"] for n in names):
                continue
        if flt.get("label"):
            labels = image_labels(info)
            if not all(labels.get(k) == v if eq else k in labels
                       for k, eq, v in (f.partition("=") for f in flt["label"])):
                continue
        if flt.get("before"):
            if not all(info.created.seconds < created.get(by_ref.get(r, ""), 0) for r in flt["before"]):
                continue
        if flt.get("since"):
            if not all(info.created.seconds > created.get(by_ref.get(r, ""), 1 << 62) for r in flt["since"]):
                continue
        out.append(info)
    return out


def _reference_matches(pattern: str, name: str) -> bool:
    """`reference=busybox` matches busybox:<any tag>; `busybox:1*` globs the tag too."""
    repo, _, _tag = name.rpartition(":")
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(repo, pattern)


# -- events and system ----------------------------------------------------------------------

def event_json(event) -> dict:
    """One message of `GET /events`, with the legacy status/id/from keys the old clients read."""
    nanos = int(event.time * 1e9)
    message = {
        "Type": event.type,
        "Action": event.action,
        "Actor": {"ID": event.actor_id, "Attributes": dict(event.attributes)},
        "scope": "local",
        "time": nanos // 1_000_000_000,
        "timeNano": nanos,
    }
    if event.type == "container":
        message.update(status=event.action, id=event.actor_id, **{"from": event.attributes.get("image", "")})
    elif event.type == "image":
        message.update(status=event.action, id=event.actor_id)
    return message


def network_json(n: engine_pb2.NetworkInfo) -> dict:
    ipam = [{k: v for k, v in (("Subnet", n.subnet), ("Gateway", n.gateway), ("IPRange", n.ip_range)) if v}]
    return {"Name": n.name, "Id": n.id, "Created": n.created or ZERO_TIME, "Scope": "local", "Driver": n.driver,
            "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": ipam if n.subnet else []},
            "Internal": n.internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": {c: {} for c in n.containers},
            "Options": {"com.docker.network.bridge.name": n.bridge} if n.bridge else {},
            "Labels": dict(n.labels)}


def volume_json(v: engine_pb2.VolumeInfo) -> dict:
    out = {"Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint,
           "CreatedAt": rfc3339(v.created_at if v.HasField("created_at") else None),
           "Labels": dict(v.labels), "Scope": v.scope or "local", "Options": dict(v.options) or None}
    if v.size >= 0 and v.HasField("created_at"):
        out["UsageData"] = {"Size": v.size, "RefCount": v.ref_count}
    return out


# -- exec, stats, files, update ---------------------------------------------------------------

def exec_json(info: engine_pb2.ExecInfo) -> dict:
    """`GET /exec/{id}/json`; ExitCode is null until the process ended, as in docker."""
    cmd = list(info.cmd)
    return {
        "ID": info.id, "ContainerID": info.container_id, "Running": info.running,
        "ExitCode": info.exit_code if info.exited else None, "Pid": info.pid,
        "OpenStdin": info.open_stdin, "OpenStdout": True, "OpenStderr": True,
        "CanRemove": False, "DetachKeys": "",
        "ProcessConfig": {"tty": info.tty, "entrypoint": cmd[0] if cmd else "", "arguments": cmd[1:],
                          "privileged": False, "user": info.user},
    }


def _stats_time(s: engine_pb2.GetContainerStatsResponse | None) -> str:
    return rfc3339(s.time if s is not None and s.HasField("time") else None)


def _cpu_json(s: engine_pb2.GetContainerStatsResponse | None) -> dict:
    if s is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {"cpu_usage": {"total_usage": s.cpu_usage_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": s.system_cpu_ns, "online_cpus": s.online_cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def stats_json(
    s: engine_pb2.GetContainerStatsResponse, previous: engine_pb2.GetContainerStatsResponse | None) -> dict:
    """One message of `GET /containers/{id}/stats` in docker's (cgroup v2) shape.

    The CLI computes CPU % as Δcpu_usage.total_usage / Δsystem_cpu_usage × online_cpus × 100
    between cpu_stats and precpu_stats, and memory % as usage / limit."""
    return {
        "name": "/" + s.name.lstrip("/"), "id": s.id,
        "read": _stats_time(s), "preread": _stats_time(previous),
        "pids_stats": {"current": s.pids},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": s.block_read_bytes},
            {"major": 0, "minor": 0, "op": "write", "value": s.block_write_bytes}],
            "io_serviced_recursive": None, "io_queue_recursive": None, "io_service_time_recursive": None,
            "io_wait_time_recursive": None, "io_merged_recursive": None, "io_time_recursive": None,
            "sectors_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": _cpu_json(s),
        "precpu_stats": _cpu_json(previous),
        "memory_stats": {"usage": s.memory_usage, "limit": s.memory_limit, "stats": {}},
        "networks": {"eth0": {"rx_bytes": s.net_rx_bytes, "rx_packets": 0, "rx_errors": 0, "rx_dropped": 0,
                              "tx_bytes": s.net_tx_bytes, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0}},
    }


# Go's os.FileMode type bits, which X-Docker-Container-Path-Stat carries (not unix st_mode).
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE = 1 << 31, 1 << 27, 1 << 26, 1 << 25
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def path_stat(member) -> dict:
    """The stat of a copied path from its archive's first member (a tarfile.TarInfo)."""
    mode = member.mode & 0o777
    if member.isdir():
        mode |= _GO_DIR
    elif member.issym():
        mode |= _GO_SYMLINK
    elif member.ischr():
        mode |= _GO_DEVICE | _GO_CHARDEV
    elif member.isblk():
        mode |= _GO_DEVICE
    elif member.isfifo():
        mode |= _GO_PIPE
    for bit, go in ((0o4000, _GO_SETUID), (0o2000, _GO_SETGID), (0o1000, _GO_STICKY)):
        if member.mode & bit:
            mode |= go
    when = to_pb_time(float(member.mtime))
    return {"name": member.name.rstrip("/").rsplit("/", 1)[-1] or "/", "size": member.size, "mode": mode,
            "mtime": rfc3339(when), "linkTarget": member.linkname if member.issym() else ""}


_CHANGE_KINDS = {"C": 0, "A": 1, "D": 2}


def change_json(change: file_change_pb2.FileChange) -> dict:
    """`GET /containers/{id}/changes`: Kind 0 modified, 1 added, 2 deleted."""
    return {"Path": change.path, "Kind": _CHANGE_KINDS.get(change.kind, 0)}


_UPDATE_FIELDS = {"Memory": "memory_bytes", "NanoCpus": "nano_cpus", "CpuShares": "cpu_shares",
                  "PidsLimit": "pids_limit"}
# Sent by the CLI with every update; zero means "leave as it is", as in docker.
_UPDATE_IGNORED = {"RestartPolicy", "MemorySwap", "MemoryReservation", "KernelMemory", "BlkioWeight",
                   "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus",
                   "CpusetMems", "Devices", "DeviceCgroupRules", "DeviceRequests", "MemorySwappiness",
                   "OomKillDisable", "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps",
                   "IOMaximumBandwidth", "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps",
                   "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "CgroupParent", "KernelMemoryTCP"}


def update_request(ref: str, body: Mapping) -> tuple[engine_pb2.UpdateContainerResourcesRequest | None,
                                                     engine_pb2.RestartPolicy | None]:
    """`POST /containers/{id}/update`: the resources to change (None: none) and a new restart policy."""
    for key, value in body.items():
        if key not in _UPDATE_FIELDS and key not in _UPDATE_IGNORED and value not in (None, 0, "", [], {}, False):
            raise errors.InvalidArgument(f"unknown update field {key!r}")
        if key in _UPDATE_IGNORED and key != "RestartPolicy" and value not in (None, 0, "", [], {}, False):
            raise not_implemented(f"updating {key}")
    request = engine_pb2.UpdateContainerResourcesRequest(id=ref)
    changed = False
    for key, field in _UPDATE_FIELDS.items():
        value = body.get(key)
        if value is None or (value == 0 and key != "PidsLimit"):
            continue
        # PidsLimit 0 or -1 means unlimited in docker; berth spells unlimited 0.
        setattr(request, field, max(int(value), 0) if key == "PidsLimit" else int(value))
        changed = True
    policy = None
    raw = body.get("RestartPolicy") or {}
    if raw.get("Name"):
        policy = engine_pb2.RestartPolicy(name=raw["Name"], maximum_retry_count=int(raw.get("MaximumRetryCount") or 0))
    return (request if changed else None), policy
