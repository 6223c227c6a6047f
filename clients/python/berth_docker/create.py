"""Docker API request bodies -> engine requests: container create and update.

What berth cannot do yet is refused here with a clear error (never accepted and
silently ignored): a `docker run --dns` that answered 201 but used no such server
would be a lie.
"""

from __future__ import annotations

from collections.abc import Mapping

from berth.engine.v1 import engine_pb2
from berth.types.v1 import healthcheck_pb2
from berth_errors import InvalidArgument, not_implemented
from berth_docker import mounts as mounts_mod
from berth_docker import ports as ports_mod

# "default" is the engine's default network, whichever that is: the gateway picks it.
_NETWORK_DEFAULTS = ("", "default")


def container_config(body: Mapping, name: str) -> engine_pb2.ContainerConfig:
    """A create request's JSON body (Config with HostConfig and NetworkingConfig inside)."""
    if not isinstance(body, Mapping):
        raise InvalidArgument("invalid JSON: the body must be an object")
    host = _object(body, "HostConfig", "")
    _check_types(body, _CONFIG_TYPES, "")
    _check_types(host, _HOST_TYPES, "HostConfig.")
    _refuse_unsupported(body, host)
    cfg = engine_pb2.ContainerConfig(image=body.get("Image") or "", name=name)
    cfg.cmd.extend(_strings(body.get("Cmd"), "Cmd"))
    if body.get("Entrypoint") is not None:
        cfg.entrypoint.values.extend(_strings(body.get("Entrypoint"), "Entrypoint"))
    cfg.env.extend(_bounded(_strings(body.get("Env"), "Env"), "Env", MAX_ENV_BYTES))
    cfg.working_dir = body.get("WorkingDir") or ""
    cfg.user = body.get("User") or ""
    cfg.hostname = body.get("Hostname") or ""
    labels = _string_map(body.get("Labels"), "Labels")
    _bounded([*labels, *labels.values()], "Labels", MAX_LABEL_BYTES)
    cfg.labels.update(labels)
    mode = host.get("NetworkMode") or ""
    cfg.network_mode = "" if mode in _NETWORK_DEFAULTS else mode
    cfg.memory_bytes = host.get("Memory") or 0
    cfg.nano_cpus = host.get("NanoCpus") or 0
    cfg.cpu_shares = host.get("CpuShares") or 0
    cfg.auto_remove = bool(host.get("AutoRemove"))
    cfg.readonly_rootfs = bool(host.get("ReadonlyRootfs"))
    cfg.stop_signal = body.get("StopSignal") or ""
    if body.get("StopTimeout") is not None:
        if not -(1 << 31) <= body["StopTimeout"] < (1 << 31):
            raise InvalidArgument(f"invalid StopTimeout: {body['StopTimeout']} seconds is out of range")
        cfg.stop_timeout = body["StopTimeout"]
    cfg.mounts.extend(mounts_mod.host_config_mounts(host, body.get("Volumes")))
    cfg.ports.extend(ports_mod.port_bindings(host.get("PortBindings") or {}))
    # Exposing without publishing opens nothing on berth's bridge (every port of a container
    # is reachable there): the ports are shown, as docker shows them.
    for key in body.get("ExposedPorts") or {}:
        number, proto = ports_mod.port_key(key)
        if f"{number}/{proto}" not in cfg.exposed_ports:
            cfg.exposed_ports.append(f"{number}/{proto}")
    cfg.publish_all = bool(host.get("PublishAllPorts"))
    _endpoint_settings(body, host, cfg)
    cfg.volumes_from.extend(_strings(host.get("VolumesFrom"), "HostConfig.VolumesFrom"))
    cfg.tty = bool(body.get("Tty"))
    cfg.open_stdin = bool(body.get("OpenStdin"))
    cfg.stdin_once = bool(body.get("StdinOnce"))
    policy = _object(host, "RestartPolicy", "HostConfig.")
    _check_types(policy, {"Name": str, "MaximumRetryCount": int}, "HostConfig.RestartPolicy.")
    cfg.restart_policy.name = policy.get("Name") or ""
    cfg.restart_policy.maximum_retry_count = policy.get("MaximumRetryCount") or 0
    if body.get("Healthcheck"):
        cfg.healthcheck.CopyFrom(healthcheck(body["Healthcheck"]))
    _isolation(host, cfg)
    confinement(host, cfg)
    _log_config(cfg, host.get("LogConfig"))
    _userns(cfg, host)
    return cfg


