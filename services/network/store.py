r"""NetworkStore: networks and the endpoints that attach containers to them.

    networks                               endpoints
    +------------+------------------+      +--------------+---------------------------+
    | id         | TEXT PK (64 hex) |<--+  | container_id | TEXT PK (one per container) |
    | name       | TEXT UNIQUE      |   +--| network_id   | TEXT -> networks.id       |
    | driver     | "null"|"host"|.. |      | netns_path   | TEXT ("" = host's netns)  |
    | options    | TEXT json        |      | created_at   | TEXT iso-8601 UTC         |
    | labels     | TEXT json        |      | name         | TEXT container name       |
    | builtin    | INTEGER 0/1      |      | hostname     | TEXT                      |
    |            |                  |      +--------------+---------------------------+
    | created_at | TEXT iso-8601    |
    +------------+------------------+

    attachments (one per container and network; the IPAM leases)
    +--------------+---------------------------------------------+
    | container_id | TEXT  \ PK                                  |
    | network_id   | TEXT  /  -> networks.id                     |
    | address      | TEXT  UNIQUE(network_id, address): a lease  |
    | ifname       | TEXT  "eth0", "eth1", ...                   |
    | host_ifname  | TEXT  the veth end on the bridge            |
    | name         | TEXT  container name, for DNS               |
    | hostname     | TEXT                                        |
    | aliases      | TEXT  json list                             |
    | extra        | TEXT  json: IPv6 address, MAC, links, what  |
    |              |       was asked for (see Attachment)        |
    +--------------+---------------------------------------------+

    ports (published, bound now; UNIQUE(protocol, host_ip, host_port))
    +--------------+----------------+-----------+-----------+----------------+
    | container_id | protocol       | host_ip   | host_port | container_port |
    +--------------+----------------+-----------+-----------+----------------+

    port_requests (what an endpoint made with publish_at_start asked for, as asked:
    the same columns, host_ip "" for every address and host_port 0 for an ephemeral
    one; bound into `ports` while its container runs)

Bridge networks are rows with driver "bridge" and their subnet, gateway,
ip_range, internal flag and bridge name in `options`. The built-in networks
are written at open, with ids derived from their names so they are the same
on every node and after every restart.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from services.common.sqlite import Transaction, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    driver     TEXT NOT NULL,
    options    TEXT NOT NULL DEFAULT '{}',
    labels     TEXT NOT NULL DEFAULT '{}',
    builtin    INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    container_id TEXT PRIMARY KEY,
    network_id   TEXT NOT NULL REFERENCES networks(id),
    netns_path   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    hostname     TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS attachments (
    container_id TEXT NOT NULL,
    network_id   TEXT NOT NULL REFERENCES networks(id),
    address      TEXT NOT NULL,
    ifname       TEXT NOT NULL,
    host_ifname  TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    hostname     TEXT NOT NULL DEFAULT '',
    aliases      TEXT NOT NULL DEFAULT '[]',
    created_at   TEXT NOT NULL,
    extra        TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (container_id, network_id),
    UNIQUE (network_id, address)
);
CREATE TABLE IF NOT EXISTS ports (
    container_id   TEXT NOT NULL,
    protocol       TEXT NOT NULL,
    host_ip        TEXT NOT NULL,
    host_port      INTEGER NOT NULL,
    container_port INTEGER NOT NULL,
    UNIQUE (protocol, host_ip, host_port)
);
CREATE TABLE IF NOT EXISTS port_requests (
    container_id   TEXT NOT NULL,
    protocol       TEXT NOT NULL,
    host_ip        TEXT NOT NULL,
    host_port      INTEGER NOT NULL,
    container_port INTEGER NOT NULL
);
"""

# Columns added after the first release, with their definitions: added at open
# to stores made before them.
_ADDED_COLUMNS = (("endpoints", "name", "TEXT NOT NULL DEFAULT ''"),
                  ("endpoints", "hostname", "TEXT NOT NULL DEFAULT ''"),
                  ("attachments", "extra", "TEXT NOT NULL DEFAULT '{}'"))

