"""A container's confinement beyond its namespaces: capabilities, seccomp, devices, sysctls,
rlimits, shared namespaces, init and the cgroup limits past the basic ones.

Two steps, both at CreateContainer (and `apply` again at each start):

    spec = security.resolve(spec, host)        # checks every option, fills in defaults:
                                               # what is stored is what is in force
    config = spec_mod.oci_config(...)
    security.apply(config, spec, rootfs, host, pid_of)   # edits config.json's dict

docker's rules are followed wherever docker has one (capability arithmetic, sysctl
namespaces, device syntax, seccomp's conditions by capability), with docker's messages,
so that a command line that works with docker works here and one docker refuses is
refused with the words a docker user knows.

What this host cannot give is refused naming why, never silently granted less: the
engine runs without CAP_SYS_RESOURCE in its bounding set, so it cannot raise an rlimit
above its own hard limit, lower an oom_score_adj below its own, or hand that capability
to a container (`--privileged` gives every capability the engine itself has).
"""

from __future__ import annotations

import functools
import os
import re
import resource
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace

from services.common import errors
from services.container import runtime as rt
from services.container import seccomp
from services.container import spec as spec_mod
from services.container.model import Device, Mount, Spec, Ulimit
from services.container.spec import DEFAULT_CAPABILITIES

# Bit n of a capability mask is the capability numbered n (linux/capability.h).
ALL_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


# Sysctls that belong to a namespace (docker's list): IPC ones, and net.* below.
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}

_RLIMITS = {name: getattr(resource, f"RLIMIT_{name.upper()}") for name in (
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
    "rtprio", "rttime", "sigpending", "stack") if hasattr(resource, f"RLIMIT_{name.upper()}")}
_UNLIMITED = 2**64 - 1  # RLIM_INFINITY as the OCI spec's uint64 spells it
# docker's nofile (from dockerd's unit file); capped by what the engine itself may give.
DOCKER_NOFILE = 1048576

_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_MODE = re.compile(r"^container:([0-9a-f]{64})$")
# /dev entries docker leaves out of a privileged container's devices (mounted by the runtime).
_PRIVILEGED_SKIP = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev", "console"}

SHM_DEFAULT = 64 << 20
INIT_PATH = "/sbin/docker-init"
# tini-static runs in any image (no libc needed); plain tini where only it is installed.
INIT_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/tini")


@dataclass(frozen=True)
class Host:
    """What the container service itself has, and so what it can hand on."""

    bounding: tuple[str, ...]
    oom_score_adj: int
    # resource name -> the service's hard limit (RLIM_INFINITY as -1).
    hard_limits: dict
    cpus: frozenset[int]
    mems: frozenset[int]
    swap_accounting: bool
    cgroup_v1: bool
    runtimes: tuple[str, ...] = ("runc",)
    default_pids_limit: int = 0
    init_binary: str = ""

    @property
    def can_raise(self) -> bool:
        return "CAP_SYS_RESOURCE" in self.bounding


def host(default_pids_limit: int = 0) -> Host:
    """The facts of this process, read once at start-up."""
    return Host(bounding=_bounding(), oom_score_adj=_read_int("/proc/self/oom_score_adj"),
                hard_limits={n: _hard(r) for n, r in _RLIMITS.items()}, cpus=_cpuset("cpus"),
                mems=_cpuset("mems"), swap_accounting=_swap_accounting(),
                cgroup_v1=not os.path.exists("/sys/fs/cgroup/cgroup.controllers"),
                default_pids_limit=default_pids_limit,
                init_binary=next((p for p in INIT_CANDIDATES if os.access(p, os.X_OK)), "") or
                (shutil.which("tini-static") or shutil.which("tini") or ""))


# -- resolve: every option checked, defaults filled in -----------------------------------

