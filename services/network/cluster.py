"""The cluster store: etcd (v3 API, through aetcd) holding membership and the overlay networks.

Keys, all under /berth/v1/ (values are JSON):

    nodes/<name>                   Node           under the node's lease
    networks/<name>                OverlayRecord  cluster-wide; a network's name is its key
    networks-rev                   ""             bumped by every network create/remove
    endpoints/<network id>/<ip>    Peer           under the lease of the node it runs on

Liveness is etcd's: each node holds one lease (TTL `ttl`) and keeps it alive
every ttl/3; its node record and every endpoint it published are attached to
it. A node that dies stops refreshing, etcd expires the lease and deletes
those keys in one revision, and every survivor's watch sees the deletions and
removes that node's forwarding entries and names (no polling, no failure
detector of berth's own). A node that finds its lease gone (back after a
crash or a partition) takes a new one and publishes its endpoints again.

Allocation is by transactions: an address is an endpoint key created only if
absent (compare create_revision == 0), so two nodes asking at once get
different addresses; a network create reads every network and commits only
if networks-rev did not move since (compare mod_revision), so no two networks
get the same name, VNI or subnet.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

import aetcd
import aetcd.exceptions
import structlog

from services.common.errors import Unavailable

log = structlog.get_logger(__name__)

ROOT = b"/berth/v1/"
NODES = ROOT + b"nodes/"
NETWORKS = ROOT + b"networks/"
NETWORKS_REV = ROOT + b"networks-rev"
ENDPOINTS = ROOT + b"endpoints/"


@dataclass(frozen=True)
class Node:
    """One member: what `berth node ls` shows."""

    name: str
    address: str            # the VXLAN tunnel source and the address other nodes reach it at
    cpus: int
    memory: int             # bytes
    started: str            # RFC 3339, when this incarnation registered
    version: str = ""


@dataclass(frozen=True)
class OverlayRecord:
    """An overlay network as every node knows it."""

    id: str
    name: str
    vni: int
    subnet: str
    gateway: str
    ip_range: str = ""
    attachable: bool = False
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    created: str = ""


@dataclass(frozen=True)
class Peer:
    """An endpoint on an overlay network: where its container runs and what it is called."""

    network_id: str
    address: str
    mac: str
    container_id: str
    node: str
    vtep: str
    name: str = ""
    hostname: str = ""
    aliases: tuple[str, ...] = ()

    def names(self) -> set[str]:
        return {self.name.lower(), self.hostname.lower(), self.container_id[:12], self.container_id,
                *(a.lower() for a in self.aliases)} - {""}


@dataclass(frozen=True)
class Change:
    """One watched change: kind "network" or "peer"; `value` is None when the key was deleted."""

    kind: str
    key: bytes
    value: OverlayRecord | Peer | None


def parse_endpoints(text: str) -> tuple[str, int]:
    """"http://127.0.0.1:2379" or "127.0.0.1:2379" -> (host, port); the first of a comma list."""
    first = text.split(",")[0].strip()
    first = first.split("://", 1)[-1].rstrip("/")
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"invalid etcd endpoint {text!r}: want host:port or http://host:port")
    return host, int(port)


def _store_call(fn):
    """An etcd failure as Unavailable (503 at the Docker API), naming the store."""
    @functools.wraps(fn)
    async def wrapper(self, *args, **kwargs):
        try:
            return await fn(self, *args, **kwargs)
        except aetcd.exceptions.ClientError as exc:
            raise Unavailable(f"cluster store etcd at {self.host}:{self.port} is unreachable: "
                              f"{exc}") from exc
    return wrapper


def endpoint_key(network_id: str, address: str) -> bytes:
    return ENDPOINTS + f"{network_id}/{address}".encode()


class ClusterStore:
    """This node's session with etcd: its lease, its records, and the watch of everyone's."""

    def __init__(self, endpoints: str, node: Node, ttl: int):
        self.host, self.port = parse_endpoints(endpoints)
        self.node = node
        self.ttl = ttl
        self._client: aetcd.Client | None = None
        self._lease = None
        self._tasks: list[asyncio.Task] = []
        # Called after the node lost its lease and took a new one (its records must be put back).
        self.on_new_lease: Callable[[], Awaitable[None]] | None = None

    async def connect(self) -> None:
        self._client = aetcd.Client(host=self.host, port=self.port, timeout=max(self.ttl, 5))
        try:
            await self._client.connect()
            await self._register()
        except Exception as exc:
            raise Unavailable(f"cluster store etcd at {self.host}:{self.port}: {exc}") from exc
        self._tasks.append(asyncio.create_task(self._keep_alive(), name="cluster-keepalive"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except BaseException:  # noqa: BLE001 - closing
                pass
        if self._client is not None:
            await self._client.close()

    async def _register(self) -> None:
        self._lease = await self._client.lease(self.ttl)
        await self._client.put(NODES + self.node.name.encode(), _dump(self.node), lease=self._lease.id)
        log.info("cluster_node_registered", node=self.node.name, address=self.node.address,
                 lease=self._lease.id, ttl=self.ttl)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                response = await self._lease.refresh()
                alive = response.TTL > 0
            except Exception as exc:  # noqa: BLE001 - etcd away: retried, the lease may still live
                log.warning("cluster_keepalive_failed", error=str(exc))
                continue
            if alive:
                continue
            # Expired while we could not refresh it (etcd away, this node stalled):
            # our records are gone; register anew and publish them again.
            log.warning("cluster_lease_lost", node=self.node.name)
            try:
                await self._register()
                if self.on_new_lease is not None:
                    await self.on_new_lease()
            except Exception as exc:  # noqa: BLE001 - tried again at the next tick
                log.warning("cluster_reregister_failed", error=str(exc))

    # -- membership -------------------------------------------------------------------

    @_store_call
    async def nodes(self) -> list[Node]:
        response = await self._client.get_prefix(NODES)
        return sorted((Node(**json.loads(kv.value)) for kv in response), key=lambda n: n.name)

    # -- networks ---------------------------------------------------------------------

    @_store_call
    async def networks(self) -> list[OverlayRecord]:
        response = await self._client.get_prefix(NETWORKS)
        return [_network(kv.value) for kv in response]

    @_store_call
    async def create_network(self, make: Callable[[list[OverlayRecord]], OverlayRecord]) -> OverlayRecord:
        """Commit the network `make` builds from every existing one, retried while another node's
        create or remove lands between the read and the commit."""
        tx = self._client.transactions
        while True:
            rev = await self._client.get(NETWORKS_REV)
            existing = await self.networks()
            record = make(existing)
            compare = [tx.mod(NETWORKS_REV) == (rev.mod_revision if rev else 0),
                       tx.create(NETWORKS + record.name.encode()) == 0]
            ok, _ = await self._client.transaction(
                compare=compare,
                success=[tx.put(NETWORKS + record.name.encode(), _dump(record)),
                         tx.put(NETWORKS_REV, b"")],
                failure=[])
            if ok:
                return record

    @_store_call
    async def remove_network(self, record: OverlayRecord) -> bool:
        """Remove a network no endpoint is on anywhere; False when one is."""
        tx = self._client.transactions
        if list(await self._client.get_prefix(ENDPOINTS + f"{record.id}/".encode(), keys_only=True)):
            return False
        await self._client.transaction(
            compare=[], success=[tx.delete(NETWORKS + record.name.encode()), tx.put(NETWORKS_REV, b"")],
            failure=[])
        return True

    # -- endpoints --------------------------------------------------------------------

    @_store_call
    async def claim(self, network: OverlayRecord, peer: Peer) -> bool:
        """Publish `peer` if its address is free cluster-wide (and its network still exists)."""
        tx = self._client.transactions
        key = endpoint_key(peer.network_id, peer.address)
        ok, _ = await self._client.transaction(
            compare=[tx.create(key) == 0, tx.create(NETWORKS + network.name.encode()) > 0],
            success=[tx.put(key, _dump(peer), lease=self._lease.id)], failure=[])
        return ok

    @_store_call
    async def republish(self, peer: Peer) -> bool:
        """Publish `peer` again under this lease: free, or already ours (same container)."""
        tx = self._client.transactions
        key = endpoint_key(peer.network_id, peer.address)
        current = await self._client.get(key)
        if current is not None and json.loads(current.value)["container_id"] != peer.container_id:
            return False
        compare = [tx.mod(key) == current.mod_revision] if current else [tx.create(key) == 0]
        ok, _ = await self._client.transaction(
            compare=compare, success=[tx.put(key, _dump(peer), lease=self._lease.id)], failure=[])
        return ok

    @_store_call
    async def release(self, network_id: str, address: str, container_id: str) -> None:
        """Remove an endpoint record if it is still this container's."""
        tx = self._client.transactions
        key = endpoint_key(network_id, address)
        current = await self._client.get(key)
        if current is None or json.loads(current.value)["container_id"] != container_id:
            return
        await self._client.transaction(compare=[tx.mod(key) == current.mod_revision],
                                       success=[tx.delete(key)], failure=[])

    @_store_call
    async def peers(self, network_id: str = "") -> list[Peer]:
        prefix = ENDPOINTS + (f"{network_id}/".encode() if network_id else b"")
        return [_peer(kv.value) for kv in await self._client.get_prefix(prefix)]

    # -- watching ---------------------------------------------------------------------

    async def watch(self, apply: Callable[[list[Change]], Awaitable[None]]) -> None:
        """Run forever: hand `apply` every network and endpoint record now (as puts), then each
        change as it happens; after a broken watch (etcd restarted) everything again, so a
        deletion missed meanwhile is seen as absence."""
        while True:
            try:
                response = await self._client.get_prefix(ROOT)
                revision = response.header.revision
                changes = [c for c in (_change(kv.key, kv.value) for kv in response) if c is not None]
                await apply([Change("reset", b"", None), *changes])
                watch = await self._client.watch_prefix(ROOT, start_revision=revision + 1)
                async for event in watch:
                    deleted = event.kind == "DELETE"
                    change = _change(event.kv.key, None if deleted else event.kv.value)
                    if change is not None:
                        await apply([change])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - etcd away: watch again from a fresh read
                log.warning("cluster_watch_broken", error=str(exc))
                await asyncio.sleep(1)

    def start_watch(self, apply: Callable[[list[Change]], Awaitable[None]]) -> None:
        self._tasks.append(asyncio.create_task(self.watch(apply), name="cluster-watch"))


def _change(key: bytes, value: bytes | None) -> Change | None:
    if key.startswith(NETWORKS):
        return Change("network", key, _network(value) if value is not None else None)
    if key.startswith(ENDPOINTS):
        return Change("peer", key, _peer(value) if value is not None else None)
    return None


def _dump(record) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode()


def _network(value: bytes) -> OverlayRecord:
    return OverlayRecord(**json.loads(value))


def _peer(value: bytes) -> Peer:
    data = json.loads(value)
    data["aliases"] = tuple(data.get("aliases", ()))
    return Peer(**data)


def capacity() -> tuple[int, int]:
    """This node's CPUs and memory in bytes."""
    memory = 0
    try:
        with open("/proc/meminfo") as f:
            memory = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.cpu_count() or 1, memory