# Docker's names for its built-in networks, and the drivers behind them.
BUILTIN = (("none", "null"), ("host", "host"))


def builtin_id(name: str) -> str:
    return hashlib.sha256(f"berth/network/builtin/{name}".encode()).hexdigest()


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    driver: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    builtin: bool = False
    created_at: str = ""


@dataclass(frozen=True)
class Endpoint:
    container_id: str
    network_id: str
    network_name: str
    netns_path: str
    created_at: str = ""
    # The container's name and hostname, kept for its next network when it left all of them.
    name: str = ""
    hostname: str = ""


@dataclass(frozen=True)
class Attachment:
    container_id: str
    network_id: str
    network_name: str
    address: str
    ifname: str
    host_ifname: str
    name: str = ""
    hostname: str = ""
    aliases: tuple[str, ...] = ()
    created_at: str = ""
    ipv6_address: str = ""
    mac_address: str = ""
    # What was asked for, shown as docker's IPAMConfig / Links / DriverOpts.
    requested_ipv4: str = ""
    requested_ipv6: str = ""
    links: tuple[str, ...] = ()          # "container:alias"
    driver_opts: dict[str, str] = field(default_factory=dict)
    link_local_ips: tuple[str, ...] = ()

    def extra(self) -> dict:
        return {"ipv6_address": self.ipv6_address, "mac_address": self.mac_address,
                "requested_ipv4": self.requested_ipv4, "requested_ipv6": self.requested_ipv6,
                "links": list(self.links), "driver_opts": self.driver_opts,
                "link_local_ips": list(self.link_local_ips)}


@dataclass(frozen=True)
class Port:
    container_id: str
    protocol: str
    host_ip: str
    host_port: int
    container_port: int


class Store(Protocol):
    def list_networks(self) -> list[Network]: ...
    def find_network(self, name_or_id: str) -> Network | None: ...
    def get_endpoint(self, container_id: str) -> Endpoint | None: ...
    def list_endpoints(self) -> list[Endpoint]: ...
    def add_endpoint(self, endpoint: Endpoint, attachment: Attachment | None = None,
                     ports: list[Port] = (), port_requests: list[Port] = ()) -> None: ...
    def remove_endpoint(self, container_id: str) -> None: ...
    def set_endpoint_network(self, container_id: str, network_id: str) -> None: ...
    def add_network(self, network: Network) -> None: ...
    def remove_network(self, network_id: str) -> None: ...
    def attachments(self, container_id: str | None = None,
                    network_id: str | None = None) -> list[Attachment]: ...
    def add_attachment(self, attachment: Attachment) -> None: ...
    def remove_attachment(self, container_id: str, network_id: str) -> None: ...
    def ports(self, container_id: str | None = None) -> list[Port]: ...
    def add_ports(self, ports: list[Port]) -> None: ...
    def remove_ports(self, container_id: str) -> None: ...
    def port_requests(self, container_id: str) -> list[Port]: ...
    def add_port_requests(self, ports: list[Port]) -> None: ...
    def set_links(self, container_id: str, network_id: str, links: tuple[str, ...]) -> None: ...


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


