"""User namespaces: docker's userns-remap, and the idmapped mounts that make it cheap.

With remapping, container root is an unprivileged host uid: the daemon's user's
first subordinate range (/etc/subuid, /etc/subgid) maps onto container ids 0..n.
runc makes the namespace from the mappings in config.json; this module gives
the files the same view without copying or chowning a layer:

    image layers   each lowerdir is cloned as a detached mount (open_tree) idmapped
                   with the namespace (mount_setattr MOUNT_ATTR_IDMAP) and handed to
                   overlayfs as /proc/self/fd/<n>: a file owned by 0 on disk is the
                   container's root, so layers stay shared with every other container.
    upper layer    written in host ids (overlayfs writes as its mounter, and an
                   idmapped upper would need the mounter mapped); its root directory is
                   given to the container's root so that root may write in `/`.
    volumes        bind mounts marked "idmap" (the gateway marks volumes) are idmapped
                   onto bundles/<id>/idmap/<n>, and runc binds that: their files keep
                   their on-disk owners, shared alike by remapped and host containers.
    bind mounts    not mapped, as docker does not: a host file keeps its host owner,
                   so a root-only host file is unreadable to the container's root.

Measured on the 6.18 kernel: an idmapped mount of the overlay itself is refused
(EINVAL); an idmapped upper layer mounts read-only (EOVERFLOW making work/, as
the mounter is unmapped); idmapped lower layers work. Where the layers'
filesystem cannot be idmapped at all, CreateContainer fails naming it (a
chowned copy of every layer per range would be the fallback; not done).

The namespace whose mapping the mounts use is made once per mapping (a child
that unshares, its maps written, its ns file kept open) and reused.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import os
import pwd
import subprocess
import threading
import time
from dataclasses import replace

import structlog

from services.common import errors
from services.common.config import Config
from services.container import runtime as rt
from services.container.model import IdMapping, Mount, Spec, UserNamespace

log = structlog.get_logger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442
_OPEN_TREE_CLONE, _OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
_AT_RECURSIVE, _AT_EMPTY_PATH = 0x8000, 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 4
_MOUNT_ATTR_IDMAP = 0x100000
_AT_FDCWD = -100

DEFAULT_USER = "berth"
# Size of the range docker's "default" asks for, and where a new one may start.
RANGE_SIZE = 65536
FIRST_ID = 100000
MODES = ("", "host", "remap")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _raise(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


# -- the daemon's ranges ------------------------------------------------------------------

def _ranges(path: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    try:
        with open(path) as f:
            lines = [line.strip().split(":") for line in f if line.strip() and not line.startswith("#")]
    except FileNotFoundError:
        return []
    return [(int(p[1]), int(p[2])) for p in lines if len(p) == 3 and p[0] in names]


def _maps(ranges: list[tuple[int, int]]) -> tuple[IdMapping, ...]:
    """Container ids 0.. onto the ranges in order, as docker maps them."""
    out, next_id = [], 0
    for start, size in ranges:
        out.append(IdMapping(next_id, start, size))
        next_id += size
    return tuple(out)


def _create_default_user(config: Config) -> None:
    """The "berth" user with a free range in the subordinate id files (docker's dockremap)."""
    if _lookup_user(DEFAULT_USER) is None:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        DEFAULT_USER], check=True, capture_output=True)
    for path in (config.subuid_file, config.subgid_file):
        if _ranges(path, (DEFAULT_USER,)):
            continue
        taken = [start + size for start, size in _ranges(path, _all_names(path))]
        start = max([FIRST_ID, *taken])
        with open(path, "a") as f:
            f.write(f"{DEFAULT_USER}:{start}:{RANGE_SIZE}\n")
        log.info("userns_range_added", file=path, user=DEFAULT_USER, start=start, size=RANGE_SIZE)


def _all_names(path: str) -> tuple[str, ...]:
    try:
        with open(path) as f:
            return tuple(line.split(":", 1)[0] for line in f if ":" in line)
    except FileNotFoundError:
        return ()


def _lookup_user(name: str):
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return None


def daemon_remap(config: Config) -> UserNamespace | None:
    """The daemon's remapping (config.userns_remap), or None when it runs none. A
    setting that names no usable ranges fails the service at start, as dockerd fails."""
    setting = config.userns_remap.strip()
    if not setting:
        return None
    if setting == "default":
        _create_default_user(config)
        setting = DEFAULT_USER
    user_name, _, group_name = setting.partition(":")
    user = _lookup_user(user_name)
    if user is None:
        raise errors.InvalidArgument(f"userns-remap: no such user {user_name!r}")
    group_name = group_name or user.pw_name
    try:
        group = grp.getgrgid(int(group_name)) if group_name.isdigit() else grp.getgrnam(group_name)
    except KeyError:
        raise errors.InvalidArgument(f"userns-remap: no such group {group_name!r}") from None
    uids = _maps(_ranges(config.subuid_file, (user.pw_name, str(user.pw_uid))))
    gids = _maps(_ranges(config.subgid_file, (group.gr_name, str(group.gr_gid))))
    if not uids or not gids:
        raise errors.InvalidArgument(
            f"userns-remap: no subordinate ranges for {setting!r} in "
            f"{config.subuid_file if not uids else config.subgid_file}")
    return UserNamespace(mode="remap", uid_mappings=uids, gid_mappings=gids)


