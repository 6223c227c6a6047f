"""A ContainerConfig's confinement and further resources as the container service's
Spec.security, Spec.runtime and Resources fields.

The container service checks every option against its node (capabilities it has,
devices, sysctls, rlimits); here is what only the gateway can do: container names in
`--pid/--ipc/--uts container:<name>` resolved to ids, and docker's --security-opt
strings parsed. The label and apparmor options are accepted without effect where the
host has no SELinux or AppArmor, as dockerd does; where it has them they are refused,
since berth applies neither.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from berth.container.v1 import container_pb2
from berth.engine.v1 import engine_pb2
from services.common import errors
from services.common.lsm import apparmor_enabled, selinux_enabled

_LABEL_KINDS = ("user", "role", "type", "level", "filetype")


async def security(cfg: engine_pb2.ContainerConfig,
                   resolve_id: Callable[[str], Awaitable[str]]) -> container_pb2.Security:
    """Spec.security for `cfg`; container references resolved with `resolve_id`."""
    out = container_pb2.Security(
        privileged=cfg.privileged, cap_add=cfg.cap_add, cap_drop=cfg.cap_drop, devices=cfg.devices,
        device_cgroup_rules=cfg.device_cgroup_rules, sysctls=cfg.sysctls, ulimits=cfg.ulimits,
        group_add=cfg.group_add, oom_score_adj=cfg.oom_score_adj, shm_size=cfg.shm_size, init=cfg.init)
    out.pid_mode = await _mode(cfg.pid_mode, "PID", resolve_id)
    out.ipc_mode = ("shareable" if cfg.ipc_mode == "shareable" else
                    await _mode("" if cfg.ipc_mode == "private" else cfg.ipc_mode, "IPC", resolve_id))
    out.uts_mode = await _mode(cfg.uts_mode, "UTS", resolve_id)
    if cfg.uts_mode and cfg.hostname:
        raise errors.InvalidArgument("Conflicting options: hostname and the UTS mode")
    for opt in cfg.security_opt:
        _security_opt(opt, out)
    return out


def resources(cfg: engine_pb2.ContainerConfig) -> container_pb2.Resources:
    return container_pb2.Resources(
        memory_bytes=cfg.memory_bytes, nano_cpus=cfg.nano_cpus, cpu_shares=cfg.cpu_shares,
        pids_limit=cfg.pids_limit, cpuset_cpus=cfg.cpuset_cpus, cpuset_mems=cfg.cpuset_mems,
        memory_swap=cfg.memory_swap, memory_reservation=cfg.memory_reservation,
        oom_kill_disable=cfg.oom_kill_disable)


def hostname(cfg: engine_pb2.ContainerConfig, cid: str) -> str:
    """The container's hostname: none of its own when it shares a UTS namespace."""
    return "" if cfg.uts_mode else (cfg.hostname or cid[:12])


async def _mode(mode: str, name: str, resolve_id: Callable[[str], Awaitable[str]]) -> str:
    if mode in ("", "host"):
        return mode
    kind, _, ref = mode.partition(":")
    if kind != "container" or not ref:
        raise errors.InvalidArgument(f"invalid {name} mode: {mode}")
    return f"container:{await resolve_id(ref)}"


def _security_opt(opt: str, out: container_pb2.Security) -> None:
    # docker takes "key=value" and, deprecated, "key:value".
    key, sep, value = opt.partition("=")
    if not sep:
        key, sep, value = opt.partition(":")
    if key == "no-new-privileges":
        if value not in ("", "true", "false"):
            raise errors.InvalidArgument(f"invalid --security-opt 2: {opt!r}")
        out.no_new_privileges = value != "false"
    elif key == "seccomp" and value:
        # The profile's content, as the docker CLI sends it (it reads the file itself).
        out.seccomp_profile = "" if value == "builtin" else value
    elif key == "systempaths" and value == "unconfined":
        out.unmasked_paths = True
    elif key == "label" and value:
        kind = value.split(":", 1)[0]
        if value != "disable" and (kind not in _LABEL_KINDS or ":" not in value):
            raise errors.InvalidArgument(f"invalid --security-opt 1: {opt!r}")
        if selinux_enabled():
            raise errors.not_implemented(f"--security-opt {opt} (SELinux labels)")
    elif key == "apparmor" and value:
        if apparmor_enabled() and value != "unconfined":
            raise errors.not_implemented(f"--security-opt {opt} (AppArmor profiles)")
    else:
        shown = opt if len(opt) <= 80 else opt[:77] + "..."
        raise errors.InvalidArgument(f"invalid --security-opt: {shown!r}: expected seccomp=, "
                                     "no-new-privileges, label=, apparmor= or systempaths=unconfined")
