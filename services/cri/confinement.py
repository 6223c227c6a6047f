"""The CRI's security contexts and resources as the container service's Security and Resources.

containerd's CRI plugin is the model for every choice that the CRI leaves to the runtime:

- seccomp: no profile given is unconfined (containerd 1.6's default); RuntimeDefault,
  "runtime/default" and "docker/default" are the container service's default profile
  (docker's); Localhost, or "localhost/<path>", is the profile file at that path on this
  node, which the kubelet wrote: it is the caller's input, read here and sent as content.
  A privileged container runs without seccomp whatever its profile (containerd's rule).
- AppArmor: this node applies none. Unconfined is what it gives; RuntimeDefault is
  accepted where the host has no AppArmor (there is no default to apply, as dockerd does
  there) and refused where it has one; a named profile is always refused.
- namespaces: a pod container joins its sandbox container's pid, ipc and uts namespaces
  as "container:<sandbox id>" (the sandbox's IPC is "shareable", so /dev/shm is the pod's),
  or the host's as "host".

What the container service's Spec has no place for is refused by name (INVALID_ARGUMENT).
"""

from __future__ import annotations

import os

from berth.container.v1 import container_pb2
from berth.types.v1 import security_pb2
from k8s.cri.runtime.v1 import api_pb2 as cri
from services.common import errors
from services.common.lsm import apparmor_enabled

CPU_PERIOD = 100_000
DEFAULT_PROFILES = ("runtime/default", "docker/default")
LOCALHOST = "localhost/"

APPARMOR = apparmor_enabled()


def container_security(sc: cri.LinuxContainerSecurityContext, sandbox_id: str,
                       pod_sc: cri.LinuxSandboxSecurityContext, target_id: str = "") -> container_pb2.Security:
    """The Security of a pod container; `target_id` is the container whose pid namespace a
    TARGET pid namespace option names (already resolved to its full id)."""
    if sc.privileged and not pod_sc.privileged:
        raise errors.InvalidArgument(
            "security_context.privileged: the pod sandbox is not privileged, so its containers may not be")
    if sc.capabilities.add_ambient_capabilities:
        raise errors.InvalidArgument("security_context.capabilities.add_ambient_capabilities is not supported "
                                     "by this node's container service")
    check_apparmor(sc.apparmor if sc.HasField("apparmor") else None, sc.apparmor_profile,
                   "security_context")
    ns = sc.namespace_options
    own = f"container:{sandbox_id}"
    pid_mode = {cri.POD: own, cri.NODE: "host", cri.CONTAINER: ""}.get(ns.pid)
    if ns.pid == cri.TARGET:
        pid_mode = f"container:{target_id}"
    if pid_mode is None:
        raise errors.InvalidArgument(f"security_context.namespace_options.pid: unknown mode {ns.pid}")
    # The CRI has no private IPC for a container of a pod: CONTAINER is POD (as containerd).
    # A pod on the host's IPC has no shareable /dev/shm to join: its containers are on the host's too.
    ipc_mode = "host" if cri.NODE in (ns.ipc, pod_sc.namespace_options.ipc) else own
    uts_mode = "host" if pod_sc.namespace_options.network == cri.NODE else own
    return container_pb2.Security(
        privileged=sc.privileged,
        cap_add=[_cap(c) for c in sc.capabilities.add_capabilities],
        cap_drop=[_cap(c) for c in sc.capabilities.drop_capabilities],
        pid_mode=pid_mode, ipc_mode=ipc_mode, uts_mode=uts_mode,
        seccomp_profile="unconfined" if sc.privileged else seccomp_profile(
            sc.seccomp if sc.HasField("seccomp") else None, sc.seccomp_profile_path, "security_context"),
        no_new_privileges=sc.no_new_privs)


def sandbox_security(config: cri.PodSandboxConfig) -> container_pb2.Security:
    """The Security of a sandbox container: the host's namespaces where the pod asks for
    them, a shareable IPC its containers join, the pod's sysctls and seccomp profile."""
    sc = config.linux.security_context
    check_apparmor(sc.apparmor if sc.HasField("apparmor") else None, "", "linux.security_context")
    ns = sc.namespace_options
    return container_pb2.Security(
        pid_mode="host" if ns.pid == cri.NODE else "",
        ipc_mode="host" if ns.ipc == cri.NODE else "shareable",
        uts_mode="host" if ns.network == cri.NODE else "",
        sysctls=dict(config.linux.sysctls),
        # The sandbox holds namespaces and runs nothing of the pod's: a privileged pod
        # allows privileged containers, the sandbox itself needs no privilege.
        seccomp_profile="unconfined" if sc.privileged else seccomp_profile(
            sc.seccomp if sc.HasField("seccomp") else None, sc.seccomp_profile_path,
            "linux.security_context"))