def resolve(spec: Spec, remap: UserNamespace | None) -> Spec:
    """The spec with its user namespace as it will be: the daemon's for "", none for
    "host"; anything else is refused, naming it."""
    mode = spec.userns.mode
    if mode not in MODES:
        raise errors.InvalidArgument(
            f'invalid user namespace mode (--userns) "{mode}": berth supports "host" '
            "(and, left empty, the daemon's userns-remap)")
    if mode == "host" or (mode == "" and remap is None):
        return replace(spec, userns=UserNamespace(mode="host"))
    if remap is None:
        raise errors.InvalidArgument(
            'user namespace mode "remap" needs the daemon to run with userns-remap')
    # dockerd's rules and words, for what a remapped root cannot be given.
    if spec.security.privileged:
        raise errors.InvalidArgument(
            "privileged mode is incompatible with user namespaces. You must run the container "
            "in the host namespace when running privileged mode (--userns host)")
    if spec.security.pid_mode == "host":
        raise errors.InvalidArgument(
            "cannot share the host PID namespace when user namespaces are enabled (--userns host)")
    return replace(spec, userns=remap)


def check_exec(spec: Spec) -> None:
    """An exec joins every namespace of the container, the user namespace first (runc 1.1),
    and then may not join a network namespace that the host's user namespace owns, as
    the network service's are: refused here in words instead of runc's."""
    if spec.userns.uid_mappings and spec.netns_path:
        raise errors.FailedPrecondition(
            "exec into a container with a remapped user namespace is not supported with this "
            "OCI runtime (runc 1.1 cannot join the container's network namespace from its user "
            "namespace; runc >= 1.2 can): run the container with --userns host to exec into it")


def host_root(userns: UserNamespace) -> tuple[int, int]:
    """The host uid and gid of the container's root."""
    def to_host(maps: tuple[IdMapping, ...]) -> int:
        for m in maps:
            if m.container_id <= 0 < m.container_id + m.size:
                return m.host_id - m.container_id
        raise errors.InvalidArgument("the user namespace maps no root")
    return to_host(userns.uid_mappings), to_host(userns.gid_mappings)


def oci_userns(config: dict, userns: UserNamespace) -> dict:
    """config.json with the user namespace and its mappings (nothing for "host")."""
    if not userns.uid_mappings:
        return config
    linux = config["linux"]
    linux["namespaces"] = [*linux["namespaces"], {"type": "user"}]
    linux["uidMappings"] = [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size}
                            for m in userns.uid_mappings]
    linux["gidMappings"] = [{"containerID": m.container_id, "hostID": m.host_id, "size": m.size}
                            for m in userns.gid_mappings]
    # sysfs can be mounted only from the user namespace that owns the network namespace,
    # and the network service makes those in the host's: the host's /sys is bound
    # instead, read-only all the way down, as docker does for a remapped container.
    config["mounts"] = [
        {"destination": "/sys", "type": "bind", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro", "rro"]}
        if m.get("type") == "sysfs" else m for m in config["mounts"]]
    return config


# -- namespaces and idmapped mounts -------------------------------------------------------

class Namespaces:
    """User namespace fds by mapping, made once and kept open for idmapped mounts."""

    def __init__(self):
        self._fds: dict[UserNamespace, int] = {}
        self._lock = threading.Lock()

    def fd(self, userns: UserNamespace) -> int:
        key = replace(userns, mode="remap")
        with self._lock:
            if key not in self._fds:
                self._fds[key] = _make_userns(userns)
            return self._fds[key]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _map_text(maps: tuple[IdMapping, ...]) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)