def resolve(spec: Spec, h: Host) -> Spec:
    """`spec` with its options checked and its defaults in force; InvalidArgument names
    the first option that cannot be honoured."""
    s = spec.security
    if spec.runtime not in ("", *h.runtimes):
        raise errors.InvalidArgument(f"unknown or invalid runtime name: {spec.runtime}")
    capabilities(s.cap_add, s.cap_drop, s.privileged, h)
    for d in s.devices:
        _check_device(d)
    for rule in s.device_cgroup_rules:
        parse_rule(rule)
    for mode, name in ((s.pid_mode, "PID"), (s.ipc_mode, "IPC"), (s.uts_mode, "UTS")):
        if mode not in ("", "host") and not (name == "IPC" and mode == "shareable") and not _MODE.match(mode):
            raise errors.InvalidArgument(f"invalid {name} mode: {mode!r}: expected host or container:<id>")
    for key, _ in s.sysctls:
        check_sysctl(key, host_network=not spec.netns_path, host_ipc=s.ipc_mode == "host")
    for u in s.ulimits:
        _check_ulimit(u, h)
    if s.oom_score_adj < -1000 or s.oom_score_adj > 1000:
        raise errors.InvalidArgument(f"Invalid value {s.oom_score_adj}, range for oom score adj is [-1000, 1000]")
    if s.oom_score_adj and s.oom_score_adj < h.oom_score_adj and not h.can_raise:
        raise errors.InvalidArgument(
            f"oom-score-adj {s.oom_score_adj} is below the engine's own ({h.oom_score_adj}): lowering it "
            "needs CAP_SYS_RESOURCE, which this host does not grant the engine; only raising is permitted")
    if s.shm_size < 0:
        raise errors.InvalidArgument("SHM size can not be less than 0")
    if s.init and not h.init_binary:
        raise errors.InvalidArgument("--init: no init binary (tini) is installed on this node")
    if s.seccomp_profile not in ("", "unconfined"):
        seccomp.load(s.seccomp_profile)
    for group in s.group_add:
        if not group:
            raise errors.InvalidArgument("group-add: empty group name")
    resources = _resolve_resources(spec.resources, h)
    return replace(spec, resources=resources)


def _resolve_resources(r, h: Host):
    if r.pids_limit < -1:
        raise errors.InvalidArgument(f"invalid pids limit {r.pids_limit}: -1 is no limit")
    pids = h.default_pids_limit if r.pids_limit == 0 else max(r.pids_limit, 0)
    if r.memory_swap and not r.memory_bytes:
        raise errors.InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if r.memory_swap > 0 and r.memory_swap < r.memory_bytes:
        raise errors.InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if r.memory_swap < -1:
        raise errors.InvalidArgument(f"invalid memory swap {r.memory_swap}: -1 is unlimited")
    if r.memory_swap and not h.swap_accounting:
        raise errors.InvalidArgument("memory-swap: this host's kernel has no swap accounting")
    if r.memory_reservation < 0:
        raise errors.InvalidArgument("memory reservation can not be negative")
    if r.memory_bytes and r.memory_reservation > r.memory_bytes:
        raise errors.InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    if r.oom_kill_disable and not h.cgroup_v1:
        raise errors.InvalidArgument("oom-kill-disable: not supported by this host's cgroup v2")
    for value, available, what, name in ((r.cpuset_cpus, h.cpus, "CPUs", "cpus"),
                                         (r.cpuset_mems, h.mems, "memory nodes", "mems")):
        if value:
            wanted = parse_cpuset(value, name)
            if not wanted <= available:
                raise errors.InvalidArgument(f"Requested {what} are not available - requested {value}, "
                                             f"available: {_format_set(available)}")
    return replace(r, pids_limit=pids)


def capabilities(add, drop, privileged: bool, h: Host) -> list[str]:
    """docker's capability arithmetic: ALL in add gives all but the drops; ALL in drop
    gives just the adds; otherwise the defaults less the drops plus the adds."""
    known = [c for c in ALL_CAPABILITIES if c in h.bounding]
    if privileged:
        return known
    adds, drops = _normalize(add), _normalize(drop)
    for c in adds + drops:
        if c != "ALL" and c not in ALL_CAPABILITIES:
            raise errors.InvalidArgument(f"unknown capability: {c!r}")
    if "ALL" in adds:
        caps = [c for c in known if c not in drops]
    elif "ALL" in drops:
        caps = list(dict.fromkeys(adds))
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops]
        caps += [c for c in adds if c not in caps]
    missing = [c for c in caps if c not in h.bounding]
    if missing:
        raise errors.InvalidArgument(
            f"capability {missing[0]} cannot be added: it is not in the engine's bounding set on this host")
    return caps


