"""The OCI runtime spec (1.0.2) berth writes for a container, user lookup in its rootfs,
and the host side of its bind mounts."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from services.common import errors
from services.common.paths import secure_join
from services.container import subpaths
from services.container.model import Spec

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]

READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
]

CGROUP_MOUNT = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["ro", "nosuid", "noexec", "nodev"]}

CPU_PERIOD = 100_000


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


def oci_config(id: str, spec: Spec, rootfs: str, user: User) -> dict:
    """The config.json for `spec` before its confinement (security.apply adds capabilities,
    seccomp, rlimits, devices and the rest)."""
    proc = spec.process
    # "FOO" without "=" unsets FOO (the image's too, merged before): dockerd keeps it in the
    # container's config and leaves it out of the process's environment, which runc requires.
    keys = {e.split("=", 1)[0] for e in proc.env}
    # Links' variables first, as docker orders them; the container's own env wins on a key.
    env = [e for e in spec.link_env if e.split("=", 1)[0] not in keys]
    env += [e for e in proc.env if "=" in e]
    if "PATH" not in keys:
        env.insert(0, DEFAULT_PATH)
    if "HOSTNAME" not in keys and spec.hostname:
        env.append(f"HOSTNAME={spec.hostname}")
    if "HOME" not in keys:
        env.append(f"HOME={user.home}")

    # security.apply replaces pid, ipc and uts by the host's or another container's.
    namespaces = [{"type": t} for t in ("pid", "mount", "uts", "ipc")]
    if spec.netns_path:
        namespaces.append({"type": "network", "path": spec.netns_path})

    mounts = [dict(m) for m in DEFAULT_MOUNTS]
    if spec.cgroupns_private:
        namespaces.append({"type": "cgroup"})
        # docker's: the container's own cgroups, read-only (runc mounts each v1
        # hierarchy, or the v2 tree, as seen from inside the namespace).
        mounts.append(dict(CGROUP_MOUNT))
    for m in spec.mounts:
        options = list(m.options)
        if m.type == "bind" and not {"bind", "rbind"} & set(options):
            # runc only treats a mount as a bind mount when the options say so.
            options.append("rbind")
        mounts.append({"destination": m.target, "type": m.type, "source": m.source, "options": options})

    # docker's default set; security.apply replaces it with what the options give.
    caps = list(DEFAULT_CAPABILITIES)
    linux_extra = {}
    propagation = _rootfs_propagation(mounts)
    if propagation:
        linux_extra["rootfsPropagation"] = propagation
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.tty,
            "user": {"uid": user.uid, "gid": user.gid,
                     **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {})},
            "args": list(proc.args),
            "env": env,
            "cwd": proc.cwd or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        },
        "root": {"path": rootfs, "readonly": spec.readonly_rootfs},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": f"/berth/{id}",
            "resources": _resources(spec),
            "maskedPaths": list(spec.system_paths[0]) if spec.system_paths is not None else MASKED_PATHS,
            "readonlyPaths": list(spec.system_paths[1]) if spec.system_paths is not None else READONLY_PATHS,
            **linux_extra,
        },
    }


def _rootfs_propagation(mounts: list[dict]) -> str:
    """The propagation of the container's root mount that its mounts' propagation needs
    (docker's and containerd's rule): runc makes the root rslave by default, under which an
    rshared bind still receives the host's mounts but can send none back."""
    options = {o for m in mounts for o in m["options"]}
    if {"shared", "rshared"} & options:
        return "rshared"
    if {"slave", "rslave"} & options:
        return "rslave"
    return ""


def _resources(spec: Spec) -> dict:
    r = spec.resources
    # Deny all devices; runc adds back the standard ones (null, zero, tty, ...).
    out: dict = {"devices": [{"allow": False, "access": "rwm"}]}
    if r.memory_bytes:
        out["memory"] = {"limit": r.memory_bytes}
    cpu: dict = {}
    if r.nano_cpus:
        cpu["quota"] = r.nano_cpus * CPU_PERIOD // 1_000_000_000
        cpu["period"] = CPU_PERIOD
    if r.cpu_shares:
        cpu["shares"] = r.cpu_shares
    if cpu:
        out["cpu"] = cpu
    if r.pids_limit:
        out["pids"] = {"limit": r.pids_limit}
    return out