def _userns(cfg: engine_pb2.ContainerConfig, host: Mapping) -> None:
    """HostConfig.UsernsMode: "" (the daemon's) or "host"; the engine refuses the rest."""
    mode = host.get("UsernsMode") or ""
    if not isinstance(mode, str):
        raise InvalidArgument("invalid HostConfig.UsernsMode: expected a string")
    cfg.userns_mode = mode


def create_warnings(body: Mapping) -> list[str]:
    """What a create asked for that this kernel cannot give and dockerd, on the same kernel,
    discards with a warning in the create answer (cgroup v2 has no swappiness or kernel memory)."""
    host = body.get("HostConfig") or {}
    out = []
    if host.get("MemorySwappiness") not in (None, -1):
        out.append("Your kernel does not support memory swappiness capabilities or the cgroup is not "
                   "mounted. Memory swappiness discarded.")
    if host.get("KernelMemory"):
        out.append("Your kernel does not support kernel memory limit capabilities or the cgroup is not "
                   "mounted. Limitation discarded.")
    if host.get("KernelMemoryTCP"):
        out.append("Your kernel does not support kernel memory TCP limit capabilities or the cgroup is "
                   "not mounted. Limitation discarded.")
    return out


def _isolation(host: Mapping, cfg: engine_pb2.ContainerConfig) -> None:
    isolation = host.get("Isolation") or ""
    if isolation not in ("", "default"):
        # dockerd's answer on Linux, where namespaces are the only isolation.
        raise InvalidArgument(f"invalid isolation: {isolation!r} - linux only supports 'default'")
    cfg.isolation = isolation
    cgroupns = host.get("CgroupnsMode") or ""
    if cgroupns not in ("", "host", "private"):
        raise InvalidArgument(f"invalid cgroup namespace mode: {cgroupns}")
    cfg.cgroupns_mode = cgroupns
    driver = host.get("VolumeDriver") or ""
    # dockerd uses the container's volume driver only for the volumes the container makes:
    # with none to make, any name is kept and means nothing, as there.
    if driver not in ("", "local") and any(m.type == "volume" for m in cfg.mounts):
        raise InvalidArgument(f"volume driver {driver!r} is not supported (only \"local\")")
    cfg.volume_driver = driver


def confinement(host: Mapping, cfg: engine_pb2.ContainerConfig) -> None:
    """HostConfig's security and further resource keys onto `cfg` (their JSON types were
    checked with _HOST_TYPES; the engine checks the values)."""
    # PidsLimit: absent takes the engine's default; 0 and -1 are unlimited, as in docker.
    if host.get("PidsLimit") is not None:
        limit = host["PidsLimit"]
        cfg.pids_limit = limit if limit > 0 else -1
    cfg.privileged = bool(host.get("Privileged"))
    cfg.cap_add.extend(_strings(host.get("CapAdd"), "HostConfig.CapAdd"))
    cfg.cap_drop.extend(_strings(host.get("CapDrop"), "HostConfig.CapDrop"))
    for d in host.get("Devices") or []:
        if not isinstance(d, Mapping) or not d.get("PathOnHost"):
            raise InvalidArgument("invalid HostConfig.Devices: each needs PathOnHost")
        cfg.devices.add(path_on_host=d["PathOnHost"], path_in_container=d.get("PathInContainer") or "",
                        cgroup_permissions=d.get("CgroupPermissions") or "rwm")
    cfg.device_cgroup_rules.extend(_strings(host.get("DeviceCgroupRules"), "HostConfig.DeviceCgroupRules"))
    cfg.sysctls.update({str(k): str(v) for k, v in (host.get("Sysctls") or {}).items()})
    for u in host.get("Ulimits") or []:
        if not isinstance(u, Mapping) or not u.get("Name"):
            raise InvalidArgument("invalid HostConfig.Ulimits: each needs Name, Soft and Hard")
        cfg.ulimits.add(name=u["Name"], soft=int(u.get("Soft") or 0), hard=int(u.get("Hard") or 0))
    cfg.group_add.extend(_strings(host.get("GroupAdd"), "HostConfig.GroupAdd"))
    cfg.pid_mode = host.get("PidMode") or ""
    cfg.ipc_mode = host.get("IpcMode") or ""
    cfg.uts_mode = host.get("UTSMode") or ""
    cfg.cpuset_cpus = host.get("CpusetCpus") or ""
    cfg.cpuset_mems = host.get("CpusetMems") or ""
    cfg.memory_swap = host.get("MemorySwap") or 0
    cfg.memory_reservation = host.get("MemoryReservation") or 0
    cfg.oom_kill_disable = bool(host.get("OomKillDisable"))
    cfg.oom_score_adj = host.get("OomScoreAdj") or 0
    cfg.shm_size = host.get("ShmSize") or 0
    cfg.init = bool(host.get("Init"))
    cfg.runtime = host.get("Runtime") or ""
    cfg.security_opt.extend(_strings(host.get("SecurityOpt"), "HostConfig.SecurityOpt"))