def _normalize(names) -> list[str]:
    out = []
    for n in names:
        n = n.strip().upper()
        out.append(n if n == "ALL" or n.startswith("CAP_") else f"CAP_{n}")
    return out


def check_sysctl(key: str, host_network: bool, host_ipc: bool) -> None:
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if host_ipc:
            raise errors.InvalidArgument(f"sysctl {key!r} is not allowed in host IPC namespace")
        return
    if key.startswith("net."):
        if host_network:
            raise errors.InvalidArgument(f"sysctl {key!r} is not allowed in host network namespace")
        return
    raise errors.InvalidArgument(f"sysctl {key!r} is not allowed")


def parse_rule(rule: str) -> dict:
    """A --device-cgroup-rule as the OCI device cgroup entry it allows."""
    text = rule.strip()
    if text == "a":
        return {"allow": True, "access": "rwm"}
    m = _RULE.match(text)
    if not m:
        raise errors.InvalidArgument(f"invalid device cgroup format '{rule}'")
    kind, major, minor, access = m.groups()
    out: dict = {"allow": True, "type": kind, "access": access}
    if major != "*":
        out["major"] = int(major)
    if minor != "*":
        out["minor"] = int(minor)
    return out


def parse_cpuset(value: str, name: str = "cpus") -> frozenset[int]:
    if not _CPUSET.match(value):
        raise errors.InvalidArgument(f"Invalid value {value} for cpuset {name}")
    out = set()
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            raise errors.InvalidArgument(f"Invalid value {value} for cpuset {name}")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def _format_set(values: frozenset[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


def _check_device(d: Device) -> None:
    if not os.path.isabs(d.path_on_host):
        raise errors.InvalidArgument(f"{d.path_on_host} is not an absolute path")
    if d.path_in_container and not os.path.isabs(d.path_in_container):
        raise errors.InvalidArgument(f"{d.path_in_container} is not an absolute path")
    if set(d.permissions) - set("rwm"):
        raise errors.InvalidArgument(f"invalid device mode: {d.permissions}")


def _check_ulimit(u: Ulimit, h: Host) -> None:
    if u.name not in _RLIMITS:
        raise errors.InvalidArgument(f"invalid ulimit type: {u.name}")
    if u.hard != -1 and (u.soft == -1 or u.soft > u.hard):
        raise errors.InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: "
                                     f"{'unlimited' if u.soft == -1 else u.soft} > {u.hard}")
    limit = h.hard_limits.get(u.name, -1)
    if not h.can_raise and limit != -1 and (u.hard == -1 or u.hard > limit):
        raise errors.InvalidArgument(
            f"ulimit {u.name}={u.soft}:{u.hard}: the hard limit is above the engine's own ({limit}); "
            "raising it needs CAP_SYS_RESOURCE, which this host does not grant the engine")


# -- apply: config.json edited ------------------------------------------------------------

def apply(config: dict, spec: Spec, rootfs: str, h: Host, donor: Callable[[str], "Donor"],
          shm_dir: str = "") -> None:
    """Edits the OCI config oci_config made for `spec` (which resolve checked). `donor`
    tells about a container whose namespaces this one joins; `shm_dir` is this
    container's host-side /dev/shm when its IPC is shareable (prepare_shm)."""
    s = spec.security
    proc, linux = config["process"], config["linux"]
    caps = capabilities(s.cap_add, s.cap_drop, s.privileged, h)
    proc["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    if s.no_new_privileges:
        proc["noNewPrivileges"] = True
    if s.oom_score_adj:
        proc["oomScoreAdj"] = s.oom_score_adj
    proc["rlimits"] = _rlimits(s.ulimits, h)
    if s.group_add:
        gids = list(proc["user"].get("additionalGids", ()))
        gids += [g for g in group_ids(rootfs, s.group_add) if g not in gids]
        proc["user"]["additionalGids"] = gids
    if s.init:
        config["mounts"].append({"destination": INIT_PATH, "type": "bind", "source": h.init_binary,
                                 "options": ["rbind", "ro", "nosuid", "nodev"]})
        proc["args"] = [INIT_PATH, "--", *proc["args"]]

    profile = None
    if s.seccomp_profile and s.seccomp_profile != "unconfined":
        profile = seccomp.load(s.seccomp_profile)
    elif not s.seccomp_profile and not s.privileged:
        profile = seccomp.default_profile()
    if profile is not None:
        filt = seccomp.oci_seccomp(profile, caps)
        if filt is not None:
            linux["seccomp"] = filt

    if s.privileged or s.unmasked_paths:
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
    if s.privileged:
        for m in config["mounts"]:
            if m["destination"] == "/sys":
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    _namespaces(config, s, donor)
    _shm(config, s, donor, shm_dir)
    _devices(config, spec, h)
    if s.sysctls:
        linux["sysctl"] = dict(s.sysctls)
    _resources(linux["resources"], spec.resources)


def _rlimits(ulimits, h: Host) -> list[dict]:
    """The ulimits asked for, over the default: nofile as docker has it (1048576 soft and
    hard), capped at the engine's own hard limit, which it cannot exceed."""
    hard = h.hard_limits.get("nofile", -1)
    nofile = DOCKER_NOFILE if hard == -1 else min(DOCKER_NOFILE, hard)
    wanted = {"nofile": (nofile, nofile)}
    for u in ulimits:
        wanted[u.name] = (u.soft, u.hard)
    return [{"type": f"RLIMIT_{name.upper()}", "soft": _UNLIMITED if soft == -1 else soft,
             "hard": _UNLIMITED if hard_ == -1 else hard_} for name, (soft, hard_) in sorted(wanted.items())]


@dataclass(frozen=True)
class Donor:
    """A container another joins: its pid (0 when it does not run) and its host-side
    /dev/shm ("" unless its IPC is shareable)."""

    pid: int = 0
    shm_dir: str = ""


def prepare_shm(spec: Spec, shm_dir: str) -> None:
    """A shareable IPC's /dev/shm: a tmpfs on the host side, in the bundle, so that
    containers joining the IPC namespace can bind the same one (docker's shareable)."""
    if spec.security.ipc_mode != "shareable" or os.path.ismount(shm_dir):
        return
    os.makedirs(shm_dir, mode=0o700, exist_ok=True)
    size = spec.security.shm_size or SHM_DEFAULT
    rt.mount_rootfs((Mount(type="tmpfs", source="shm", options=(
        "nosuid", "nodev", "noexec", "mode=1777", f"size={size}")),), shm_dir)


def _namespaces(config: dict, s, donor: Callable[[str], Donor]) -> None:
    linux = config["linux"]
    for kind, mode, name in (("pid", s.pid_mode, "PID"), ("ipc", s.ipc_mode, "IPC"), ("uts", s.uts_mode, "UTS")):
        if not mode or mode == "shareable":
            continue
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != kind]
        if mode not in ("host", "shareable"):
            pid = _joined(donor, mode, name).pid
            linux["namespaces"].append({"type": kind, "path": f"/proc/{pid}/ns/{kind}"})
        if kind == "uts":
            # The hostname belongs to the UTS namespace joined: the runtime may not set it.
            config.pop("hostname", None)


def _joined(donor: Callable[[str], Donor], mode: str, name: str) -> Donor:
    cid = mode.split(":", 1)[1]
    d = donor(cid)
    if not d.pid:
        raise errors.FailedPrecondition(f"cannot join {name} namespace of a non running container: {cid[:12]}")
    return d


def _shm(config: dict, s, donor: Callable[[str], Donor], shm_dir: str) -> None:
    """/dev/shm: a tmpfs of --shm-size; the host's with the host's IPC; the donor's
    host-side one when joining a shareable container's IPC (docker's rules)."""
    bind = ""
    if s.ipc_mode == "host":
        bind = "/dev/shm"
    elif s.ipc_mode == "shareable":
        bind = shm_dir
    elif s.ipc_mode.startswith("container:"):
        bind = _joined(donor, s.ipc_mode, "IPC").shm_dir
        if not bind:
            raise errors.FailedPrecondition(
                "cannot join IPC namespace of a non-shareable container "
                "(hint: use --ipc shareable for the donor container)")
    for m in config["mounts"]:
        if m["destination"] != "/dev/shm":
            continue
        if bind:
            m.update(type="bind", source=bind, options=["rbind", "nosuid", "noexec", "nodev"])
        elif s.shm_size:
            m["options"] = [o for o in m["options"] if not o.startswith("size=")] + [f"size={s.shm_size}"]


def _devices(config: dict, spec: Spec, h: Host) -> None:
    s = spec.security
    linux = config["linux"]
    rules = linux["resources"]["devices"]
    nodes = []
    if s.privileged:
        nodes = [_node(path, path) for path in _host_devices("/dev")]
        rules.append({"allow": True, "access": "rwm"})
    for d in s.devices:
        for node in _mapped(d):
            nodes.append(node)
            rules.append({"allow": True, "type": node["type"], "major": node["major"],
                          "minor": node["minor"], "access": d.permissions or "rwm"})
    rules.extend(parse_rule(r) for r in s.device_cgroup_rules)
    if nodes:
        seen = {}
        for n in nodes:
            seen[n["path"]] = n
        linux["devices"] = list(seen.values())


def _mapped(d: Device) -> list[dict]:
    """The nodes one --device maps: the device, or every device below a directory."""
    target = d.path_in_container or d.path_on_host
    try:
        st = os.stat(d.path_on_host)
    except OSError as exc:
        raise errors.InvalidArgument(f'error gathering device information while adding custom device '
                                     f'"{d.path_on_host}": {exc.strerror.lower()}') from None
    if stat.S_ISDIR(st.st_mode):
        found = [_node(p, os.path.join(target, os.path.relpath(p, d.path_on_host)))
                 for p in _host_devices(d.path_on_host)]
        if not found:
            raise errors.InvalidArgument(f'error gathering device information while adding custom device '
                                         f'"{d.path_on_host}": no devices found')
        return found
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise errors.InvalidArgument(f'error gathering device information while adding custom device '
                                     f'"{d.path_on_host}": not a device node')
    return [_node(d.path_on_host, target)]


def _node(host_path: str, path: str) -> dict:
    st = os.stat(host_path)
    return {"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
            "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}


def _host_devices(root: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d not in _PRIVILEGED_SKIP]
            filenames = [f for f in filenames if f not in _PRIVILEGED_SKIP]
        for f in filenames:
            path = os.path.join(dirpath, f)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                out.append(path)
    return sorted(out)


def group_ids(rootfs: str, groups) -> list[int]:
    """--group-add's groups as gids: names from the rootfs's /etc/group, or numbers."""
    entries = spec_mod._read_db(rootfs, "/etc/group")
    out = []
    for g in groups:
        if g.isdigit():
            out.append(int(g))
            continue
        e = next((e for e in entries if len(e) >= 3 and e[0] == g and e[2].isdigit()), None)
        if e is None:
            raise errors.InvalidArgument(f"Unable to find group {g}: no matching entries in group file")
        out.append(int(e[2]))
    return out


def _resources(out: dict, r) -> None:
    mem = out.setdefault("memory", {})
    if r.memory_bytes:
        # docker's default swap: as much again as the memory limit.
        mem["swap"] = r.memory_swap or 2 * r.memory_bytes
    if r.memory_reservation:
        mem["reservation"] = r.memory_reservation
    if r.oom_kill_disable:
        mem["disableOOMKiller"] = True
    if not mem:
        del out["memory"]
    if r.cpuset_cpus or r.cpuset_mems:
        cpu = out.setdefault("cpu", {})
        if r.cpuset_cpus:
            cpu["cpus"] = r.cpuset_cpus
        if r.cpuset_mems:
            cpu["mems"] = r.cpuset_mems


# -- host facts ----------------------------------------------------------------------------

def _bounding() -> tuple[str, ...]:
    with open("/proc/self/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return tuple(c for i, c in enumerate(ALL_CAPABILITIES) if mask >> i & 1)


def _read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _hard(res: int) -> int:
    hard = resource.getrlimit(res)[1]
    return -1 if hard == resource.RLIM_INFINITY else hard


def _cpuset(kind: str) -> frozenset[int]:
    for path in (f"/sys/fs/cgroup/cpuset/cpuset.{kind}", f"/sys/fs/cgroup/cpuset.{kind}.effective"):
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return parse_cpuset(text, kind)
        except OSError:
            continue
    return frozenset(os.sched_getaffinity(0)) if kind == "cpus" else frozenset({0})


@functools.cache
def _swap_accounting() -> bool:
    return (os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
            or os.path.exists("/sys/fs/cgroup/memory.swap.max"))