def _make_userns(userns: UserNamespace) -> int:
    """A user namespace with `userns`'s mappings: `unshare --user cat` makes it, this
    process writes its maps and opens its ns file, then ends cat; the fd keeps the
    namespace. (Not os.fork + unshare: the child of a process running gRPC threads
    is not single-threaded enough for CLONE_NEWUSER, which fails with EINVAL.)"""
    own = os.readlink("/proc/self/ns/user")
    proc = subprocess.Popen(["unshare", "--user", "--", "cat"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if os.readlink(f"/proc/{proc.pid}/ns/user") != own:
                    break
            except FileNotFoundError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise errors.Internal("could not create a user namespace: unshare: "
                                      + proc.stderr.read().decode(errors="replace").strip())
            time.sleep(0.001)
        with open(f"/proc/{proc.pid}/uid_map", "w") as f:
            f.write(_map_text(userns.uid_mappings))
        with open(f"/proc/{proc.pid}/gid_map", "w") as f:
            f.write(_map_text(userns.gid_mappings))
        return os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        proc.stdin.close()
        proc.wait()
        proc.stderr.close()


def idmapped_tree(path: str, userns_fd: int, recursive: bool = False) -> int:
    """A detached, idmapped clone of the mount at `path`; its fd (close it when done)."""
    rec = _AT_RECURSIVE if recursive else 0
    fd = _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, path.encode(),
                       _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | rec)
    if fd < 0:
        _raise(f"open_tree {path}")
    attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
    if _libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH | rec, ctypes.byref(attr),
                     ctypes.sizeof(attr)) != 0:
        os.close(fd)
        _raise(f"idmapped mount of {path}")
    return fd


def clone_tree(fd: int, recursive: bool = False) -> int:
    """A detached bind-mount clone of what the open fd `fd` is (open_tree on it, not on a
    path that could change); its fd (close it when done)."""
    rec = _AT_RECURSIVE if recursive else 0
    tree = _libc.syscall(_SYS_OPEN_TREE, fd, b"", _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_EMPTY_PATH | rec)
    if tree < 0:
        _raise("open_tree of an opened path")
    return tree


def attach_tree(fd: int, target: str) -> None:
    """Attach a detached mount (from open_tree) at `target`."""
    _attach(fd, target)


def _attach(fd: int, target: str) -> None:
    if _libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, target.encode(), _MOVE_MOUNT_F_EMPTY_PATH) != 0:
        _raise(f"move_mount onto {target}")


@contextlib.contextmanager
def mapped_rootfs(mounts: tuple[Mount, ...], userns: UserNamespace, userns_fd: int):
    """The rootfs mounts with each overlay lowerdir idmapped (as /proc/self/fd/<n>, valid
    while this context lasts: mount them inside it), and each upperdir's root given to
    the container's root."""
    fds: list[int] = []
    root_uid, root_gid = host_root(userns)
    try:
        out = []
        for m in mounts:
            if m.type != "overlay":
                out.append(m)
                continue
            options = []
            for opt in m.options:
                key, _, value = opt.partition("=")
                if key == "lowerdir":
                    paths = []
                    for lower in value.split(":"):
                        try:
                            fds.append(idmapped_tree(lower, userns_fd))
                        except OSError as exc:
                            raise errors.FailedPrecondition(
                                f"user namespace: the image layers cannot be mapped ({exc}); run "
                                "with --userns host") from None
                        paths.append(f"/proc/self/fd/{fds[-1]}")
                    opt = "lowerdir=" + ":".join(paths)
                elif key == "upperdir":
                    os.chown(value, root_uid, root_gid)
                options.append(opt)
            out.append(replace(m, options=tuple(options)))
        yield tuple(out)
    finally:
        for fd in fds:
            os.close(fd)


def make_traversable(path: str) -> None:
    """runc binds the rootfs onto itself from inside the user namespace, as the
    container's (unprivileged) root: every directory above a bundle must let it pass.
    Search only (o+x, docker's 0711 on its root): nothing can be listed."""
    path = os.path.abspath(path)
    while True:
        st = os.stat(path)
        if not st.st_mode & 0o001:
            os.chmod(path, (st.st_mode & 0o7777) | 0o001)
            log.info("userns_dir_made_traversable", path=path)
        if path == "/":
            return
        path = os.path.dirname(path)


def idmap_dir(bundle_dir: str) -> str:
    return os.path.join(bundle_dir, "idmap")


def mapped_mounts(spec: Spec, bundle_dir: str, namespaces: Namespaces) -> tuple[Mount, ...]:
    """spec.mounts as runc gets them: "idmap" binds (volumes) replaced, with a user
    namespace, by an idmapped mount of their source under the bundle; "idmap" dropped."""
    out = []
    mapped = bool(spec.userns.uid_mappings)
    for i, m in enumerate(spec.mounts):
        if "idmap" not in m.options:
            out.append(m)
            continue
        options = tuple(o for o in m.options if o != "idmap")
        if not mapped or m.type != "bind":
            out.append(replace(m, options=options))
            continue
        target = os.path.join(idmap_dir(bundle_dir), str(i))
        if target not in rt.mounts_under(target):
            os.makedirs(target, mode=0o700, exist_ok=True)
            fd = idmapped_tree(m.source, namespaces.fd(spec.userns), recursive="rbind" in options)
            try:
                _attach(fd, target)
            finally:
                os.close(fd)
        out.append(replace(m, source=target, options=options))
    return tuple(out)