def ulimit(text: str):
    """The CLI's --ulimit name=soft[:hard] (-1 is unlimited)."""
    from berth.types.v1 import security_pb2
    name, eq, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        values = (int(soft), int(hard or soft))
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {text}") from None
    if not name or not eq:
        raise InvalidArgument(f"invalid ulimit argument: {text}")
    return security_pb2.Ulimit(name=name, soft=values[0], hard=values[1])


def device(text: str):
    """The CLI's --device host[:container][:permissions]."""
    from berth.types.v1 import security_pb2
    parts = text.split(":")
    perms = "rwm"
    if len(parts) > 1 and parts[-1] and set(parts[-1]) <= set("rwm") and not parts[-1].startswith("/"):
        perms = parts.pop()
    if len(parts) > 2 or not parts[0]:
        raise InvalidArgument(f"invalid device specification: {text}")
    return security_pb2.DeviceMapping(path_on_host=parts[0], path_in_container=parts[1] if len(parts) > 1 else "",
                                      cgroup_permissions=perms)


def _log_config(cfg: engine_pb2.ContainerConfig, value) -> None:
    """HostConfig.LogConfig {Type, Config}: the engine checks the driver and its options
    (an unknown one is refused, naming it); Type "" is the daemon default."""
    if not value:
        return
    if not isinstance(value, Mapping):
        raise InvalidArgument("invalid HostConfig.LogConfig: expected an object")
    driver, options = value.get("Type") or "", value.get("Config") or {}
    if not isinstance(driver, str):
        raise InvalidArgument("invalid HostConfig.LogConfig.Type: expected a string")
    if not isinstance(options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise InvalidArgument("invalid HostConfig.LogConfig.Config: expected an object of strings")
    if driver or options:
        cfg.log_config.CopyFrom(engine_pb2.LogConfig(driver=driver, options=dict(options)))


def healthcheck(h: Mapping) -> healthcheck_pb2.HealthConfig:
    """Config.Healthcheck: Test (["CMD", ...], ["CMD-SHELL", "..."], ["NONE"]), durations in ns."""
    if not isinstance(h, Mapping):
        raise InvalidArgument("invalid Healthcheck: expected an object")
    _check_types(h, {"Interval": int, "Timeout": int, "StartPeriod": int, "StartInterval": int, "Retries": int},
                 "Healthcheck.")
    out = healthcheck_pb2.HealthConfig(test=_strings(h.get("Test"), "Healthcheck.Test"))
    for key, field in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"),
                       ("StartInterval", "start_interval")):
        value = int(h.get(key) or 0)
        if value < 0:
            raise InvalidArgument(f"Healthcheck.{key} can't be negative")
        setattr(out, field, value)
    retries = int(h.get("Retries") or 0)
    if not 0 <= retries < (1 << 31):
        raise InvalidArgument("Healthcheck.Retries can't be negative" if retries < 0
                              else f"Healthcheck.Retries {retries} is out of range")
    out.retries = retries
    return out


