"""Conversions at the gateway's edges: engine API <-> node services, and docker's merging rules.

Everything here is pure so it can be tested without a daemon: how an image's
config and a user's `run` flags make one process (entrypoint/cmd/env), how
`import --change` lines become an image config, and how a node container
becomes the engine's ContainerInfo.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import json_format

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from berth.image.v1 import image_pb2
from services.common.errors import InvalidArgument

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_STOP_TIMEOUT = 10
# Container label the gateway puts on snapshots it prepares, so they can be found again.
CONTAINER_LABEL = "berth.container"


@dataclass(frozen=True)
class Process:
    """The resolved process of a container, as docker derives it from image + run flags."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    user: str


def merge_args(image_entrypoint: Sequence[str], image_cmd: Sequence[str],
               entrypoint: Sequence[str] | None, cmd: Sequence[str]) -> list[str]:
    """Docker's rule: a new entrypoint drops the image's cmd, since that cmd was written
    as arguments for the image's entrypoint; a new cmd only replaces the image's cmd."""
    if entrypoint is not None:
        return [*entrypoint, *cmd]
    return [*image_entrypoint, *(cmd or image_cmd)]


def merge_env(image_env: Iterable[str], env: Iterable[str], default_path: bool = True) -> list[str]:
    """Image env overridden key by key by the user's, order of first appearance kept."""
    merged: dict[str, str] = {}
    for entry in [*image_env, *env]:
        key = entry.split("=", 1)[0]
        merged[key] = entry
    if default_path and "PATH" not in merged:
        merged = {"PATH": DEFAULT_PATH, **merged}
    return list(merged.values())


def resolve_process(image: image_pb2.ImageConfig, config: engine_pb2.ContainerConfig) -> Process:
    entrypoint = list(config.entrypoint.values) if config.HasField("entrypoint") else None
    args = merge_args(image.entrypoint, image.cmd, entrypoint, config.cmd)
    if not args:
        raise InvalidArgument("no command specified")
    return Process(
        args=tuple(args),
        env=tuple(merge_env(image.env, config.env)),
        cwd=config.working_dir or image.working_dir or "/",
        user=config.user or image.user,
    )


# -- container names -------------------------------------------------------------

def valid_name(name: str) -> bool:
    """The container service's rule, [a-zA-Z0-9][a-zA-Z0-9_.-]*, checked before anything is prepared."""
    if not name or not name[0].isascii() or not name[0].isalnum():
        return False
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)


# -- metadata the gateway kept on the node's container record -------------------------

