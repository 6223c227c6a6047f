"""The overlay driver: networks that span the nodes of a cluster, over VXLAN, kept in etcd.

An overlay network is a record in the cluster store (cluster.py) and, on every
node, a local network row of driver "overlay" mirrored from it: its bridge
(named from its id, holding the gateway address on every node as docker's
overlay does, so each node routes its own containers out) and its VXLAN device
(vxlan.py). Everything a bridge network does locally an overlay network does
too (veths, /etc/hosts, the resolver, the firewall's masquerade); what differs
is where addresses come from (a transaction in etcd, so they are unique across
the cluster) and who else is on the segment (the endpoints other nodes
published, watched, each programmed as forwarding and neighbour entries and
answered by the resolver).

    node A: create -d overlay web   -> networks/web in etcd (VNI, subnet)
    nodes A, B: watch               -> row "web" + bridge bo-<id> + vxlan vx-<id>
    node A: run --network web       -> endpoints/<id>/10.0.9.2 under A's lease
    node B: watch                   -> FDB mac->A, neighbour 10.0.9.2->mac on vx-<id>
    node A dies                     -> lease expires, etcd deletes A's keys, B removes its entries
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import structlog

from services.common.errors import AlreadyExists, InvalidArgument
from services.network import ipam, vxlan
from services.network.cluster import Change, ClusterStore, OverlayRecord, Peer
from services.network.store import Attachment, Network

log = structlog.get_logger(__name__)

# VNIs 4096..: clear of the 802.1Q VLAN ids people tend to reuse as VNIs; 2^24 - 1 is the top.
VNI_BASE = 4096
VNI_MAX = (1 << 24) - 1
# Default overlay subnets, disjoint from the bridge driver's defaults (docker's 10.0.0.0/8 split
# into /24s would collide with users' LANs more often than these).
OVERLAY_POOL = ipaddress.ip_network("10.210.0.0/16")
# The options an overlay network honours; the rest are refused by name.
ENCRYPTED_OPTION = "encrypted"
MTU_OPTION = "com.docker.network.driver.mtu"


def bridge_name(network_id: str) -> str:
    return f"bo-{network_id[:12]}"


def vxlan_name(network_id: str) -> str:
    return f"vx-{network_id[:12]}"


def local_network(record: OverlayRecord) -> Network:
    """The local row an overlay record is mirrored into (options as bridge networks keep them)."""
    pool = ipam.Pool.make(record.subnet, record.gateway, record.ip_range, {})
    options = {"subnet": record.subnet, "gateway": record.gateway, "ip_range": record.ip_range,
               "internal": "1" if record.internal else "", "bridge": bridge_name(record.id),
               "loopback": pool.loopback_source, "aux": {}, "driver_options": dict(record.options),
               "attachable": "1" if record.attachable else "", "vni": str(record.vni),
               "vxlan": vxlan_name(record.id)}
    return Network(id=record.id, name=record.name, driver="overlay", labels=dict(record.labels),
                   options=options, builtin=False, created_at=record.created)


def check_options(options: dict[str, str]) -> None:
    if ENCRYPTED_OPTION in options:
        raise InvalidArgument(
            "overlay option \"encrypted\" is not supported: berth's overlay does not encrypt "
            "VXLAN traffic (no IPsec or WireGuard); put the nodes on a trusted or encrypted "
            "underlay and create the network without --opt encrypted")
    unknown = sorted(set(options) - {MTU_OPTION})
    if unknown:
        raise InvalidArgument(f"network driver option {unknown[0]} is not supported by berth's "
                              f"overlay driver (supported: {MTU_OPTION})")
    if MTU_OPTION in options:
        mtu = options[MTU_OPTION]
        if not mtu.isdigit() or not 576 <= int(mtu) <= 9000:
            raise InvalidArgument(f"invalid {MTU_OPTION} {mtu!r}: want 576 to 9000")


def new_record(existing: list[OverlayRecord], name: str, subnet: str, gateway: str, ip_range: str,
               internal: bool, attachable: bool, labels: dict[str, str], options: dict[str, str],
               created: str, taken_locally: list) -> OverlayRecord:
    """The record for a new network, given every overlay network there is (names, VNIs and
    subnets unique across them)."""
    if any(r.name == name for r in existing):
        raise AlreadyExists(f"network with name {name} already exists")
    vnis = {r.vni for r in existing}
    vni = next(v for v in range(VNI_BASE, VNI_MAX) if v not in vnis)
    others = [ipam.parse_subnet(r.subnet) for r in existing]
    if subnet:
        net = ipam.parse_subnet(subnet)
        clash = ipam.overlapping(net, others + list(taken_locally))
        if clash is not None:
            raise InvalidArgument(f"invalid pool request: Pool overlaps with other one on this "
                                  f"address space ({clash})")
    else:
        taken = others + list(taken_locally)
        net = next((n for n in OVERLAY_POOL.subnets(new_prefix=24)
                    if ipam.overlapping(n, taken) is None), None)
        if net is None:
            raise InvalidArgument("no free overlay subnet left in the default pool: give one with --subnet")
    pool = ipam.Pool.make(str(net), gateway, ip_range, {})
    return OverlayRecord(id=secrets.token_hex(32), name=name, vni=vni, subnet=str(pool.subnet),
                         gateway=pool.gateway, ip_range=ip_range and str(pool.ip_range),
                         attachable=attachable, internal=internal, labels=dict(labels),
                         options=dict(options), created=created)


class OverlayDriver:
    """This node's part of every overlay network: the cluster session, the peers it knows of,
    and the kernel entries that reach them."""

    def __init__(self, store: ClusterStore, advertise: str, underlay_mtu: int):
        self.cluster = store
        self.node = store.node.name
        self.advertise = advertise
        self.default_mtu = vxlan.overlay_mtu(underlay_mtu)
        self.records: dict[str, OverlayRecord] = {}        # by network id
        # Endpoints on other nodes, by network id and address.
        self.remote: dict[str, dict[str, Peer]] = {}
        self._peer_keys: dict[bytes, Peer] = {}
        self._network_keys: dict[bytes, OverlayRecord] = {}
        self._synced = asyncio.Event()

    def mtu(self, network: Network) -> int:
        given = network.options.get("driver_options", {}).get(MTU_OPTION)
        return int(given) if given else self.default_mtu

    async def wait_synced(self, timeout: float) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    # -- kernel -----------------------------------------------------------------------

    def ensure_device(self, network: Network) -> None:
        """The VXLAN device of a network whose bridge exists, with every known remote peer."""
        o = network.options
        vxlan.ensure_vxlan(o["vxlan"], o["bridge"], int(o["vni"]), self.advertise, self.mtu(network))
        for peer in self.remote.get(network.id, {}).values():
            vxlan.add_peer(o["vxlan"], peer.mac, peer.address, peer.vtep)

    # -- the watch ----------------------------------------------------------------------

    async def apply(self, changes: list[Change], mirror, unmirror) -> None:
        """Apply watched changes: network records mirrored (`mirror(record)`) or removed
        (`unmirror(network_id)`), peers programmed into the kernel or removed."""
        for change in changes:
            if change.kind == "reset":
                await self._reset(changes[1:], mirror, unmirror)
                self._synced.set()
                return
            await self._apply_one(change, mirror, unmirror)

    async def _reset(self, changes: list[Change], mirror, unmirror) -> None:
        """A full read: whatever was known and is not in it any more is removed."""
        present = {c.key for c in changes}
        for key in [k for k in self._peer_keys if k not in present]:
            await self._apply_one(Change("peer", key, None), mirror, unmirror)
        for key in [k for k in self._network_keys if k not in present]:
            await self._apply_one(Change("network", key, None), mirror, unmirror)
        for change in changes:
            if change.kind == "network":
                await self._apply_one(change, mirror, unmirror)
        for change in changes:
            if change.kind == "peer":
                await self._apply_one(change, mirror, unmirror)

    async def _apply_one(self, change: Change, mirror, unmirror) -> None:
        if change.kind == "network":
            if change.value is not None:
                self._network_keys[change.key] = change.value
                self.records[change.value.id] = change.value
                await mirror(change.value)
            else:
                gone = self._network_keys.pop(change.key, None)
                if gone is not None:
                    self.records.pop(gone.id, None)
                    self.remote.pop(gone.id, None)
                    await unmirror(gone.id)
            return
        if change.value is not None:
            peer: Peer = change.value
            old = self._peer_keys.get(change.key)
            self._peer_keys[change.key] = peer
            if peer.node == self.node:
                return
            if old is not None and old.node != self.node and old != peer:
                await asyncio.to_thread(self._unprogram, old)
            self.remote.setdefault(peer.network_id, {})[peer.address] = peer
            await asyncio.to_thread(self._program, peer)
            log.info("overlay_peer_added", network_id=peer.network_id[:12], address=peer.address,
                     node=peer.node, container_id=peer.container_id[:12])
        else:
            peer = self._peer_keys.pop(change.key, None)
            if peer is None or peer.node == self.node:
                return
            self.remote.get(peer.network_id, {}).pop(peer.address, None)
            await asyncio.to_thread(self._unprogram, peer)
            log.info("overlay_peer_removed", network_id=peer.network_id[:12], address=peer.address,
                     node=peer.node, container_id=peer.container_id[:12])

    def _program(self, peer: Peer) -> None:
        vxlan.add_peer(vxlan_name(peer.network_id), peer.mac, peer.address, peer.vtep)

    def _unprogram(self, peer: Peer) -> None:
        vxlan.remove_peer(vxlan_name(peer.network_id), peer.mac, peer.address, peer.vtep)

    # -- endpoints of this node ------------------------------------------------------------

    def taken(self, network_id: str) -> set[str]:
        """Addresses on a network known to be held on other nodes (a hint: the claim decides)."""
        return set(self.remote.get(network_id, {}))

    def peer_of(self, a: Attachment) -> Peer:
        return Peer(network_id=a.network_id, address=a.address, mac=a.mac_address,
                    container_id=a.container_id, node=self.node, vtep=self.advertise,
                    name=a.name, hostname=a.hostname, aliases=tuple(a.aliases))

    async def claim(self, network: Network, a: Attachment) -> bool:
        return await self.cluster.claim(self.records[network.id], self.peer_of(a))

    async def note_taken(self, network_id: str) -> None:
        """After a lost claim: learn every address on the network now (the watch may lag)."""
        for peer in await self.cluster.peers(network_id):
            if peer.node != self.node:
                self.remote.setdefault(network_id, {})[peer.address] = peer

    def lookup(self, network_id: str, name: str) -> list[str]:
        return [p.address for p in self.remote.get(network_id, {}).values() if name in p.names()]