def restart_policy(text: str) -> engine_pb2.RestartPolicy:
    """The CLI's --restart: no, always, unless-stopped, on-failure[:max-retries]."""
    name, colon, count = text.partition(":")
    policy = engine_pb2.RestartPolicy(name=name)
    if colon:
        try:
            policy.maximum_retry_count = int(count)
        except ValueError:
            raise InvalidArgument("invalid restart policy format: maximum retry count must be an "
                                  f"integer: {text}") from None
    return policy


def _strings(value, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        # docker accepts a bare string for Cmd/Entrypoint (one word each).
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid {field}: expected a list of strings")
    return value


# Legal but huge values are bounded, so that every listing that carries them stays fast:
# labels as a whole (docker has no limit; 11 MB of them made `ps -a` take 48 s), and the
# environment at what execve takes anyway (the kernel's ARG_MAX, shared with the arguments).
MAX_LABEL_BYTES = 256 << 10
MAX_ENV_BYTES = 1 << 20


def _bounded(values: list[str], field: str, limit: int) -> list[str]:
    size = sum(len(v.encode()) for v in values)
    if size > limit:
        raise InvalidArgument(f"invalid {field}: {size} bytes in all, at most {limit} are accepted")
    return values


def _string_map(value, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"invalid {field}: expected an object of strings")
    return dict(value)


def _object(body: Mapping, key: str, prefix: str) -> Mapping:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"invalid {prefix}{key}: expected an object, got {_json_type(value)}")
    return value


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


_TYPE_NAMES = {int: "an integer", str: "a string", bool: "a boolean", list: "an array", dict: "an object"}


def _check_types(obj: Mapping, types: Mapping[str, type], prefix: str) -> None:
    """JSON types as docker's decoder wants them: a wrong one is a 400 naming the field,
    never a Python error (`{"HostConfig": {"Memory": "x"}}`). null is the zero value."""
    for key, want in types.items():
        value = obj.get(key)
        if value is None:
            continue
        ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))) or (
            want is dict and isinstance(value, Mapping))
        if not ok:
            raise InvalidArgument(f"invalid {prefix}{key}: expected {_TYPE_NAMES[want]}, got {_json_type(value)}")
        if want is int and not -(1 << 63) <= value < (1 << 63):
            raise InvalidArgument(f"invalid {prefix}{key}: {value} is out of range for a 64-bit integer")


# The Docker API's create body, field by field: the JSON type each must have (values of
# other types are 400), and below what berth does not honour yet.
_CONFIG_TYPES = {
    "Hostname": str, "Domainname": str, "User": str, "AttachStdin": bool, "AttachStdout": bool,
    "AttachStderr": bool, "ExposedPorts": dict, "Tty": bool, "OpenStdin": bool, "StdinOnce": bool,
    "Healthcheck": dict, "ArgsEscaped": bool, "Image": str, "Volumes": dict, "WorkingDir": str,
    "NetworkDisabled": bool, "MacAddress": str, "OnBuild": list, "Labels": dict, "StopSignal": str,
    "StopTimeout": int, "Shell": list, "NetworkingConfig": dict, "Env": list,
}
_HOST_TYPES = {
    "CpuShares": int, "Memory": int, "CgroupParent": str, "BlkioWeight": int, "BlkioWeightDevice": list,
    "BlkioDeviceReadBps": list, "BlkioDeviceWriteBps": list, "BlkioDeviceReadIOps": list,
    "BlkioDeviceWriteIOps": list, "CpuPeriod": int, "CpuQuota": int, "CpuRealtimePeriod": int,
    "CpuRealtimeRuntime": int, "CpusetCpus": str, "CpusetMems": str, "Devices": list,
    "DeviceCgroupRules": list, "DeviceRequests": list, "KernelMemory": int, "KernelMemoryTCP": int,
    "MemoryReservation": int, "MemorySwap": int, "MemorySwappiness": int, "NanoCpus": int,
    "OomKillDisable": bool, "Init": bool, "PidsLimit": int, "Ulimits": list, "CpuCount": int,
    "CpuPercent": int, "IOMaximumIOps": int, "IOMaximumBandwidth": int, "Binds": list,
    "ContainerIDFile": str, "LogConfig": dict, "NetworkMode": str, "PortBindings": dict,
    "RestartPolicy": dict, "AutoRemove": bool, "VolumeDriver": str, "VolumesFrom": list, "Mounts": list,
    "ConsoleSize": list, "Annotations": dict, "CapAdd": list, "CapDrop": list, "CgroupnsMode": str,
    "Dns": list, "DnsOptions": list, "DnsSearch": list, "ExtraHosts": list, "GroupAdd": list,
    "IpcMode": str, "Cgroup": str, "Links": list, "OomScoreAdj": int, "PidMode": str, "Privileged": bool,
    "PublishAllPorts": bool, "ReadonlyRootfs": bool, "SecurityOpt": list, "StorageOpt": dict,
    "Tmpfs": dict, "UTSMode": str, "UsernsMode": str, "ShmSize": int, "Sysctls": dict, "Runtime": str,
    "Isolation": str, "MaskedPaths": list, "ReadonlyPaths": list,
}