@dataclass(frozen=True)
class Metadata:
    """What the gateway kept about a container in the node's opaque metadata before it had
    its own store (services/gateway/store.py). Read only to import such containers."""

    image: str
    image_id: str
    config: engine_pb2.ContainerConfig
    network_mode: str
    auto_remove: bool
    stop_timeout: int
    # The container's mounts as resolved (volume names included), for inspect and --volumes-from.
    mounts: tuple[engine_pb2.MountPoint, ...] = ()
    # Restart state (services.gateway.backends.restarts).
    restart_count: int = 0
    manually_stopped: bool = False

    def encode(self) -> bytes:
        return json.dumps({
            "image": self.image,
            "image_id": self.image_id,
            "config": json_format.MessageToDict(self.config),
            "network_mode": self.network_mode,
            "auto_remove": self.auto_remove,
            "stop_timeout": self.stop_timeout,
            "mounts": [json_format.MessageToDict(m) for m in self.mounts],
            "restart_count": self.restart_count,
            "manually_stopped": self.manually_stopped,
        }, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Metadata:
        """Containers not made by the gateway have no metadata; they get neutral values."""
        data = json.loads(raw) if raw else {}
        config = engine_pb2.ContainerConfig()
        json_format.ParseDict(data.get("config", {}), config, ignore_unknown_fields=True)
        return cls(
            image=data.get("image", ""),
            image_id=data.get("image_id", ""),
            config=config,
            network_mode=data.get("network_mode", "none"),
            auto_remove=bool(data.get("auto_remove", False)),
            stop_timeout=int(data.get("stop_timeout", DEFAULT_STOP_TIMEOUT)),
            mounts=tuple(json_format.ParseDict(m, engine_pb2.MountPoint(), ignore_unknown_fields=True)
                         for m in data.get("mounts", ())),
            restart_count=int(data.get("restart_count", 0)),
            manually_stopped=bool(data.get("manually_stopped", False)),
        )


_STATUS = {
    container_pb2.STATUS_CREATED: "created",
    container_pb2.STATUS_RUNNING: "running",
    container_pb2.STATUS_STOPPED: "exited",
    container_pb2.STATUS_PAUSED: "paused",
}


def status_name(status: int) -> str:
    return _STATUS.get(status, "created")


def container_info(c: container_pb2.Container, meta=None) -> engine_pb2.ContainerInfo:
    """`meta` is the container's store.ContainerRecord (or a Metadata: the same fields)."""
    meta = meta or Metadata.decode(c.metadata)
    status = status_name(c.status)
    args = list(c.spec.process.args)
    state = engine_pb2.ContainerState(
        status=status, running=status in ("running", "paused"),
        pid=c.pid if status in ("running", "paused") else 0,
        exit_code=c.exit_code, oom_killed=c.oom_killed, paused=status == "paused")
    if c.HasField("started_at"):
        state.started_at.CopyFrom(c.started_at)
    if c.HasField("finished_at"):
        state.finished_at.CopyFrom(c.finished_at)
    info = engine_pb2.ContainerInfo(
        id=c.id, name=display_name(c.name), image=meta.image, image_id=meta.image_id,
        path=args[0] if args else "", args=args[1:], state=state, config=meta.config,
        env=list(c.spec.process.env), working_dir=c.spec.process.cwd, hostname=c.spec.hostname,
        log_path=c.log_path, network_mode=meta.network_mode, netns_path=c.spec.netns_path,
        mounts=meta.mounts, restart_count=meta.restart_count,
        log_config=engine_pb2.LogConfig(driver=c.spec.log_config.driver, options=c.spec.log_config.options))
    if c.HasField("created_at"):
        info.created.CopyFrom(c.created_at)
    return info


def display_name(name: str) -> str:
    """Names without docker's leading "/" (the container service keeps it, docker-style)."""
    return name.lstrip("/")


def image_info(image: image_pb2.Image, containers: int = 0) -> engine_pb2.ImageInfo:
    info = engine_pb2.ImageInfo(
        id=image.id, repo_tags=list(image.repo_tags), repo_digests=list(image.repo_digests),
        size=image.size, architecture=image.architecture, os=image.os,
        diff_ids=list(image.diff_ids), config_json=image.config_json, containers=containers,
        parent=image.parent)
    if image.HasField("created"):
        info.created.CopyFrom(image.created)
    return info


# -- docker's rules over containers: ps filters, stats, commit --change ------------------

def stats_from_node(cid: str, name: str, s, previous) -> engine_pb2.GetContainerStatsResponse:
    cpu = 0.0
    if previous is not None:
        d_cpu = s.cpu_usage_ns - previous.cpu_usage_ns
        d_sys = s.system_cpu_ns - previous.system_cpu_ns
        if d_cpu > 0 and d_sys > 0:
            cpu = d_cpu / d_sys * (s.online_cpus or 1) * 100.0
    return engine_pb2.GetContainerStatsResponse(
        id=cid, name=name, time=s.time, cpu_percent=cpu, memory_usage=s.memory_usage,
        memory_limit=s.memory_limit, pids=s.pids, net_rx_bytes=s.net_rx_bytes,
        net_tx_bytes=s.net_tx_bytes, block_read_bytes=s.block_read_bytes,
        block_write_bytes=s.block_write_bytes, cpu_usage_ns=s.cpu_usage_ns,
        system_cpu_ns=s.system_cpu_ns, online_cpus=s.online_cpus)


def apply_changes(config: image_pb2.ImageConfig, changes: image_pb2.ImageConfig) -> None:
    """`--change` lines over the container's config: what they set wins, lists are added to."""
    if changes.cmd:
        del config.cmd[:]
        config.cmd.extend(changes.cmd)
    if changes.entrypoint:
        del config.entrypoint[:]
        config.entrypoint.extend(changes.entrypoint)
    if changes.env:
        env = merge_env(config.env, changes.env, default_path=False)
        del config.env[:]
        config.env.extend(env)
    for name in ("working_dir", "user", "stop_signal"):
        if getattr(changes, name):
            setattr(config, name, getattr(changes, name))
    config.labels.update(changes.labels)
    for name in ("exposed_ports", "volumes"):
        have = getattr(config, name)
        have.extend(v for v in getattr(changes, name) if v not in have)


def matches_filters(info: engine_pb2.ContainerInfo, labels: Mapping[str, str],
             filters: Mapping[str, Sequence[str]], ancestors: set[str]) -> bool:
    """docker ps filters: values of one key are OR-ed, keys AND-ed (labels AND-ed too).
    `info` has its networks filled (the network filter reads them)."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "id":
            ok = any(info.id.startswith(v) for v in values)
        elif key == "name":
            ok = any(_name_matches(v, info.name) for v in values)
        elif key == "label":
            # Every label filter must hold, as docker does for labels.
            ok = all(labels.get(k) == v if eq else k in labels
                     for k, eq, v in (f.partition("=") for f in values))
        elif key == "status":
            ok = info.state.status in values
        elif key == "ancestor":
            ok = info.image_id in ancestors or info.image in values
        elif key == "exited":
            ok = info.state.status == "exited" and info.state.exit_code in _exit_codes(values)
        elif key == "health":
            ok = (info.state.health.status if info.state.HasField("health") else "none") in values
        elif key == "network":
            ok = any(v in (n.network, n.network_id) or (len(v) >= 1 and n.network_id.startswith(v))
                     for n in info.networks for v in values)
        elif key in ("publish", "expose"):
            # Container-side ports: published ones (publish), and those a port is bound for
            # (expose; berth reaches every port of a container on its networks).
            ok = any(_port_in(p.container_port, p.protocol or "tcp", v) for p in info.config.ports
                     for v in values)
        elif key == "volume":
            ok = any(v in (m.name, m.destination, m.source) for m in info.mounts for v in values)
        elif key == "is-task":
            # No swarm, so no container is a task.
            ok = not _true(values[-1])
        elif key == "isolation":
            ok = (info.config.isolation or "default") in values
        else:
            ok = False
        if not ok:
            return False
    return True


def _true(value: str) -> bool:
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter 'is-task={value}'")


def _exit_codes(values: Sequence[str]) -> set[int]:
    try:
        return {int(v) for v in values}
    except ValueError:
        raise InvalidArgument(f"invalid filter 'exited={values[0]}'") from None


def _port_in(port: int, proto: str, wanted: str) -> bool:
    """Docker's `80`, `80/udp`, `8000-8080/tcp` (tcp when no protocol is given)."""
    text, _, want_proto = wanted.partition("/")
    low, _, high = text.partition("-")
    try:
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise InvalidArgument(f"invalid filter value: {wanted!r} is not a port or port range") from None
    return lo <= port <= hi and proto == (want_proto or "tcp")


def _name_matches(pattern: str, name: str) -> bool:
    pattern = pattern.removeprefix("/")
    try:
        return re.search(pattern, name) is not None
    except re.error:
        return pattern in name


# -- `import --change` ------------------------------------------------------------

def parse_changes(changes: Iterable[str]) -> image_pb2.ImageConfig:
    """Dockerfile instructions that `docker import --change` accepts, as an image config.

    >>> parse_changes(['CMD ["sh"]', "ENV A=1", "WORKDIR /x"]).cmd
    ['sh']
    """
    config = image_pb2.ImageConfig()
    for change in changes:
        line = change.strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        instruction, rest = word.upper(), rest.strip()
        handler = _CHANGES.get(instruction)
        if handler is None:
            raise InvalidArgument(
                f"{word} is not a valid change command (import accepts "
                f"{', '.join(sorted(_CHANGES))})")
        if not rest:
            raise InvalidArgument(f"{instruction} requires at least one argument")
        handler(config, rest)
    return config


def _command(rest: str) -> list[str]:
    """Exec form (a JSON array) or shell form, which docker runs through /bin/sh -c."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", rest]


def _pairs(instruction: str, rest: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"`, or the legacy one-pair form `K value with spaces`."""
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidArgument(f"{instruction} {rest}: {exc}") from None
    if words and "=" not in words[0]:
        if len(words) < 2:
            raise InvalidArgument(f"{instruction} names must be followed by a value: {rest}")
        key, _, value = rest.partition(" ")
        return [(key, value.strip())]
    pairs = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{instruction} expects KEY=VALUE, got {w!r}")
        pairs.append((key, value))
    return pairs


def _set_cmd(c: image_pb2.ImageConfig, rest: str) -> None:
    del c.cmd[:]
    c.cmd.extend(_command(rest))


def _set_entrypoint(c: image_pb2.ImageConfig, rest: str) -> None:
    del c.entrypoint[:]
    c.entrypoint.extend(_command(rest))


def _set_env(c: image_pb2.ImageConfig, rest: str) -> None:
    # The default PATH is for running; an image config holds only what was asked for.
    env = merge_env(c.env, [f"{k}={v}" for k, v in _pairs("ENV", rest)], default_path=False)
    del c.env[:]
    c.env.extend(env)


def _set_label(c: image_pb2.ImageConfig, rest: str) -> None:
    for k, v in _pairs("LABEL", rest):
        c.labels[k] = v


def _set_expose(c: image_pb2.ImageConfig, rest: str) -> None:
    for port in rest.split():
        number, _, proto = port.partition("/")
        if not number.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid port to expose: {port!r}")
        spec = f"{number}/{proto or 'tcp'}"
        if spec not in c.exposed_ports:
            c.exposed_ports.append(spec)


def _set_volume(c: image_pb2.ImageConfig, rest: str) -> None:
    paths = _command(rest) if rest.startswith("[") else rest.split()
    if paths[:2] == ["/bin/sh", "-c"]:
        paths = rest.split()
    for p in paths:
        if p not in c.volumes:
            c.volumes.append(p)


def _set_workdir(c: image_pb2.ImageConfig, rest: str) -> None:
    c.working_dir = rest


def _set_user(c: image_pb2.ImageConfig, rest: str) -> None:
    c.user = rest


def _set_stopsignal(c: image_pb2.ImageConfig, rest: str) -> None:
    c.stop_signal = rest


_CHANGES = {
    "CMD": _set_cmd,
    "ENTRYPOINT": _set_entrypoint,
    "ENV": _set_env,
    "EXPOSE": _set_expose,
    "LABEL": _set_label,
    "STOPSIGNAL": _set_stopsignal,
    "USER": _set_user,
    "VOLUME": _set_volume,
    "WORKDIR": _set_workdir,
}