class NetworkStore:
    """The sqlite implementation of Store."""

    def __init__(self, path: str):
        self.db = open_db(path, SCHEMA)
        with Transaction(self.db) as tx:
            for table, column, definition in _ADDED_COLUMNS:
                have = {r["name"] for r in tx.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    tx.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            for name, driver in BUILTIN:
                tx.execute("INSERT OR IGNORE INTO networks (id, name, driver, builtin, created_at)"
                           " VALUES (?, ?, ?, 1, ?)", (builtin_id(name), name, driver, now()))

    def close(self) -> None:
        self.db.close()

    def list_networks(self) -> list[Network]:
        rows = self.db.execute("SELECT * FROM networks ORDER BY builtin DESC, name").fetchall()
        return [_network(r) for r in rows]

    def find_network(self, name_or_id: str) -> Network | None:
        """By name, full id, or an id prefix that names one network only."""
        row = self.db.execute("SELECT * FROM networks WHERE name = ? OR id = ?",
                              (name_or_id, name_or_id)).fetchone()
        if row is None and name_or_id and all(c in "0123456789abcdef" for c in name_or_id):
            rows = self.db.execute("SELECT * FROM networks WHERE id LIKE ?",
                                   (name_or_id + "%",)).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return _network(row) if row else None

    def get_endpoint(self, container_id: str) -> Endpoint | None:
        row = self.db.execute(_ENDPOINTS + " WHERE e.container_id = ?", (container_id,)).fetchone()
        return _endpoint(row) if row else None

    def list_endpoints(self) -> list[Endpoint]:
        return [_endpoint(r) for r in self.db.execute(_ENDPOINTS + " ORDER BY e.created_at")]

    def add_endpoint(self, endpoint: Endpoint, attachment: Attachment | None = None,
                     ports: list[Port] = (), port_requests: list[Port] = ()) -> None:
        """The endpoint, with its first attachment and ports when given, in one transaction
        (one commit to wait for on the attach path rather than one per row)."""
        with Transaction(self.db) as tx:
            tx.execute("INSERT INTO endpoints (container_id, network_id, netns_path, created_at,"
                       " name, hostname) VALUES (?, ?, ?, ?, ?, ?)",
                       (endpoint.container_id, endpoint.network_id, endpoint.netns_path,
                        endpoint.created_at or now(), endpoint.name, endpoint.hostname))
            if attachment is not None:
                self._insert_attachment(tx, attachment)
            self._insert_ports(tx, "ports", ports)
            self._insert_ports(tx, "port_requests", port_requests)

    def remove_endpoint(self, container_id: str) -> None:
        """The endpoint with its attachments (leases) and ports, in one transaction."""
        with Transaction(self.db) as tx:
            tx.execute("DELETE FROM ports WHERE container_id = ?", (container_id,))
            tx.execute("DELETE FROM port_requests WHERE container_id = ?", (container_id,))
            tx.execute("DELETE FROM attachments WHERE container_id = ?", (container_id,))
            tx.execute("DELETE FROM endpoints WHERE container_id = ?", (container_id,))

    def set_endpoint_network(self, container_id: str, network_id: str) -> None:
        with Transaction(self.db) as tx:
            tx.execute("UPDATE endpoints SET network_id = ? WHERE container_id = ?", (network_id, container_id))

    def add_network(self, network: Network) -> None:
        with Transaction(self.db) as tx:
            tx.execute("INSERT INTO networks (id, name, driver, options, labels, builtin, created_at)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (network.id, network.name, network.driver, json.dumps(network.options),
                        json.dumps(network.labels), int(network.builtin),
                        network.created_at or now()))

    def remove_network(self, network_id: str) -> None:
        with Transaction(self.db) as tx:
            tx.execute("DELETE FROM networks WHERE id = ?", (network_id,))

    def attachments(self, container_id: str | None = None,
                    network_id: str | None = None) -> list[Attachment]:
        query, args = _ATTACHMENTS + " WHERE 1=1", []
        if container_id is not None:
            query += " AND a.container_id = ?"
            args.append(container_id)
        if network_id is not None:
            query += " AND a.network_id = ?"
            args.append(network_id)
        return [_attachment(r) for r in self.db.execute(query + " ORDER BY a.ifname", args)]

    def add_attachment(self, a: Attachment) -> None:
        """Raises sqlite3.IntegrityError when the address is leased already."""
        with Transaction(self.db) as tx:
            self._insert_attachment(tx, a)

    @staticmethod
    def _insert_attachment(tx: sqlite3.Connection, a: Attachment) -> None:
        tx.execute("INSERT INTO attachments (container_id, network_id, address, ifname,"
                   " host_ifname, name, hostname, aliases, created_at, extra)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (a.container_id, a.network_id, a.address, a.ifname, a.host_ifname,
                    a.name, a.hostname, json.dumps(list(a.aliases)), a.created_at or now(),
                    json.dumps(a.extra())))

    def remove_attachment(self, container_id: str, network_id: str) -> None:
        with Transaction(self.db) as tx:
            tx.execute("DELETE FROM attachments WHERE container_id = ? AND network_id = ?",
                       (container_id, network_id))

    def ports(self, container_id: str | None = None) -> list[Port]:
        return self._ports("ports", container_id)

    def add_ports(self, ports: list[Port]) -> None:
        self._add_ports("ports", ports)

    def remove_ports(self, container_id: str) -> None:
        with Transaction(self.db) as tx:
            tx.execute("DELETE FROM ports WHERE container_id = ?", (container_id,))

    def port_requests(self, container_id: str) -> list[Port]:
        return self._ports("port_requests", container_id)

    def add_port_requests(self, ports: list[Port]) -> None:
        self._add_ports("port_requests", ports)

    def set_links(self, container_id: str, network_id: str, links: tuple[str, ...]) -> None:
        with Transaction(self.db) as tx:
            row = tx.execute("SELECT extra FROM attachments WHERE container_id = ? AND network_id = ?",
                             (container_id, network_id)).fetchone()
            if row is not None:
                extra = {**json.loads(row["extra"]), "links": list(links)}
                tx.execute("UPDATE attachments SET extra = ? WHERE container_id = ? AND network_id = ?",
                           (json.dumps(extra), container_id, network_id))

    def _ports(self, table: str, container_id: str | None) -> list[Port]:
        if container_id is None:
            rows = self.db.execute(f"SELECT * FROM {table} ORDER BY rowid")
        else:
            rows = self.db.execute(f"SELECT * FROM {table} WHERE container_id = ? ORDER BY rowid",
                                   (container_id,))
        return [Port(container_id=r["container_id"], protocol=r["protocol"], host_ip=r["host_ip"],
                     host_port=r["host_port"], container_port=r["container_port"]) for r in rows]

    def _add_ports(self, table: str, ports: list[Port]) -> None:
        with Transaction(self.db) as tx:
            self._insert_ports(tx, table, ports)

    @staticmethod
    def _insert_ports(tx: sqlite3.Connection, table: str, ports: list[Port]) -> None:
        for p in ports:
            tx.execute(f"INSERT INTO {table} (container_id, protocol, host_ip, host_port,"
                       " container_port) VALUES (?, ?, ?, ?, ?)",
                       (p.container_id, p.protocol, p.host_ip, p.host_port, p.container_port))


