"""NetworkService: networks, the endpoints that put containers on them, published ports.

"none" gives each container its own network namespace with only loopback;
"host" shares the host's namespace, so its endpoint has no namespace path;
bridge networks ("bridge", made at start, and user-defined ones) give each
container a veth into the network's bridge, an address leased from the
network's pool (and one from its IPv6 pool when it has one), its default
route, /etc/hosts and /etc/resolv.conf, the ports it publishes, and the
resolver at 127.0.0.11 in its namespace (dns.py). A container connects to and
disconnects from bridge networks in any order, created or running; one that
left all its networks keeps its namespace (only loopback) and its name for
the next one.

State is the store's; the kernel's objects (namespaces pinned by bind mounts,
bridges, veths, berth's nftables table) outlive this service, so a restart or
SIGKILL of it disturbs no running container. `start` makes kernel and store
agree again: bridges re-made when missing, the whole nftables table
re-rendered from the store, DNS listeners re-opened, endpoints whose namespace
vanished re-plumbed, the accept rules in other tools' FORWARD chains put back
(forward.py).

Order of every change: validate everything first (bad input changes nothing),
then commit the rows, then touch the kernel; a kernel step that fails removes
the rows again, and the firewall is always re-rendered from the rows.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import ipaddress
import os
import random
import re
import secrets
import socket
import sqlite3
from dataclasses import dataclass, field

import structlog

from services.common.errors import (AlreadyExists, Conflict, FailedPrecondition, InvalidArgument,
                                    NotFound, Unavailable)
from services.network import bridge as kernel
from services.network import ipam, overlay as overlay_mod
from services.network.dns import Resolver
from services.network.firewall import BridgeRules, Firewaller, PortRule, Ruleset
from services.network.forward import HostForward
from services.network.netns import Namespaces
from services.network.overlay import OverlayDriver
from services.network.store import Attachment, Endpoint, Network, Port, Store, now

log = structlog.get_logger(__name__)

# Container ids become file names under the netns directory.
_CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
# As dockerd: any name but an empty one; no '/' (it could not be named in a URL
# path) and no control characters.
_NETWORK_NAME = re.compile(r"[^/\x00-\x1f\x7f]+")
# The driver options berth's bridge driver honours (others are refused, never dropped).
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
_LINUX_IFNAME = re.compile(r"[a-zA-Z0-9_.-]{1,15}")
EPHEMERAL_PORTS = (49153, 60999)
# Drivers whose containers get a veth into a local bridge (overlay: one spanning the nodes).
BRIDGED = ("bridge", "overlay")
# How long start waits for the first full read of the cluster store.
CLUSTER_SYNC_TIMEOUT = 30.0
# Tries at an overlay address before giving up: each lost claim learns the addresses taken.
OVERLAY_CLAIM_TRIES = 32
# Held while a subnet is chosen and its bridge made, so two engines on one host
# (tests, several data roots) never pick the same free subnet at the same time.
SUBNET_LOCK = "/run/lock/berth-network-subnets.lock"


@dataclass(frozen=True)
class EndpointView:
    """An endpoint with everything a caller needs about it."""

    endpoint: Endpoint
    attachments: list[Attachment] = field(default_factory=list)
    ports: list[Port] = field(default_factory=list)
    mounts: list[tuple[str, str]] = field(default_factory=list)   # (source, target)
    networks: dict[str, Network] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointSettings:
    """What a container asks for on one network beyond its IPv4 address and aliases."""

    ipv6_address: str = ""
    links: tuple[str, ...] = ()
    mac_address: str = ""
    driver_opts: dict[str, str] = field(default_factory=dict)
    link_local_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoolRequest:
    subnet: str
    gateway: str = ""
    ip_range: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PortRequest:
    protocol: str
    host_ip: str
    host_port: int
    container_port: int


class NetworkService:
    def __init__(self, store: Store, namespaces: Namespaces, firewall: Firewaller | None = None,
                 resolver: Resolver | None = None, files_dir: str = "",
                 bridge_name: str = "berth0", bridge_subnet: str = "", nft_table: str = "berth",
                 host_forward: HostForward | None = None, host_resolv_conf: str = "/etc/resolv.conf",
                 overlay: OverlayDriver | None = None):
        self.store = store
        self.overlay = overlay
        self.namespaces = namespaces
        self.firewall = firewall
        self.resolver = resolver
        self.host_forward = host_forward
        self.host_resolv_conf = host_resolv_conf
        self.files_dir = files_dir
        self.bridge_name = bridge_name
        self.bridge_subnet = bridge_subnet
        self.nft_table = nft_table
        # One change at a time: changes are quick, and leases, ports and the
        # ruleset are all derived from the same rows.
        self._lock = asyncio.Lock()
        # Host ends of detached veths still being deleted, by container id (see detach).
        self._deleting_links: dict[str, asyncio.Task] = {}
        # Endpoints being plumbed after attach replied (plumb_later), by container id.
        self._plumbing: dict[str, asyncio.Task] = {}
        # The ruleset last loaded: a container without published ports coming or going
        # changes none of it, and the table is berth's alone, so it is not loaded again.
        self._applied: Ruleset | None = None

    # -- start ------------------------------------------------------------------------

    async def start(self) -> None:
        """Default bridge, kernel objects, firewall and DNS made to match the store."""
        async with self._lock:
            if self.store.find_network("bridge") is None:
                await asyncio.to_thread(self._create_bridge_network, "bridge",
                                        PoolRequest(self.bridge_subnet) if self.bridge_subnet else None,
                                        False, {}, True)
            for network in self._bridges():
                await asyncio.to_thread(self._ensure_bridge, network)
            await asyncio.to_thread(self._reconcile)
            if not kernel.ip_forward_enabled():
                kernel.enable_ip_forward()
                log.info("ip_forward_enabled", reason="bridge networks route to the outside")
            await self._apply_firewall()
            if self.host_forward is not None:
                self.host_forward.watch()
            for endpoint in self.store.list_endpoints():
                await self._serve_dns(endpoint.container_id, endpoint.netns_path)
        if self.overlay is not None:
            await self._start_overlay()

    def close(self) -> None:
        if self.resolver is not None:
            self.resolver.close()
        if self.host_forward is not None:
            self.host_forward.close()

    # -- networks -------------------------------------------------------------------

    def list_networks(self) -> list[Network]:
        return self.store.list_networks()

    def get_network(self, name: str) -> Network:
        network = self.store.find_network(name) if name else None
        if network is None:
            raise NotFound(f"network {name} not found")
        return network

    def network_containers(self, network: Network) -> list[str]:
        return [a.container_id for a in self.network_endpoints(network)]

    def network_endpoints(self, network: Network) -> list[Attachment]:
        """The containers on a network; on "none" and "host" without addresses."""
        if network.driver in BRIDGED:
            return self.store.attachments(network_id=network.id)
        return [Attachment(container_id=e.container_id, network_id=network.id,
                           network_name=network.name, address="", ifname="", host_ifname="",
                           name=e.name) for e in self.store.list_endpoints() if e.network_id == network.id]

    async def create_network(self, name: str, driver: str = "", subnet: str = "", gateway: str = "",
                             ip_range: str = "", internal: bool = False,
                             labels: dict[str, str] | None = None,
                             pools: tuple[PoolRequest, ...] = (), enable_ipv6: bool = False,
                             options: dict[str, str] | None = None,
                             attachable: bool = False) -> Network:
        if not name or not _NETWORK_NAME.fullmatch(name):
            raise InvalidArgument(f"invalid network name {name!r}: it must not be empty nor hold "
                                  "'/' or control characters")
        if driver in ("host", "null"):
            raise FailedPrecondition(f"only one instance of \"{driver}\" network is allowed")
        if driver == "overlay":
            return await self._create_overlay(name, subnet, gateway, ip_range, internal, labels or {},
                                              pools, enable_ipv6, options or {}, attachable)
        if driver not in ("", "bridge"):
            raise InvalidArgument(f"plugin \"{driver}\" not found: only the bridge and overlay "
                                  "drivers are available")
        if (gateway or ip_range) and not subnet:
            raise InvalidArgument("--gateway and --ip-range need --subnet")
        if subnet:
            if pools:
                raise InvalidArgument("give the subnet either alone or in the pools, not both")
            pools = (PoolRequest(subnet, gateway, ip_range),)
        v4, v6 = _split_pools(pools, enable_ipv6)
        settings = _network_options(options or {})
        async with self._lock:
            if self.store.find_network(name) is not None and \
                    self.store.find_network(name).name == name:
                raise AlreadyExists(f"network with name {name} already exists")
            network = await asyncio.to_thread(self._create_bridge_network, name, v4, internal,
                                              labels or {}, False, v6=v6, options=options or {},
                                              bridge=settings, attachable=attachable)
            try:
                await self._apply_firewall()
            except BaseException:
                await asyncio.to_thread(self._delete_bridge_network, network)
                await self._apply_firewall_quietly()
                raise
        log.info("network_created", network=name, subnet=network.options["subnet"],
                 bridge=network.options["bridge"])
        return network

    def _create_bridge_network(self, name: str, v4: PoolRequest | None, internal: bool,
                               labels: dict[str, str], builtin: bool, v6: PoolRequest | None = None,
                               options: dict[str, str] | None = None, bridge: str = "",
                               attachable: bool = False) -> Network:
        os.makedirs(os.path.dirname(SUBNET_LOCK), exist_ok=True)
        with open(SUBNET_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            taken = [ipam.parse_subnet(n.options["subnet"]) for n in self._bridges()]
            routes = kernel.host_routes()
            if v4 is not None:
                net = ipam.parse_subnet(v4.subnet)
                clash = ipam.overlapping(net, taken)
                if clash is not None:
                    raise InvalidArgument(f"invalid pool request: Pool overlaps with other one on "
                                          f"this address space ({clash})")
                clash = ipam.overlapping(net, routes)
                if clash is not None:
                    raise InvalidArgument(f"subnet {net} overlaps the host's route to {clash}")
            else:
                net = ipam.choose_subnet(taken + routes)
                v4 = PoolRequest(str(net))
            pool = ipam.Pool.make(str(net), v4.gateway, v4.ip_range, v4.aux_addresses)
            network_id = _builtin_id(name) if builtin else secrets.token_hex(32)
            bridge_name = self.bridge_name if builtin else (bridge or f"br-{network_id[:12]}")
            if bridge and kernel.link_exists(bridge):
                raise Conflict(f"bridge name {bridge} is taken by another interface")
            options = {"subnet": str(pool.subnet), "gateway": pool.gateway,
                       "ip_range": v4.ip_range and str(pool.ip_range), "internal": "1" if internal else "",
                       "bridge": bridge_name, "loopback": pool.loopback_source,
                       "aux": dict(v4.aux_addresses), "driver_options": dict(options or {}),
                       "attachable": "1" if attachable else ""}
            if v6 is not None:
                taken6 = [ipam.parse_subnet(n.options["subnet6"], 6) for n in self._bridges()
                          if n.options.get("subnet6")]
                net6 = ipam.parse_subnet(v6.subnet, 6)
                clash = ipam.overlapping(net6, taken6)
                if clash is not None:
                    raise InvalidArgument(f"invalid pool request: Pool overlaps with other one on "
                                          f"this address space ({clash})")
                pool6 = ipam.Pool.make(str(net6), v6.gateway, v6.ip_range, v6.aux_addresses, version=6)
                options.update(subnet6=str(pool6.subnet), gateway6=pool6.gateway,
                               ip_range6=v6.ip_range and str(pool6.ip_range),
                               aux6=dict(v6.aux_addresses))
            network = Network(id=network_id, name=name, driver="bridge", labels=labels,
                              options=options, builtin=builtin, created_at=now())
            try:
                self.store.add_network(network)
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"network with name {name} already exists") from None
            try:
                self._ensure_bridge(network)
            except BaseException:
                self.store.remove_network(network.id)
                kernel.delete_link(bridge_name)
                raise
        return network

    def _ensure_bridge(self, network: Network) -> None:
        o = network.options
        prefix = o["subnet"].split("/")[1]
        addresses = [f"{o['gateway']}/{prefix}", f"{o['loopback']}/32"]
        if o.get("subnet6"):
            addresses.append(f"{o['gateway6']}/{o['subnet6'].split('/')[1]}")
        kernel.ensure_bridge(o["bridge"], addresses)

    def _delete_bridge_network(self, network: Network) -> None:
        self.store.remove_network(network.id)
        kernel.delete_link(network.options["bridge"])

    async def remove_network(self, name: str) -> None:
        network = self.get_network(name)
        if network.driver == "overlay":
            await self._remove_overlay(network)
            return
        async with self._lock:
            network = self.get_network(name)
            if network.builtin:
                raise FailedPrecondition(f"{network.name} is a pre-defined network and cannot be removed")
            users = self.network_containers(network)
            if users:
                raise FailedPrecondition(
                    f"error while removing network: network {network.name} id {network.id} has "
                    f"active endpoints ({len(users)} container(s), e.g. {users[0][:12]})")
            await self._remove_network(network)

    async def _remove_network(self, network: Network) -> None:
        # Endpoints that left it under an older berth still name it (disconnect re-points them now).
        for endpoint in self.store.list_endpoints():
            if endpoint.network_id == network.id:
                self._repoint_endpoint(endpoint.container_id)
        self.store.remove_network(network.id)
        await self._apply_firewall()
        await asyncio.to_thread(kernel.delete_link, network.options["bridge"])
        log.info("network_removed", network=network.name)

    async def prune_networks(self) -> list[str]:
        removed = []
        async with self._lock:
            for network in self._bridges():
                if network.driver == "bridge" and not network.builtin and \
                        not self.network_containers(network):
                    await self._remove_network(network)
                    removed.append(network.name)
        for network in self._bridges():
            if network.driver == "overlay" and not self.network_containers(network):
                try:
                    await self._remove_overlay(network)
                except FailedPrecondition:
                    continue   # in use on another node
                removed.append(network.name)
        return removed

    # -- overlay networks (cluster-wide; overlay.py) ------------------------------------

    def _need_cluster(self) -> OverlayDriver:
        if self.overlay is None:
            raise FailedPrecondition(
                "overlay networks need a cluster store: this node is not in a cluster (start "
                "berthd with --cluster-store, --node-name and --cluster-advertise)")
        return self.overlay

    async def _create_overlay(self, name: str, subnet: str, gateway: str, ip_range: str,
                              internal: bool, labels: dict[str, str], pools, enable_ipv6: bool,
                              options: dict[str, str], attachable: bool) -> Network:
        driver = self._need_cluster()
        if enable_ipv6 or any(":" in p.subnet for p in pools):
            raise InvalidArgument("IPv6 on overlay networks is not supported by berth's overlay driver")
        if (gateway or ip_range) and not subnet and not pools:
            raise InvalidArgument("--gateway and --ip-range need --subnet")
        if pools:
            if subnet or len(pools) > 1:
                raise InvalidArgument("give the subnet either alone or in the pools, not both")
            subnet, gateway, ip_range = pools[0].subnet, pools[0].gateway, pools[0].ip_range
            if pools[0].aux_addresses:
                raise InvalidArgument("auxiliary addresses are not supported on overlay networks")
        overlay_mod.check_options(options)
        local = self.store.find_network(name)
        if local is not None and local.name == name:
            raise AlreadyExists(f"network with name {name} already exists")
        routes = await asyncio.to_thread(kernel.host_routes)
        local_nets = [ipam.parse_subnet(n.options["subnet"]) for n in self._bridges()
                      if n.driver == "bridge"]
        created = now()
        record = await driver.cluster.create_network(
            lambda existing: overlay_mod.new_record(existing, name, subnet, gateway, ip_range,
                                                    internal, attachable, labels, options,
                                                    created, local_nets + routes))
        await self._mirror(record)
        network = self.store.find_network(record.id)
        if network is None:
            raise Conflict(f"network {name} was made in the cluster but cannot be set up here "
                           "(see the network service's log)")
        log.info("network_created", network=name, driver="overlay", subnet=record.subnet,
                 vni=record.vni)
        return network

    async def _remove_overlay(self, network: Network) -> None:
        driver = self._need_cluster()
        record = driver.records.get(network.id)
        if record is None:
            # Already gone from the cluster: only the local mirror is left.
            await self._unmirror(network.id)
            return
        if not await driver.cluster.remove_network(record):
            raise FailedPrecondition(
                f"error while removing network: network {network.name} id {network.id} has "
                "active endpoints (on this or another node)")
        await self._unmirror(network.id)
        log.info("network_removed", network=network.name, driver="overlay")

    async def _mirror(self, record) -> None:
        """An overlay record from the cluster made a local network: row, bridge, VXLAN device."""
        network = overlay_mod.local_network(record)
        network.options["mtu"] = str(self.overlay.mtu(network))
        async with self._lock:
            existing = self.store.find_network(record.id)
            if existing is None:
                clash = self.store.find_network(record.name)
                if clash is not None and clash.name == record.name:
                    log.warning("overlay_network_not_mirrored", network=record.name,
                                reason="a local network has that name")
                    return
                self.store.add_network(network)
            try:
                await asyncio.to_thread(self._ensure_bridge, network)
                await asyncio.to_thread(self.overlay.ensure_device, network)
                if existing is None:
                    await self._apply_firewall()
            except BaseException:
                if existing is None:
                    self.store.remove_network(network.id)
                    await asyncio.to_thread(_delete_links, [network.options["vxlan"],
                                                            network.options["bridge"]])
                raise

    async def _unmirror(self, network_id: str) -> None:
        async with self._lock:
            network = self.store.find_network(network_id)
            if network is None or network.driver != "overlay":
                return
            if self.store.attachments(network_id=network.id):
                log.warning("overlay_network_kept", network=network.name,
                            reason="removed from the cluster while containers here are on it")
                return
            await self._remove_network(network)
            await asyncio.to_thread(kernel.delete_link, network.options["vxlan"])

    async def _start_overlay(self) -> None:
        """Join the cluster's overlays: mirror every network, learn every peer, publish ours."""
        driver = self.overlay
        driver.cluster.start_watch(lambda changes: driver.apply(changes, self._mirror, self._unmirror))
        await driver.wait_synced(CLUSTER_SYNC_TIMEOUT)
        for network in [n for n in self._bridges() if n.driver == "overlay"]:
            if network.id not in driver.records:
                await self._unmirror(network.id)
        driver.cluster.on_new_lease = self._republish
        await self._republish()

    async def _republish(self) -> None:
        """After a restart or a lost lease: this node's records in the store made to match its
        rows again (under the lock, so that no claim in flight is taken for a stale record)."""
        async with self._lock:
            await self._reconcile_own()
            await self._publish_own()
        log.info("overlay_endpoints_published")

    async def _publish_own(self) -> None:
        """Publish this node's overlay endpoints again: the containers still run under their
        monitors, their peers must find them again."""
        for network in [n for n in self._bridges() if n.driver == "overlay"]:
            for a in self.store.attachments(network_id=network.id):
                if not await self.overlay.cluster.republish(self.overlay.peer_of(a)):
                    log.error("overlay_address_conflict", container_id=a.container_id[:12],
                              network=network.name, address=a.address,
                              reason="another node's container took the address while this "
                                     "node was away; reconnect the container to get a new one")

    async def _claim_attachment(self, container_id: str, network: Network, current: list[Attachment],
                                name: str, hostname: str, ipv4_address: str, aliases,
                                settings: EndpointSettings) -> Attachment:
        """_new_attachment, and on an overlay network its address claimed cluster-wide."""
        for _ in range(OVERLAY_CLAIM_TRIES):
            a = self._new_attachment(container_id, network, current, name, hostname, ipv4_address,
                                     aliases, settings)
            if network.driver != "overlay":
                return a
            if network.id not in self._need_cluster().records:
                raise NotFound(f"network {network.name} not found in the cluster")
            if await self.overlay.claim(network, a):
                return a
            if ipv4_address:
                raise Conflict(f"Address already in use: {a.address} on network {network.name}")
            await self.overlay.note_taken(network.id)
        raise Conflict(f"could not claim an address on network {network.name}: too many "
                       "concurrent claims")

    async def _release(self, a: Attachment) -> None:
        """Give an overlay address back to the cluster. A store that cannot be reached does not
        stop the local teardown: the record is dropped by _reconcile_own when the node next
        (re)joins."""
        network = self.store.find_network(a.network_id)
        if self.overlay is None or (network is not None and network.driver != "overlay") or \
                (network is None and a.network_id not in self.overlay.records):
            return
        try:
            await self.overlay.cluster.release(a.network_id, a.address, a.container_id)
        except Unavailable as exc:
            log.warning("overlay_release_failed", container_id=a.container_id[:12],
                        address=a.address, error=exc.message)

    async def _reconcile_own(self) -> None:
        """This node's endpoint records in the store made to match its rows: the ones no local
        container holds any more (released while the store was away) are removed."""
        mine = {(a.network_id, a.address, a.container_id)
                for n in self._bridges() if n.driver == "overlay"
                for a in self.store.attachments(network_id=n.id)}
        for peer in await self.overlay.cluster.peers():
            if peer.node == self.overlay.node and \
                    (peer.network_id, peer.address, peer.container_id) not in mine:
                await self.overlay.cluster.release(peer.network_id, peer.address, peer.container_id)
                log.info("overlay_stale_endpoint_removed", address=peer.address,
                         container_id=peer.container_id[:12])

    async def list_nodes(self):
        return await self._need_cluster().cluster.nodes()

    def _bridges(self) -> list[Network]:
        return [n for n in self.store.list_networks() if n.driver in BRIDGED]

    # -- endpoints --------------------------------------------------------------------

    def list_endpoints(self) -> list[EndpointView]:
        # The networks read once for all: a listing costs one query per endpoint, not two.
        networks = {n.id: n for n in self._bridges()}
        return [self._view(e, networks) for e in self.store.list_endpoints()]

    def _view(self, endpoint: Endpoint, networks: dict[str, Network] | None = None) -> EndpointView:
        attachments = self.store.attachments(container_id=endpoint.container_id)
        mounts = []
        if attachments:
            d = self._files(endpoint.container_id)
            mounts = [(os.path.join(d, "hosts"), "/etc/hosts"),
                      (os.path.join(d, "resolv.conf"), "/etc/resolv.conf")]
        if networks is None:
            networks = {n.id: n for n in self._bridges()}
        return EndpointView(endpoint=endpoint, attachments=attachments,
                            ports=self.store.ports(endpoint.container_id), mounts=mounts,
                            networks=networks)

    async def attach(self, container_id: str, network_name: str, name: str = "",
                     hostname: str = "", ipv4_address: str = "", aliases: tuple[str, ...] = (),
                     ports: tuple[PortRequest, ...] = (),
                     settings: EndpointSettings = EndpointSettings(),
                     publish_at_start: bool = False, plumb_later: bool = False) -> EndpointView:
        """The container's endpoint on its first network. Its ports are bound now, or with
        `publish_at_start` kept as asked and bound by publish_ports (docker's way: a port is
        held while its container runs, not from its create). With `plumb_later` the reply
        comes once the rows are written (the address and namespace are the caller's to use),
        and the veth, firewall and resolver follow (await_endpoint waits for them)."""
        _check_container_id(container_id)
        network = self.get_network(network_name or "none")
        pending = self._deleting_links.get(container_id)
        if pending is not None:
            # The same container back before its old veths went: their names are its new ones.
            await pending
        async with self._lock:
            existing = self.store.get_endpoint(container_id)
            if existing is not None:
                if existing.network_id != network.id:
                    raise InvalidArgument(
                        f"container {container_id} is already attached to network "
                        f"{existing.network_name}; detach it first")
                return self._view(existing)
            bridge_net = network.driver in BRIDGED
            if not bridge_net and (ipv4_address or aliases or settings != EndpointSettings()):
                raise InvalidArgument("user specified IP address, aliases, links, MAC address and "
                                      "driver options are supported only on bridge networks")
            if bridge_net and network.options.get("internal"):
                ports = ()
            if not bridge_net:
                ports = ()   # docker ignores published ports on host and none
            if bridge_net:
                chosen = [] if publish_at_start else self._check_ports(container_id, ports)
                attachment = await self._claim_attachment(container_id, network, [], name, hostname,
                                                          ipv4_address, aliases, settings)
            netns_path = ""
            if network.driver in ("null", *BRIDGED):
                try:
                    netns_path = await asyncio.to_thread(self.namespaces.create, container_id)
                except BaseException:
                    if bridge_net:
                        await self._release(attachment)
                    raise
            endpoint = Endpoint(container_id=container_id, network_id=network.id,
                                network_name=network.name, netns_path=netns_path, created_at=now(),
                                name=name, hostname=hostname)
            try:
                if not bridge_net:
                    self.store.add_endpoint(endpoint)
                else:
                    self.store.add_endpoint(
                        endpoint, attachment, chosen,
                        [Port(container_id, r.protocol, r.host_ip, r.host_port, r.container_port)
                         for r in ports] if publish_at_start else [])
                    if plumb_later:
                        self._write_files(container_id)
                    else:
                        await self._plumb_first(container_id, netns_path, network, attachment)
            except BaseException:
                await self._undo_attach(container_id, attachment if bridge_net else None, netns_path)
                raise
            if bridge_net and plumb_later:
                self._plumb_after_reply(container_id, netns_path, network, attachment)
        log.info("endpoint_attached", container_id=container_id, network=network.name,
                 netns_path=netns_path, plumbing=bridge_net and plumb_later)
        return self._view(endpoint)

    async def _plumb_first(self, container_id: str, netns_path: str, network: Network,
                           attachment: Attachment) -> None:
        """The veth pair, /etc/hosts and resolv.conf, firewall and resolver of a new endpoint
        (under the lock; its rows are written)."""
        await asyncio.to_thread(self._plumb, netns_path, network, attachment, True)
        self._write_files(container_id)
        await self._apply_firewall()
        await self._serve_dns(container_id, netns_path)

    async def _undo_attach(self, container_id: str, attachment: Attachment | None,
                           netns_path: str) -> None:
        """Everything an attach made, its rows first (under the lock)."""
        self.store.remove_endpoint(container_id)
        if attachment is not None:
            await self._release(attachment)
        if self.resolver is not None:
            self.resolver.stop(container_id)
        if netns_path:
            await asyncio.to_thread(self._unplumb_all, container_id)
            await self._apply_firewall_quietly()

    def _plumb_after_reply(self, container_id: str, netns_path: str, network: Network,
                           attachment: Attachment) -> None:
        """attach's plumb_later: the rest of the attach as a task of its own. A failure undoes the attach and is kept for
        await_endpoint. A kill before it finished leaves rows whose veth is missing: the next
        start's reconcile makes it, before anything is served."""
        async def plumb() -> None:
            try:
                # The veth pair outside the lock: it touches only this endpoint's own
                # names and namespace (whatever would change the endpoint waits for this
                # task first), so attaches at once make their pairs at once.
                await asyncio.to_thread(self._plumb, netns_path, network, attachment, True)
                async with self._lock:   # (attach wrote /etc/hosts and resolv.conf)
                    await self._apply_firewall()
                    await self._serve_dns(container_id, netns_path)
            except BaseException as exc:
                log.warning("endpoint_plumbing_failed", container_id=container_id, error=str(exc))
                async with self._lock:
                    await self._undo_attach(container_id, attachment, netns_path)
                raise

        task = asyncio.create_task(plumb())
        # Its failure is read by await_endpoint (or nobody, when the container went first).
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._plumbing[container_id] = task

    async def await_endpoint(self, container_id: str) -> None:
        """Returns once the endpoint's plumbing (plumb_later) is done; raises its failure."""
        task = self._plumbing.get(container_id)
        if task is None:
            return
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and self._plumbing.get(container_id) is task:
                del self._plumbing[container_id]

    async def _plumbed(self, container_id: str, forget: bool = False) -> None:
        """Waits for an endpoint's plumbing still running (before changing the endpoint);
        its failure is await_endpoint's to report (`forget`: the endpoint goes, nobody's)."""
        task = self._plumbing.pop(container_id, None) if forget else self._plumbing.get(container_id)
        if task is not None:
            await asyncio.wait([task])

    async def publish_ports(self, container_id: str) -> list[Port]:
        """Bind the ports the container asked for (its container starts); those it holds
        already stay. Conflict when another container holds one."""
        async with self._lock:
            held = self.store.ports(container_id)
            requests = self.store.port_requests(container_id)
            if held or not requests:
                return held
            chosen = self._check_ports(container_id, [
                PortRequest(r.protocol, r.host_ip, r.host_port, r.container_port) for r in requests])
            self.store.add_ports(chosen)
            try:
                await self._apply_firewall()
            except BaseException:
                self.store.remove_ports(container_id)
                await self._apply_firewall_quietly()
                raise
        log.info("ports_published", container_id=container_id,
                 ports=[f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in chosen])
        return chosen

    async def unpublish_ports(self, container_id: str) -> None:
        """Release the host ports bound for the container (it stopped): free at once for
        another; what it asked for stays for its next start."""
        async with self._lock:
            if not self.store.ports(container_id) or not self.store.port_requests(container_id):
                return   # nothing bound, or bound for the endpoint's life
            self.store.remove_ports(container_id)
            await self._apply_firewall()
        log.info("ports_unpublished", container_id=container_id)

    async def remove_link(self, container_id: str, alias: str) -> None:
        """Forget the container's link of that alias on every network it is on."""
        async with self._lock:
            found = False
            for a in self.store.attachments(container_id=container_id):
                kept = tuple(x for x in a.links if x.split(":", 1)[1] != alias)
                if kept != a.links:
                    found = True
                    self.store.set_links(container_id, a.network_id, kept)
            if not found:
                raise NotFound(f"container {container_id[:12]} has no link {alias!r}")
            self._write_files(container_id)
        log.info("link_removed", container_id=container_id, alias=alias)

    async def connect(self, container_id: str, network_name: str, ipv4_address: str = "",
                      aliases: tuple[str, ...] = (),
                      settings: EndpointSettings = EndpointSettings()) -> EndpointView:
        network = self.get_network(network_name)
        await self._plumbed(container_id)
        async with self._lock:
            endpoint = self.store.get_endpoint(container_id)
            if endpoint is None:
                raise FailedPrecondition(
                    f"container {container_id[:12]} has no network namespace of its own: a container "
                    "sharing another container's network cannot be connected to a network")
            if network.driver not in BRIDGED:
                raise FailedPrecondition(
                    f"container cannot be connected to network {network.name}: only bridge "
                    "networks can be added to a container's networks")
            if not endpoint.netns_path:
                raise FailedPrecondition(
                    f"container cannot be disconnected from host network or connected to "
                    f"{network.name}: it is on network {endpoint.network_name}")
            if not os.path.exists(os.path.join(self._files(container_id), "resolv.conf")):
                raise FailedPrecondition(
                    "container cannot be connected to multiple networks with one of the networks "
                    "in private (none) mode")
            current = self.store.attachments(container_id=container_id)
            if any(a.network_id == network.id for a in current):
                raise AlreadyExists(f"endpoint with name {endpoint.name or container_id[:12]} "
                                    f"already exists in network {network.name}")
            attachment = await self._claim_attachment(
                container_id, network, current, endpoint.name or (current[0].name if current else ""),
                endpoint.hostname or (current[0].hostname if current else ""),
                ipv4_address, aliases, settings)
            first = attachment.ifname == "eth0"
            self.store.add_attachment(attachment)
            try:
                if first:
                    # Back on a network after it left all of them: that one is its first.
                    self.store.set_endpoint_network(container_id, network.id)
                await asyncio.to_thread(self._plumb, endpoint.netns_path, network, attachment, first)
                self._write_files(container_id)
                await self._apply_firewall()
                await self._serve_dns(container_id, endpoint.netns_path)
            except BaseException:
                self.store.remove_attachment(container_id, network.id)
                await self._release(attachment)
                if first:
                    self._repoint_endpoint(container_id)
                await asyncio.to_thread(kernel.delete_link, attachment.host_ifname)
                raise
        log.info("endpoint_connected", container_id=container_id, network=network.name)
        return self._view(self.store.get_endpoint(container_id) or endpoint)

    def _new_attachment(self, container_id: str, network: Network, current: list[Attachment],
                        name: str, hostname: str, ipv4_address: str, aliases,
                        settings: EndpointSettings) -> Attachment:
        """The attachment to add, every request in it checked (nothing is written yet)."""
        address = self._pick_address(network, ipv4_address)
        o = network.options
        ipv6 = ""
        if settings.ipv6_address and not o.get("subnet6"):
            raise InvalidArgument(f"invalid IPv6 address {settings.ipv6_address}: network "
                                  f"{network.name} has no IPv6 subnet (create it with IPv6 enabled)")
        if o.get("subnet6"):
            ipv6 = self._pick_address(network, settings.ipv6_address, version=6)
        taken = {a.mac_address for a in self.store.attachments(network_id=network.id)}
        if settings.mac_address:
            mac = _check_mac(settings.mac_address)
            if mac in taken:
                raise Conflict(f"MAC address {mac} is already in use on network {network.name}")
        else:
            # docker's MAC from the address, unless a container asked for that one: then
            # another locally administered one, so that a MAC given once never blocks an
            # address for everyone after it.
            mac = _mac_for(address)
            while mac in taken:
                mac = "02:42:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))
        index = _next_index(current)
        digest = hashlib.sha256(f"{container_id}/{network.id}".encode()).hexdigest()
        return Attachment(container_id=container_id, network_id=network.id,
                          network_name=network.name, address=address, ifname=f"eth{index}",
                          host_ifname=f"vb{digest[:11]}", name=name, hostname=hostname,
                          aliases=tuple(dict.fromkeys(aliases)), created_at=now(),
                          ipv6_address=ipv6, mac_address=mac, requested_ipv4=ipv4_address and address,
                          requested_ipv6=settings.ipv6_address and ipv6,
                          links=tuple(_check_link(x) for x in settings.links),
                          driver_opts=dict(settings.driver_opts),
                          link_local_ips=tuple(_check_link_local(x) for x in settings.link_local_ips))

    async def disconnect(self, container_id: str, network_name: str) -> None:
        network = self.get_network(network_name)
        await self._plumbed(container_id)
        async with self._lock:
            match = [a for a in self.store.attachments(container_id=container_id)
                     if a.network_id == network.id]
            if not match:
                raise NotFound(f"container {container_id[:12]} is not connected to network "
                               f"{network.name}")
            self.store.remove_attachment(container_id, network.id)
            endpoint = self.store.get_endpoint(container_id)
            if endpoint is not None and endpoint.network_id == network.id:
                self._repoint_endpoint(container_id)
            await asyncio.to_thread(kernel.delete_link, match[0].host_ifname)
            self._write_files(container_id)
            await self._apply_firewall()
            await self._release(match[0])
        log.info("endpoint_disconnected", container_id=container_id, network=network.name)

    def _repoint_endpoint(self, container_id: str) -> None:
        """An endpoint names the network it is on first. Once it left that one it names the next
        it is on, or "none" (only loopback is left), so the network it left can be removed."""
        rest = self.store.attachments(container_id=container_id)
        self.store.set_endpoint_network(container_id, rest[0].network_id if rest else _builtin_id("none"))

    async def detach(self, container_id: str) -> None:
        await self._plumbed(container_id, forget=True)
        async with self._lock:
            endpoint = self.store.get_endpoint(container_id)
            if endpoint is None:
                return
            attachments = self.store.attachments(container_id=container_id)
            host_links = [a.host_ifname for a in attachments]
            # Rows first: a crash after it leaves kernel objects with no endpoint,
            # which start() removes; the other order could leave rows that point at nothing.
            self.store.remove_endpoint(container_id)
            if host_links:
                await self._apply_firewall()
            for a in attachments:
                await self._release(a)
            if self.resolver is not None:
                self.resolver.stop(container_id)
            await asyncio.to_thread(self._release_namespace, container_id)
            if host_links:
                # Deleting a veth waits for the kernel's RCU grace periods (~20 ms
                # measured), and once the namespace is released the kernel tears
                # the pairs down by itself: the explicit delete, for a namespace
                # something still holds, runs after the reply.
                task = asyncio.create_task(asyncio.to_thread(_delete_links, host_links))
                self._deleting_links[container_id] = task
                task.add_done_callback(lambda _: self._deleting_links.pop(container_id, None))
        log.info("endpoint_detached", container_id=container_id, network=endpoint.network_name)

    # -- pieces -------------------------------------------------------------------------

    def _pick_address(self, network: Network, requested: str, version: int = 4) -> str:
        o = network.options
        if version == 4:
            pool = ipam.Pool.make(o["subnet"], o["gateway"], o.get("ip_range", ""), o.get("aux"))
            leased = {a.address for a in self.store.attachments(network_id=network.id)}
            if network.driver == "overlay" and self.overlay is not None:
                leased |= self.overlay.taken(network.id)
        else:
            pool = ipam.Pool.make(o["subnet6"], o["gateway6"], o.get("ip_range6", ""), o.get("aux6"),
                                  version=6)
            leased = {a.ipv6_address for a in self.store.attachments(network_id=network.id)}
        if requested:
            address = pool.check_requested(requested)
            if address in leased:
                raise Conflict(f"Address already in use: {address} on network {network.name}")
            return address
        return pool.first_free(leased)

    def _plumb(self, netns_path: str, network: Network, a: Attachment, first: bool) -> None:
        o = network.options
        routed = first and not o.get("internal")
        kernel.add_endpoint(o["bridge"], netns_path, kernel.Link(
            ifname=a.ifname, address=a.address, prefix_len=int(o["subnet"].split("/")[1]),
            gateway=o["gateway"] if routed else "", host_ifname=a.host_ifname,
            mac_address=a.mac_address, ipv6_address=a.ipv6_address,
            ipv6_prefix_len=int(o["subnet6"].split("/")[1]) if a.ipv6_address else 0,
            ipv6_gateway=o["gateway6"] if routed and a.ipv6_address else "",
            link_local_ips=a.link_local_ips,
            mtu=self.overlay.mtu(network) if network.driver == "overlay" and self.overlay else 0))

    def _unplumb_all(self, container_id: str) -> None:
        # The veths die with the namespace once nothing holds it; delete the host
        # ends anyway, since a still-running process could keep the namespace.
        digest_ids = {n.id for n in self._bridges()}
        for network_id in digest_ids:
            digest = hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()
            kernel.delete_link(f"vb{digest[:11]}")
        self._release_namespace(container_id)

    def _release_namespace(self, container_id: str) -> None:
        self.namespaces.remove(container_id)
        d = self._files(container_id)
        for fname in ("hosts", "resolv.conf"):
            try:
                os.unlink(os.path.join(d, fname))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(d)
        except OSError:
            pass

    def _check_ports(self, container_id: str, ports) -> list[Port]:
        existing = self.store.ports()
        chosen: list[Port] = []

        def clash(p: Port) -> bool:
            return any(q.protocol == p.protocol and q.host_port == p.host_port and
                       (q.host_ip == p.host_ip or "0.0.0.0" in (q.host_ip, p.host_ip))
                       for q in existing + chosen)

        for r in ports:
            host_ip = r.host_ip or "0.0.0.0"
            if r.host_port:
                p = Port(container_id, r.protocol, host_ip, r.host_port, r.container_port)
                if clash(p):
                    raise Conflict(f"Bind for {host_ip}:{r.host_port} failed: port is already "
                                   "allocated")
                _check_bindable(r.protocol, host_ip, r.host_port)
            else:
                p = self._ephemeral(container_id, r, host_ip, clash)
            chosen.append(p)
        return chosen

    def _ephemeral(self, container_id: str, r: PortRequest, host_ip: str, clash) -> Port:
        low, high = EPHEMERAL_PORTS
        start = random.randint(low, high)
        for i in range(high - low + 1):
            port = low + (start - low + i) % (high - low + 1)
            p = Port(container_id, r.protocol, host_ip, port, r.container_port)
            if clash(p):
                continue
            try:
                _check_bindable(r.protocol, host_ip, port)
            except Conflict:
                continue
            return p
        raise Conflict("no free host port in the ephemeral range for publishing")

    async def _apply_firewall(self) -> None:
        if self.firewall is None:
            return
        bridges = self._bridges()
        by_id = {n.id: n for n in bridges}
        rules_b = [BridgeRules(bridge=n.options["bridge"], subnet=n.options["subnet"],
                               loopback_source=n.options["loopback"],
                               internal=bool(n.options.get("internal")),
                               subnet6=n.options.get("subnet6", ""),
                               untracked=n.driver == "overlay",
                               gateway=n.options.get("gateway", "")) for n in bridges]
        rules_p = []
        for p in self.store.ports():
            target = next((a for a in self.store.attachments(container_id=p.container_id)
                           if a.ifname == "eth0"), None)
            if target is None or by_id[target.network_id].options.get("internal"):
                continue
            rules_p.append(PortRule(p.protocol, p.host_ip, p.host_port, target.address,
                                    p.container_port))
        ruleset = Ruleset(table=self.nft_table, bridges=rules_b, ports=rules_p,
                          vxlan_local=self.overlay.advertise if self.overlay else "")
        if ruleset == self._applied:
            # Nothing to change in berth's table nor in the FORWARD chains' accept rules,
            # which the host-forward watcher keeps in place on its own.
            return
        self._applied = None
        await self.firewall.apply(ruleset)
        if self.host_forward is not None:
            await asyncio.to_thread(self.host_forward.sync, [b.bridge for b in rules_b])
        self._applied = ruleset

    async def _apply_firewall_quietly(self) -> None:
        try:
            await self._apply_firewall()
        except Exception as exc:  # noqa: BLE001 - the original error wins
            log.warning("firewall_restore_failed", error=str(exc))

    async def _serve_dns(self, container_id: str, netns_path: str) -> None:
        """The resolver at 127.0.0.11 in a container's namespace (once; on bridge networks)."""
        if self.resolver is None or not netns_path or self.resolver.serving(container_id):
            return
        if not self.store.attachments(container_id=container_id):
            return
        await self.resolver.serve(container_id, netns_path, lambda q: self._lookup(container_id, q))

    def _lookup(self, container_id: str, qname: str) -> list[str]:
        """Addresses of `qname` for one container: the containers, aliases and its links on every
        user-defined network it is on ("name" or "name.network"); none on the default bridge, as
        docker (its containers find each other by links in /etc/hosts)."""
        name = qname.rstrip(".").lower()
        out: list[str] = []
        networks = {n.id: n for n in self._bridges()}
        for mine in self.store.attachments(container_id=container_id):
            network = networks.get(mine.network_id)
            if network is None or network.builtin:
                continue
            short = name.removesuffix("." + network.name.lower())
            linked = {t.lower() for t, alias in (x.split(":", 1) for x in mine.links)
                      if short in (t.lower(), alias.lower())}
            for a in self.store.attachments(network_id=network.id):
                names = {a.name.lower(), a.hostname.lower(), a.container_id[:12], a.container_id,
                         *(x.lower() for x in a.aliases)} - {""}
                if short in names or a.name.lower() in linked:
                    out += [a.address] + ([a.ipv6_address] if a.ipv6_address else [])
            if network.driver == "overlay" and self.overlay is not None:
                out += self.overlay.lookup(network.id, short)
        return list(dict.fromkeys(out))

    # -- files ----------------------------------------------------------------------------

    def _files(self, container_id: str) -> str:
        return os.path.join(self.files_dir, container_id)

    def _write_files(self, container_id: str) -> None:
        """/etc/hosts and /etc/resolv.conf, rewritten in place (they are bind-mounted)."""
        attachments = self.store.attachments(container_id=container_id)
        if not attachments:
            return
        d = self._files(container_id)
        os.makedirs(d, mode=0o755, exist_ok=True)
        first = attachments[0]
        names = " ".join(dict.fromkeys(n for n in (first.hostname, first.name) if n))
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
                 "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
        for a in attachments:
            hosts.append(f"{a.address}\t{names}" if names else a.address)
            if a.ipv6_address:
                hosts.append(f"{a.ipv6_address}\t{names}" if names else a.ipv6_address)
        networks = {n.id: n for n in self._bridges()}
        # Links on the default bridge live here, as docker writes them (no names there in DNS).
        for a in attachments:
            if not networks[a.network_id].builtin:
                continue
            peers = {b.name: b for b in self.store.attachments(network_id=a.network_id)}
            for link in a.links:
                target, alias = link.split(":", 1)
                if target in peers:
                    hosts.append(f"{peers[target].address}\t{' '.join(dict.fromkeys((alias, target)))}")
        on_user_network = any(not networks[a.network_id].builtin for a in attachments)
        _write_in_place(os.path.join(d, "hosts"), "\n".join(hosts) + "\n")
        _write_in_place(os.path.join(d, "resolv.conf"), self._resolv_conf(on_user_network))

    def _resolv_conf(self, on_user_network: bool) -> str:
        """As docker: the embedded resolver on user-defined networks; the host's resolvers on the
        default bridge, unless they are only on the host's loopback (unreachable from a
        container; docker then falls back to public resolvers, berth to its own, which forwards
        from the host)."""
        search, options = [], []
        try:
            with open(self.host_resolv_conf) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[0] in ("search", "domain"):
                        search = parts[1:]
                    elif parts and parts[0] == "options":
                        options += parts[1:]
        except OSError:
            pass
        upstreams = self.resolver.upstreams if self.resolver is not None else []
        reachable = [h for h, port in upstreams
                     if port == 53 and not ipaddress.ip_address(h).is_loopback]
        if on_user_network or not reachable:
            servers = ["127.0.0.11"]
            options = ["ndots:0", *(o for o in options if not o.startswith("ndots:"))]
        else:
            servers = reachable
        lines = [f"nameserver {h}" for h in servers]
        if search:
            lines.append("search " + " ".join(search))
        if options:
            lines.append("options " + " ".join(dict.fromkeys(options)))
        return "\n".join(lines) + "\n"

    # -- reconcile ------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """Make the endpoints and the kernel agree, on start."""
        endpoints = self.store.list_endpoints()
        wanted = {e.container_id for e in endpoints if e.netns_path}
        networks = {n.id: n for n in self._bridges()}
        for endpoint in endpoints:
            if not endpoint.netns_path:
                continue
            cid = endpoint.container_id
            if self.namespaces.path(cid) != endpoint.netns_path:
                # The run root moved: the old path is not ours to manage any more.
                self.store.remove_endpoint(cid)
                wanted.discard(cid)
                log.warning("endpoint_dropped", container_id=cid,
                            reason="namespace path is outside this run root",
                            netns_path=endpoint.netns_path)
                continue
            attachments = self.store.attachments(container_id=cid)
            if not self.namespaces.is_live(cid):
                # Its processes (if any still run) keep the old namespace; a
                # fresh one at the same path lets the container start again.
                self.namespaces.remove(cid)
                self.namespaces.create(cid)
                log.warning("endpoint_netns_recreated", container_id=cid,
                            reason="its namespace had vanished (reboot or removed by hand)",
                            netns_path=endpoint.netns_path)
            for a in attachments:
                network = networks[a.network_id]
                if not kernel.endpoint_plumbed(network.options["bridge"], a.host_ifname):
                    self._plumb(endpoint.netns_path, network, a, a.ifname == "eth0")
                    log.warning("endpoint_replumbed", container_id=cid, network=a.network_name)
            self._write_files(cid)
        for name in self.namespaces.names():
            if name not in wanted:
                self.namespaces.remove(name)
                log.warning("netns_removed", name=name, reason="no endpoint uses it")
        log.info("network_reconciled", endpoints=len(endpoints))


