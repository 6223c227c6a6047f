"""Containers as docker shows them: inspect, the ps summary, its STATUS text, health, logs."""

from __future__ import annotations

import time

from berth.engine.v1 import engine_pb2
from berth.types.v1 import healthcheck_pb2
from berth_docker.ports import ports_json
from berth_docker.shapes.networks import endpoint_json
from berth_docker.times import human_duration, rfc3339

# docker's default network: the one inspect's legacy top-level address keys describe.
DEFAULT_BRIDGE = "bridge"


def container_json(info: engine_pb2.ContainerInfo) -> dict:
    """`GET /containers/{id}/json` and `berth inspect`: the fields the docker CLI and the SDKs read."""
    cfg = info.config
    state = info.state
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
        "HostConfig": _host_config(info),
        "GraphDriver": {"Name": "overlay", "Data": None},
        "Mounts": [mount_point_json(m) for m in info.mounts],
        "Config": {
            "Hostname": info.hostname,
            "Domainname": "",
            "User": cfg.user,
            "AttachStdin": cfg.open_stdin and cfg.stdin_once,
            "AttachStdout": False,
            "AttachStderr": False,
            "ExposedPorts": {p: {} for p in _exposed(cfg)} or None,
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
        "NetworkSettings": network_settings_json(info),
    }


# NetworkSettings' legacy keys: (key, the ContainerNetwork field it shows, its zero value).
_LEGACY_KEYS = (("EndpointID", "endpoint_id", ""), ("Gateway", "gateway", ""),
                ("GlobalIPv6Address", "ipv6_address", ""), ("GlobalIPv6PrefixLen", "ipv6_prefix_len", 0),
                ("IPAddress", "ipv4_address", ""), ("IPPrefixLen", "prefix_len", 0),
                ("IPv6Gateway", "ipv6_gateway", ""), ("MacAddress", "mac_address", ""))


def network_settings_json(info: engine_pb2.ContainerInfo) -> dict:
    """inspect's NetworkSettings. The top-level address keys are docker's legacy view of the
    default bridge network only: empty for a container on user-defined networks alone."""
    network = info.network_mode or "none"
    bridge = next((n for n in info.networks if n.network == DEFAULT_BRIDGE), None)
    # Read off the endpoint, or zero values: no ContainerNetwork() is made, as the CLI reads its
    # replies without protobuf's classes (berth_cli.wire).
    legacy = {key: getattr(bridge, field) if bridge is not None else zero for key, field, zero in _LEGACY_KEYS}
    return {
        "Bridge": "",
        "SandboxID": "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": _ports_with_exposed(info),
        "SandboxKey": info.netns_path,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        **legacy,
        "Networks": {n.network: endpoint_json(n) for n in info.networks} or {network: {}},
    }


def _exposed(cfg: engine_pb2.ContainerConfig) -> list[str]:
    """Config.ExposedPorts: what the image and the client exposed and every port published."""
    published = [f"{p.container_port}/{p.protocol or 'tcp'}" for p in cfg.ports]
    return sorted(dict.fromkeys([*cfg.exposed_ports, *published]))


def _unpublished(info: engine_pb2.ContainerInfo) -> list[tuple[int, str]]:
    """Exposed ports with no host port, shown (as docker shows them) while the container runs."""
    if not info.state.running:
        return []
    bound = {(p.container_port, p.protocol or "tcp") for p in info.ports}
    out = []
    for spec in _exposed(info.config):
        number, _, proto = spec.partition("/")
        if number.isdigit() and (int(number), proto) not in bound:
            out.append((int(number), proto))
    return out


def _ports_with_exposed(info: engine_pb2.ContainerInfo) -> dict:
    ports = ports_json(info.ports)
    ports.update({f"{n}/{proto}": None for n, proto in _unpublished(info)})
    return dict(sorted(ports.items()))


def _host_config(info: engine_pb2.ContainerInfo) -> dict:
    """inspect's HostConfig: every key docker has (the SDKs and compose read them), each with what
    the container has. Fields berth refuses at create (berth_docker/create.py) keep docker's zero value,
    which is then what the container truly has."""
    cfg = info.config
    tmpfs = {m.target: ",".join([*m.options, *(["ro"] if m.readonly else [])])
             for m in cfg.mounts if m.type == "tmpfs"}
    return {
        "Binds": [f"{m.source}:{m.destination}" + ("" if m.rw else ":ro")
                  for m in info.mounts if m.type == "bind"] or None,
        "ContainerIDFile": "",
        # The driver in force; Config as the client gave it (docker shows no driver defaults).
        "LogConfig": {"Type": info.log_config.driver or "json-file", "Config": dict(cfg.log_config.options)},
        "NetworkMode": info.network_mode or "none",
        "PortBindings": ports_json(cfg.ports),
        "RestartPolicy": {"Name": cfg.restart_policy.name or "no",
                          "MaximumRetryCount": cfg.restart_policy.maximum_retry_count},
        "AutoRemove": cfg.auto_remove,
        "VolumeDriver": cfg.volume_driver,
        "VolumesFrom": list(cfg.volumes_from) or None,
        "ConsoleSize": [0, 0],
        "CgroupnsMode": cfg.cgroupns_mode or "host",
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "Cgroup": "",
        "Links": _links(info) or None,
        "PublishAllPorts": cfg.publish_all,
        "ReadonlyRootfs": cfg.readonly_rootfs,
        **({"Tmpfs": tmpfs} if tmpfs else {}),
        "UsernsMode": cfg.userns_mode,
        "Isolation": cfg.isolation,
        "CpuShares": cfg.cpu_shares,
        "Memory": cfg.memory_bytes,
        "NanoCpus": cfg.nano_cpus,
        "CgroupParent": "",
        "BlkioWeight": 0,
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        "CpuPeriod": 0,
        "CpuQuota": 0,
        "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0,
        "DeviceRequests": None,
        # Discarded with a warning at create, as dockerd does on cgroup v2.
        "MemorySwappiness": None,
        "CpuCount": 0,
        "CpuPercent": 0,
        "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0,
        "MaskedPaths": None,
        "ReadonlyPaths": None,
        **confinement_json(cfg),
    }