def seccomp_profile(profile: cri.SecurityProfile | None, path: str, where: str) -> str:
    """Security.seccomp_profile for the CRI's profile (the typed field wins over the
    deprecated path, as in containerd)."""
    if profile is not None:
        if profile.profile_type == cri.SecurityProfile.Unconfined:
            return "unconfined"
        if profile.profile_type == cri.SecurityProfile.RuntimeDefault:
            return ""
        return _read_profile(profile.localhost_ref, f"{where}.seccomp.localhost_ref")
    if path in ("", "unconfined"):
        return "unconfined"
    if path in DEFAULT_PROFILES:
        return ""
    if path.startswith(LOCALHOST):
        return _read_profile(path[len(LOCALHOST):], f"{where}.seccomp_profile_path")
    raise errors.InvalidArgument(
        f"{where}.seccomp_profile_path {path!r}: expected unconfined, runtime/default, docker/default "
        "or localhost/<absolute path>")


def _read_profile(path: str, field: str) -> str:
    if not os.path.isabs(path):
        raise errors.InvalidArgument(f"{field} {path!r}: the profile path must be absolute")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"{field}: cannot read the seccomp profile {path!r}: {exc}") from None
    if not text.strip():
        raise errors.InvalidArgument(f"{field}: the seccomp profile {path!r} is empty")
    return text


def check_apparmor(profile: cri.SecurityProfile | None, name: str, where: str) -> None:
    if profile is not None:
        kind = profile.profile_type
        if kind == cri.SecurityProfile.Localhost:
            raise errors.InvalidArgument(
                f"{where}.apparmor: profile {profile.localhost_ref!r} cannot be applied: "
                "this node's container service applies no AppArmor profiles")
        if kind == cri.SecurityProfile.RuntimeDefault and APPARMOR:
            raise errors.InvalidArgument(
                f"{where}.apparmor: RuntimeDefault cannot be applied: this host has AppArmor and "
                "this node's container service applies no AppArmor profiles")
        return
    if name in ("", "unconfined") or (name == "runtime/default" and not APPARMOR):
        return
    raise errors.InvalidArgument(f"{where}.apparmor_profile {name!r} cannot be applied: "
                                 "this node's container service applies no AppArmor profiles")


def _cap(name: str) -> str:
    # The CRI names capabilities without CAP_ (and "ALL"); Security takes either.
    return name.strip().upper()


def devices(config: cri.ContainerConfig) -> list[security_pb2.DeviceMapping]:
    return [security_pb2.DeviceMapping(path_on_host=d.host_path, path_in_container=d.container_path,
                                       cgroup_permissions=d.permissions) for d in config.devices]


def resources(r: cri.LinuxContainerResources) -> container_pb2.Resources:
    """The CRI's container resources at create; hugepages and unified (cgroup v2 keys) have
    no place in the Spec and are refused by name."""
    unsupported = [name for name, value in (
        ("hugepage_limits", list(r.hugepage_limits)), ("unified", dict(r.unified))) if value]
    if unsupported:
        raise errors.InvalidArgument(
            "container resources not supported by this node's container service: " + ", ".join(unsupported))
    if r.memory_swap_limit_in_bytes and not r.memory_limit_in_bytes:
        raise errors.InvalidArgument(
            "resources.memory_swap_limit_in_bytes needs resources.memory_limit_in_bytes")
    out = update_resources(r)
    out.cpuset_cpus, out.cpuset_mems = r.cpuset_cpus, r.cpuset_mems
    # The CRI's swap limit is memory plus swap, as the Spec's; unset keeps docker's default.
    out.memory_swap = r.memory_swap_limit_in_bytes
    return out


def update_resources(r: cri.LinuxContainerResources,
                     current: container_pb2.Spec | None = None) -> container_pb2.Resources:
    """The limits UpdateContainerResources can change in place (memory, CPU bandwidth and
    shares). The others may be sent again as they are (the kubelet sends all it knows) but
    not changed: a change is refused by name. `current` is None at create."""
    if current is not None:
        now = current.resources
        changed = [name for name, value, was in (
            ("oom_score_adj", r.oom_score_adj, current.security.oom_score_adj),
            ("cpuset_cpus", r.cpuset_cpus, now.cpuset_cpus), ("cpuset_mems", r.cpuset_mems, now.cpuset_mems),
            ("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes, now.memory_swap),
            ("hugepage_limits", list(r.hugepage_limits), []), ("unified", dict(r.unified), {})) if value != was]
        if changed:
            raise errors.InvalidArgument("container resources that this node's container service cannot "
                                         "change on a created container: " + ", ".join(changed))
    # berth keeps CPU bandwidth as a share of CPUs (quota/period) over a fixed period.
    nano = r.cpu_quota * 1_000_000_000 // (r.cpu_period or CPU_PERIOD) if r.cpu_quota > 0 else 0
    return container_pb2.Resources(memory_bytes=r.memory_limit_in_bytes, cpu_shares=r.cpu_shares,
                                   nano_cpus=nano)
