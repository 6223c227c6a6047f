"""Domain types of the container service: plain frozen dataclasses, no protobuf."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mount:
    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = ()
    # bind only: make a missing source directory at create (docker's -v).
    create_source: bool = False
    # bind only: mount this relative path inside source instead (docker's volume subpath).
    sub_path: str = ""


@dataclass(frozen=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    # "name", "uid", "name:group" or "uid:gid"; resolved in the rootfs at create.
    user: str = ""


@dataclass(frozen=True)
class Resources:
    memory_bytes: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    pids_limit: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    # -1: unlimited swap; 0: docker's default (twice memory_bytes).
    memory_swap: int = 0
    memory_reservation: int = 0
    oom_kill_disable: bool = False


@dataclass(frozen=True)
class LogConfig:
    """A log driver and its docker options, as given (validated by logfiles.policy)."""

    driver: str = ""
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IdMapping:
    container_id: int
    host_id: int
    size: int


@dataclass(frozen=True)
class UserNamespace:
    """"" (the daemon's, resolved at create), "host", or "remap" with its mappings."""

    mode: str = ""
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()


@dataclass(frozen=True)
class Device:
    path_on_host: str
    path_in_container: str = ""
    permissions: str = "rwm"


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class Security:
    """How the container is confined beyond its namespaces (checked by security.validate)."""

    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    devices: tuple[Device, ...] = ()
    device_cgroup_rules: tuple[str, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    ulimits: tuple[Ulimit, ...] = ()
    group_add: tuple[str, ...] = ()
    # "", "host" or "container:<id>".
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    oom_score_adj: int = 0
    shm_size: int = 0
    init: bool = False
    # "" docker's default profile, "unconfined", or a profile's JSON.
    seccomp_profile: str = ""
    no_new_privileges: bool = False
    unmasked_paths: bool = False


@dataclass(frozen=True)
class Spec:
    process: Process
    rootfs: tuple[Mount, ...] = ()
    mounts: tuple[Mount, ...] = ()
    netns_path: str = ""
    hostname: str = ""
    resources: Resources = field(default_factory=Resources)
    stop_signal: str = ""
    readonly_rootfs: bool = False
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    # Filled in at create from the daemon default when the caller gave none.
    log_config: LogConfig = field(default_factory=LogConfig)
    userns: UserNamespace = field(default_factory=UserNamespace)
    security: Security = field(default_factory=Security)
    runtime: str = ""
    # (masked, readonly) replacing the default system paths; None keeps the defaults.
    system_paths: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    # A cgroup namespace of its own, with /sys/fs/cgroup mounted; False shares the host's.
    cgroupns_private: bool = False
    # Legacy links' environment, under process.env (docker's <ALIAS>_PORT... variables).
    link_env: tuple[str, ...] = ()


class Status(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"


@dataclass(frozen=True)
class Exit:
    """How a container's process ended, as conmon recorded it (or berth inferred it)."""

    code: int
    finished_at: float
    oom_killed: bool = False
    # Set when berth had to infer the exit because the monitor left no record.
    note: str = ""


@dataclass(frozen=True)
class Record:
    """A container row: what was asked for plus facts that never change once set."""

    id: str
    name: str
    spec: Spec
    labels: dict[str, str] = field(default_factory=dict)
    metadata: bytes = b""
    created_at: float = 0.0
    started_at: float = 0.0
    exit: Exit | None = None


@dataclass(frozen=True)
class Container:
    """A record together with its derived runtime state."""

    record: Record
    status: Status
    pid: int = 0
    log_path: str = ""

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name


@dataclass(frozen=True)
class LogLine:
    stream: str  # "stdout" or "stderr"
    time_ns: int
    data: bytes


class EventType(enum.Enum):
    CREATE = "create"
    START = "start"
    EXIT = "exit"
    OOM = "oom"
    DELETE = "delete"
    PAUSE = "pause"
    RESUME = "resume"
    EXEC_START = "exec_start"
    EXEC_EXIT = "exec_exit"


@dataclass(frozen=True)
class Event:
    type: EventType
    container_id: str
    time: float
    exit_code: int = 0
    exec_id: str = ""
    # Given by the event log when the event is committed (0 before).
    seq: int = 0