# What berth does not honour yet: a value other than the field's default answers 501
# naming the field, never a container that silently lacks it. Whoever implements one
# parses it in their own helper and deletes its line here.
_UNHONOURED_CONFIG = ("Domainname", "NetworkDisabled", "OnBuild", "Shell")
_UNHONOURED_HOST = (
    "DeviceRequests", "CgroupParent", "BlkioWeight", "BlkioWeightDevice", "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota",
    "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuCount", "CpuPercent", "IOMaximumIOps",
    "IOMaximumBandwidth", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "Cgroup",
    "StorageOpt", "MaskedPaths", "ReadonlyPaths", "Annotations",
)


def _unset(value) -> bool:
    return value in (None, "", 0, False, [], {})


def _endpoint_settings(body: Mapping, host: Mapping, cfg: engine_pb2.ContainerConfig) -> None:
    """NetworkingConfig's endpoint (its first network), HostConfig.Links and the old
    Config.MacAddress, into the container's network settings."""
    settings = cfg.endpoint_settings
    for endpoint in ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}).values():
        endpoint = endpoint or {}
        if not isinstance(endpoint, Mapping):
            raise InvalidArgument("invalid EndpointsConfig entry: expected an object")
        ipam = endpoint.get("IPAMConfig") or {}
        cfg.network_aliases.extend(_strings(endpoint.get("Aliases"), "Aliases"))
        cfg.ipv4_address = ipam.get("IPv4Address") or cfg.ipv4_address
        settings.ipv6_address = ipam.get("IPv6Address") or settings.ipv6_address
        settings.link_local_ips.extend(_strings(ipam.get("LinkLocalIPs"), "LinkLocalIPs"))
        settings.links.extend(_strings(endpoint.get("Links"), "Links"))
        settings.mac_address = endpoint.get("MacAddress") or settings.mac_address
        opts = endpoint.get("DriverOpts") or {}
        if not isinstance(opts, Mapping):
            raise InvalidArgument("invalid DriverOpts: expected an object of strings")
        settings.driver_opts.update({str(k): str(v) for k, v in opts.items()})
    # Legacy links: on a user-defined network docker treats them as the endpoint's links.
    # (the docker CLI sends them in both places).
    links = [*settings.links, *_strings(host.get("Links"), "HostConfig.Links")]
    del settings.links[:]
    settings.links.extend(dict.fromkeys(links))
    settings.mac_address = settings.mac_address or body.get("MacAddress") or ""
    if cfg.network_mode.startswith("container:") and (
            cfg.network_aliases or cfg.ipv4_address or settings.ByteSize() or body.get("Hostname")):
        raise InvalidArgument("conflicting options: a container that shares another container's "
                              "network cannot set its own hostname, address, aliases, links or MAC")


def _refuse_unsupported(body: Mapping, host: Mapping) -> None:
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    mode = host.get("NetworkMode") or ""
    extra = [n for n in endpoints if n not in (mode, "default", "bridge")]
    if extra:
        raise not_implemented("creating a container on more than one network (connect it afterwards)")
    for key in _UNHONOURED_CONFIG:
        if not _unset(body.get(key)):
            raise not_implemented(f"Config.{key}")
    for key in _UNHONOURED_HOST:
        if not _unset(host.get(key)):
            raise not_implemented(f"HostConfig.{key}")


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
            raise InvalidArgument(f"unknown update field {key!r}")
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