def _links(info: engine_pb2.ContainerInfo) -> list[str]:
    """HostConfig.Links in docker's stored form, "/target:/container/alias"."""
    out = []
    for link in info.config.endpoint_settings.links:
        target, _, alias = link.partition(":")
        target = target.lstrip("/")
        out.append(f"/{target}:/{info.name}/{alias.rsplit('/', 1)[-1] or target}")
    return out


def confinement_json(cfg: engine_pb2.ContainerConfig) -> dict:
    """HostConfig's security and further resource keys, as they were asked for (docker's
    shapes: null where docker shows null for "not set")."""
    return {
        "PidsLimit": (cfg.pids_limit if cfg.pids_limit > 0 else 0) if cfg.pids_limit else None,
        "Privileged": cfg.privileged,
        "CapAdd": list(cfg.cap_add) or None,
        "CapDrop": list(cfg.cap_drop) or None,
        "Devices": [{"PathOnHost": d.path_on_host, "PathInContainer": d.path_in_container or d.path_on_host,
                     "CgroupPermissions": d.cgroup_permissions or "rwm"} for d in cfg.devices],
        "DeviceCgroupRules": list(cfg.device_cgroup_rules) or None,
        "Sysctls": dict(cfg.sysctls) or None,
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in cfg.ulimits] or None,
        "GroupAdd": list(cfg.group_add) or None,
        "PidMode": cfg.pid_mode,
        "IpcMode": cfg.ipc_mode or "private",
        "UTSMode": cfg.uts_mode,
        "CpusetCpus": cfg.cpuset_cpus,
        "CpusetMems": cfg.cpuset_mems,
        "MemorySwap": cfg.memory_swap,
        "MemoryReservation": cfg.memory_reservation,
        "OomKillDisable": cfg.oom_kill_disable,
        "OomScoreAdj": cfg.oom_score_adj,
        "ShmSize": cfg.shm_size or 64 << 20,
        "Init": cfg.init or None,
        "Runtime": cfg.runtime or "runc",
        "SecurityOpt": list(cfg.security_opt) or None,
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
                   "Type": p.protocol or "tcp"} for p in info.ports]
        + [{"PrivatePort": n, "Type": proto} for n, proto in _unpublished(info)],
        "Labels": dict(info.config.labels),
        "State": info.state.status,
        "Status": status_text(info.state, now),
        "HostConfig": {"NetworkMode": info.network_mode or "none"},
        "NetworkSettings": {"Networks": {n.network: {"NetworkID": n.network_id, "IPAddress": n.ipv4_address,
                                                     "Gateway": n.gateway} for n in info.networks}},
        "Mounts": [mount_point_json(m) for m in info.mounts],
    }


def mount_point_json(m: engine_pb2.MountPoint) -> dict:
    """One entry of inspect's "Mounts"."""
    out = {"Type": m.type, "Source": m.source, "Destination": m.destination, "Mode": m.mode,
           "RW": m.rw, "Propagation": m.propagation}
    if m.type == "volume":
        out.update(Name=m.name, Driver=m.driver)
    return out


def status_text(state: engine_pb2.ContainerState, now: float | None = None) -> str:
    """The STATUS column: "Up 3 seconds (healthy)", "Exited (0) 2 seconds ago", "Created"."""
    now = time.time() if now is None else now
    if state.status == "restarting":
        return f"Restarting ({state.exit_code}) {human_duration(now - state.finished_at.seconds)} ago"
    if state.status in ("running", "paused"):
        up = f"Up {human_duration(max(0.0, now - state.started_at.seconds))}"
        if state.status == "paused":
            return up + " (Paused)"
        health = state.health.status if state.HasField("health") else ""
        if health == "starting":
            return up + " (health: starting)"
        return up + (f" ({health})" if health in ("healthy", "unhealthy") else "")
    if state.status == "exited":
        if not state.HasField("finished_at"):
            return f"Exited ({state.exit_code})"
        return f"Exited ({state.exit_code}) {human_duration(max(0.0, now - state.finished_at.seconds))} ago"
    if state.status == "removing":
        return "Removal In Progress"
    return state.status.capitalize()


def healthcheck_json(h: healthcheck_pb2.HealthConfig) -> dict:
    """Config.Healthcheck; durations in nanoseconds, unset ones left out."""
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