def _split_pools(pools, enable_ipv6: bool) -> tuple[PoolRequest | None, PoolRequest | None]:
    """The IPv4 and the IPv6 pool of a create request (each at most once)."""
    v4, v6 = [], []
    for p in pools:
        try:
            version = ipaddress.ip_network(p.subnet, strict=False).version
        except ValueError:
            raise InvalidArgument(f"invalid subnet {p.subnet!r}") from None
        (v4 if version == 4 else v6).append(p)
    if len(v4) > 1 or len(v6) > 1:
        raise InvalidArgument("more than one IPv4 or IPv6 subnet on one network is not supported "
                              "by berth's bridge driver")
    if v6 and not enable_ipv6:
        raise InvalidArgument(f"IPv6 subnet {v6[0].subnet} given but IPv6 is not enabled "
                              "(EnableIPv6 / --ipv6)")
    if enable_ipv6 and not v6:
        raise InvalidArgument("IPv6 is enabled but no IPv6 subnet is given: berth has no default "
                              "IPv6 pool (give one with --subnet)")
    return (v4[0] if v4 else None), (v6[0] if v6 else None)


def _network_options(options: dict[str, str]) -> str:
    """The bridge's name from the driver options; every other option is refused by name."""
    unknown = sorted(set(options) - {BRIDGE_NAME_OPTION})
    if unknown:
        raise InvalidArgument(f"network driver option {unknown[0]} is not supported by berth's "
                              f"bridge driver (supported: {BRIDGE_NAME_OPTION})")
    bridge = options.get(BRIDGE_NAME_OPTION, "")
    if bridge and not _LINUX_IFNAME.fullmatch(bridge):
        raise InvalidArgument(f"invalid {BRIDGE_NAME_OPTION} {bridge!r}: want 1 to 15 of "
                              "[a-zA-Z0-9_.-]")
    return bridge