_ENDPOINTS = ("SELECT e.container_id, e.network_id, n.name AS network_name, e.netns_path,"
              " e.created_at, e.name, e.hostname FROM endpoints e JOIN networks n ON n.id = e.network_id")


_ATTACHMENTS = ("SELECT a.*, n.name AS network_name FROM attachments a"
                " JOIN networks n ON n.id = a.network_id")


def _attachment(row: sqlite3.Row) -> Attachment:
    return Attachment(container_id=row["container_id"], network_id=row["network_id"],
                      network_name=row["network_name"], address=row["address"],
                      ifname=row["ifname"], host_ifname=row["host_ifname"], name=row["name"],
                      hostname=row["hostname"], aliases=tuple(json.loads(row["aliases"])),
                      created_at=row["created_at"], **_extra(json.loads(row["extra"])))


def _extra(extra: dict) -> dict:
    return {"ipv6_address": extra.get("ipv6_address", ""), "mac_address": extra.get("mac_address", ""),
            "requested_ipv4": extra.get("requested_ipv4", ""),
            "requested_ipv6": extra.get("requested_ipv6", ""),
            "links": tuple(extra.get("links", ())), "driver_opts": dict(extra.get("driver_opts", {})),
            "link_local_ips": tuple(extra.get("link_local_ips", ()))}


def _network(row: sqlite3.Row) -> Network:
    return Network(id=row["id"], name=row["name"], driver=row["driver"],
                   labels=json.loads(row["labels"]), options=json.loads(row["options"]),
                   builtin=bool(row["builtin"]), created_at=row["created_at"])


def _endpoint(row: sqlite3.Row) -> Endpoint:
    return Endpoint(container_id=row["container_id"], network_id=row["network_id"],
                    network_name=row["network_name"], netns_path=row["netns_path"],
                    created_at=row["created_at"], name=row["name"], hostname=row["hostname"])