def check_system_paths(spec: Spec) -> None:
    """Refuse masked and read-only paths that are not absolute, before anything is created."""
    for path in (spec.system_paths or ((), ()))[0] + (spec.system_paths or ((), ()))[1]:
        if not os.path.isabs(path):
            raise errors.InvalidArgument(f"masked and read-only paths must be absolute: {path!r}")


def resolve_user(rootfs: str, spec: Spec) -> User:
    """The process's ids: from `process.user` looked up in the rootfs, else uid/gid as given."""
    proc = spec.process
    if not proc.user:
        home = _passwd_home(rootfs, proc.uid)
        return User(proc.uid, proc.gid, tuple(proc.additional_gids), home)
    user, _, group = proc.user.partition(":")
    passwd = _read_db(rootfs, "/etc/passwd")
    entry = next((e for e in passwd if len(e) >= 6 and (e[0] == user or e[2] == user)), None)
    if entry is None:
        if not user.isdigit():
            raise errors.InvalidArgument(f"unable to find user {user}: no matching entries in passwd file")
        uid, gid, name, home = int(user), 0, "", "/"
    else:
        uid, gid, name, home = int(entry[2]), int(entry[3]), entry[0], entry[5] or "/"
    groups = _read_db(rootfs, "/etc/group")
    if group:
        g = next((e for e in groups if len(e) >= 3 and (e[0] == group or e[2] == group)), None)
        if g is None:
            if not group.isdigit():
                raise errors.InvalidArgument(
                    f"unable to find group {group}: no matching entries in group file")
            gid = int(group)
        else:
            gid = int(g[2])
    extra = list(proc.additional_gids)
    if name:
        for e in groups:
            if len(e) >= 4 and name in e[3].split(",") and e[2].isdigit() and int(e[2]) != gid:
                extra.append(int(e[2]))
    return User(uid, gid, tuple(dict.fromkeys(extra)), home)


def _passwd_home(rootfs: str, uid: int) -> str:
    for e in _read_db(rootfs, "/etc/passwd"):
        if len(e) >= 6 and e[2] == str(uid):
            return e[5] or "/"
    return "/root" if uid == 0 else "/"


def _read_db(rootfs: str, path: str) -> list[list[str]]:
    try:
        with open(secure_join(rootfs, path)) as f:
            return [line.rstrip("\n").split(":") for line in f
                    if line.strip() and not line.startswith("#")]
    except (FileNotFoundError, NotADirectoryError):
        return []


def bind_sources(spec: Spec) -> Spec:
    """The spec with each bind source checked on this node and its symlinks resolved now,
    so the path runc mounts is the one checked; a missing source is made when the mount
    asks for it (docker's -v: mkdir -p, 0755, through existing symlinks as docker's
    MkdirAll goes) and refused otherwise (docker's --mount)."""
    mounts = []
    for m in spec.mounts:
        if m.type == "bind":
            if not os.path.isabs(m.source):
                raise errors.InvalidArgument(
                    f'invalid mount config for type "bind": invalid mount path: {m.source!r} '
                    "mount path must be absolute")
            if not os.path.lexists(m.source) and m.create_source:
                try:
                    os.makedirs(m.source, mode=0o755, exist_ok=True)
                except OSError as exc:
                    raise errors.InvalidArgument(f"error while creating mount source path "
                                                 f"'{m.source}': {exc.strerror}") from None
            source = os.path.realpath(m.source)
            if not os.path.exists(source):
                raise errors.InvalidArgument(
                    f'invalid mount config for type "bind": bind source path does not exist: {m.source}')
            # The sub-path itself is resolved at each start (subpaths.attach).
            subpaths.check(m.sub_path)
            m = replace(m, source=source)
        mounts.append(m)
    return replace(spec, mounts=tuple(mounts))
