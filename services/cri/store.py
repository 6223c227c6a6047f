"""CriStore: the pod sandboxes and containers the CRI service made, over sqlite.

    sandboxes                                        containers
    +------------+-------------------------------+   +------------+---------------------------------+
    | id         | TEXT PK (64 hex)              |<--| sandbox_id | TEXT FK sandboxes.id            |
    | config     | BLOB runtime.v1 PodSandboxCfg |   | id         | TEXT PK (64 hex)                |
    | state      | TEXT "ready" / "notready"     |   | config     | BLOB runtime.v1 ContainerConfig |
    | created_ns | INTEGER                       |   | image_id   | TEXT "sha256:..." at create     |
    | network    | TEXT json (netns, ip, mounts) |   | created_ns | INTEGER                         |
    +------------+-------------------------------+   | log_path   | TEXT host path, "" for none     |
                                                     +------------+---------------------------------+

What the kubelet asked for is kept as it sent it (the CRI messages are the
contract); whether a container runs is never stored here, it is asked of the
container service each time. A sandbox's row is written only once its network
and its sandbox container exist, and removed only after both are gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Protocol

from services.common import errors
from services.common.sqlite import Transaction, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS sandboxes (
    id         TEXT PRIMARY KEY,
    config     BLOB NOT NULL,
    state      TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    network    TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS containers (
    id         TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL REFERENCES sandboxes(id),
    config     BLOB NOT NULL,
    image_id   TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    log_path   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS containers_sandbox ON containers(sandbox_id);
"""

READY, NOTREADY = "ready", "notready"


@dataclass(frozen=True)
class SandboxNetwork:
    """The sandbox's place on the node's network, as the network service made it."""

    netns_path: str = ""
    ip: str = ""
    # /etc/hosts and /etc/resolv.conf binds for its containers: (source, target).
    mounts: tuple[tuple[str, str], ...] = ()
    # Host ports published, as (protocol, host_ip, host_port, container_port).
    ports: tuple[tuple[str, str, int, int], ...] = ()

    def to_json(self) -> str:
        return json.dumps({"netns_path": self.netns_path, "ip": self.ip,
                           "mounts": self.mounts, "ports": self.ports})

    @classmethod
    def from_json(cls, text: str) -> SandboxNetwork:
        d = json.loads(text or "{}")
        return cls(netns_path=d.get("netns_path", ""), ip=d.get("ip", ""),
                   mounts=tuple(tuple(m) for m in d.get("mounts", ())),
                   ports=tuple(tuple(p) for p in d.get("ports", ())))


@dataclass(frozen=True)
class SandboxRecord:
    id: str
    config: bytes
    state: str
    created_ns: int
    network: SandboxNetwork = field(default_factory=SandboxNetwork)

    def replace(self, **changes) -> SandboxRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    sandbox_id: str
    config: bytes
    image_id: str
    created_ns: int
    log_path: str = ""


class Store(Protocol):
    def put_sandbox(self, record: SandboxRecord) -> None: ...
    def sandbox(self, ref: str) -> SandboxRecord: ...
    def sandboxes(self) -> list[SandboxRecord]: ...
    def delete_sandbox(self, id: str) -> None: ...
    def put_container(self, record: ContainerRecord) -> None: ...
    def container(self, ref: str) -> ContainerRecord: ...
    def containers(self, sandbox_id: str = "") -> list[ContainerRecord]: ...
    def delete_container(self, id: str) -> None: ...


class CriStore:
    def __init__(self, path: str):
        self.db = open_db(path, SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- sandboxes ---------------------------------------------------------------

    def put_sandbox(self, r: SandboxRecord) -> None:
        with Transaction(self.db) as db:
            db.execute("INSERT OR REPLACE INTO sandboxes (id, config, state, created_ns, network) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (r.id, r.config, r.state, r.created_ns, r.network.to_json()))

    def sandbox(self, ref: str) -> SandboxRecord:
        return _sandbox(_one(self.db, "sandboxes", ref, "pod sandbox"))

    def sandboxes(self) -> list[SandboxRecord]:
        return [_sandbox(row) for row in self.db.execute("SELECT * FROM sandboxes ORDER BY created_ns")]

    def delete_sandbox(self, id: str) -> None:
        with Transaction(self.db) as db:
            db.execute("DELETE FROM containers WHERE sandbox_id = ?", (id,))
            db.execute("DELETE FROM sandboxes WHERE id = ?", (id,))

    # -- containers --------------------------------------------------------------

    def put_container(self, r: ContainerRecord) -> None:
        with Transaction(self.db) as db:
            db.execute("INSERT OR REPLACE INTO containers "
                       "(id, sandbox_id, config, image_id, created_ns, log_path) VALUES (?, ?, ?, ?, ?, ?)",
                       (r.id, r.sandbox_id, r.config, r.image_id, r.created_ns, r.log_path))

    def container(self, ref: str) -> ContainerRecord:
        return _container(_one(self.db, "containers", ref, "container"))

    def containers(self, sandbox_id: str = "") -> list[ContainerRecord]:
        if sandbox_id:
            rows = self.db.execute("SELECT * FROM containers WHERE sandbox_id = ? ORDER BY created_ns",
                                   (sandbox_id,))
        else:
            rows = self.db.execute("SELECT * FROM containers ORDER BY created_ns")
        return [_container(row) for row in rows]

    def delete_container(self, id: str) -> None:
        with Transaction(self.db) as db:
            db.execute("DELETE FROM containers WHERE id = ?", (id,))


def _one(db, table: str, ref: str, what: str):
    """The row whose id is `ref` or starts with it (crictl passes short ids)."""
    if not ref:
        raise errors.InvalidArgument(f"{what} id is empty")
    if not all(c in "0123456789abcdef" for c in ref):
        raise errors.NotFound(f"{what} {ref!r} not found")
    rows = db.execute(f"SELECT * FROM {table} WHERE id >= ? AND id < ? LIMIT 2",  # noqa: S608
                      (ref, ref + "g")).fetchall()
    if not rows:
        raise errors.NotFound(f"{what} {ref!r} not found")
    if len(rows) > 1 and rows[0]["id"] != ref:
        raise errors.InvalidArgument(f"{what} id prefix {ref!r} is ambiguous")
    return rows[0]


def _sandbox(row) -> SandboxRecord:
    return SandboxRecord(id=row["id"], config=bytes(row["config"]), state=row["state"],
                         created_ns=row["created_ns"], network=SandboxNetwork.from_json(row["network"]))


def _container(row) -> ContainerRecord:
    return ContainerRecord(id=row["id"], sandbox_id=row["sandbox_id"], config=bytes(row["config"]),
                           image_id=row["image_id"], created_ns=row["created_ns"], log_path=row["log_path"])