def _mac_for(address: str) -> str:
    """docker's MAC for an address: 02:42 and the IPv4 address' four bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(address).packed)


def _check_mac(mac: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", mac):
        raise InvalidArgument(f"invalid MAC address {mac!r}")
    if int(mac[:2], 16) & 1:
        raise InvalidArgument(f"invalid MAC address {mac}: a multicast address")
    return mac.lower()


def _check_link(link: str) -> str:
    """"name[:alias]" -> "name:alias" (docker strips the leading "/" of names)."""
    target, _, alias = link.partition(":")
    target = target.lstrip("/")
    alias = alias.lstrip("/") or target
    if not target or not alias:
        raise InvalidArgument(f"invalid link {link!r}: want container[:alias]")
    return f"{target}:{alias}"


def _check_link_local(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise InvalidArgument(f"invalid link-local address {address!r}") from None
    if not ip.is_link_local:
        raise InvalidArgument(f"invalid link-local address {address}: not in 169.254.0.0/16 "
                              "or fe80::/10")
    return str(ip)


def endpoint_id(container_id: str, network_id: str) -> str:
    """The stable id docker shows for a container's place on a network."""
    return hashlib.sha256(f"berth/endpoint/{container_id}/{network_id}".encode()).hexdigest()


def _next_index(current: list[Attachment]) -> int:
    used = {int(a.ifname[3:]) for a in current if a.ifname[3:].isdigit()}
    return next(i for i in range(len(used) + 1) if i not in used)


def _builtin_id(name: str) -> str:
    from services.network.store import builtin_id
    return builtin_id(name)


def _write_in_place(path: str, text: str) -> None:
    with open(path, "a+") as f:
        f.seek(0)
        f.truncate()
        f.write(text)


def _check_bindable(protocol: str, host_ip: str, port: int) -> None:
    """Whether something on the host already listens on the port: then traffic would be split."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        if protocol == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(f"Bind for {host_ip}:{port} failed: port is already in use on the "
                           "host") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"cannot publish on {host_ip}: not an address of this host") from None
        raise
    finally:
        s.close()


def parse_port_request(protocol: str, host_ip: str, host_port: int,
                       container_port: int) -> PortRequest:
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise InvalidArgument(f"invalid proto: {protocol}")
    if not 1 <= container_port <= 65535:
        raise InvalidArgument(f"invalid containerPort: {container_port}")
    if not 0 <= host_port <= 65535:
        raise InvalidArgument(f"invalid hostPort: {host_port}")
    if host_ip:
        try:
            ip = ipaddress.ip_address(host_ip)
        except ValueError:
            raise InvalidArgument(f"invalid host IP: {host_ip!r}") from None
        if ip.version != 4:
            raise InvalidArgument(f"invalid host IP {host_ip}: only IPv4 is supported")
    return PortRequest(protocol, host_ip, host_port, container_port)


def _check_container_id(container_id: str) -> None:
    if not _CONTAINER_ID.fullmatch(container_id or ""):
        raise InvalidArgument(
            f"invalid container id {container_id!r}: want letters, digits, '_', '.' or '-'")


def _delete_links(names: list[str]) -> None:
    for name in names:
        kernel.delete_link(name)
