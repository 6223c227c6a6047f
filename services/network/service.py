"""NetworkService: networks, the endpoints that put containers on them, published ports.

"none" gives each container its own network namespace with only loopback;
"host" shares the host's namespace, so its endpoint has no namespace path;
bridge networks ("bridge", made at start, and user-defined ones) give each
container a veth into the network's bridge, an address leased from the
network's pool, its default route, /etc/hosts and /etc/resolv.conf, and the
ports it publishes.

State is the store's; the kernel's objects (namespaces pinned by bind mounts,
bridges, veths, berth's nftables table) outlive this service, so a restart or
SIGKILL of it disturbs no running container. `start` makes kernel and store
agree again: bridges re-made when missing, the whole nftables table
re-rendered from the store, DNS listeners re-opened, endpoints whose namespace
vanished re-plumbed.

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
                                    NotFound)
from services.network import bridge as kernel
from services.network import ipam
from services.network.dns import Resolver
from services.network.firewall import BridgeRules, Firewaller, PortRule, Ruleset
from services.network.netns import Namespaces
from services.network.store import Attachment, Endpoint, Network, Port, Store, now

log = structlog.get_logger(__name__)

# Container ids become file names under the netns directory.
_CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
_NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
EPHEMERAL_PORTS = (49153, 60999)
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
class PortRequest:
    protocol: str
    host_ip: str
    host_port: int
    container_port: int


class NetworkService:
    def __init__(self, store: Store, namespaces: Namespaces, firewall: Firewaller | None = None,
                 resolver: Resolver | None = None, files_dir: str = "",
                 bridge_name: str = "berth0", bridge_subnet: str = "", nft_table: str = "berth"):
        self.store = store
        self.namespaces = namespaces
        self.firewall = firewall
        self.resolver = resolver
        self.files_dir = files_dir
        self.bridge_name = bridge_name
        self.bridge_subnet = bridge_subnet
        self.nft_table = nft_table
        # One change at a time: changes are quick, and leases, ports and the
        # ruleset are all derived from the same rows.
        self._lock = asyncio.Lock()
        # Host ends of detached veths still being deleted, by container id (see detach).
        self._deleting_links: dict[str, asyncio.Task] = {}

    # -- start ------------------------------------------------------------------------

    async def start(self) -> None:
        """Default bridge, kernel objects, firewall and DNS made to match the store."""
        async with self._lock:
            if self.store.find_network("bridge") is None:
                await asyncio.to_thread(self._create_bridge_network, "bridge", self.bridge_subnet,
                                        "", "", False, {}, True)
            for network in self._bridges():
                await asyncio.to_thread(self._ensure_bridge, network)
            await asyncio.to_thread(self._reconcile)
            if not kernel.ip_forward_enabled():
                kernel.enable_ip_forward()
                log.info("ip_forward_enabled", reason="bridge networks route to the outside")
            await self._apply_firewall()
            for network in self._bridges():
                await self._serve_dns(network)

    def close(self) -> None:
        if self.resolver is not None:
            self.resolver.close()

    # -- networks -------------------------------------------------------------------

    def list_networks(self) -> list[Network]:
        return self.store.list_networks()

    def get_network(self, name: str) -> Network:
        network = self.store.find_network(name) if name else None
        if network is None:
            raise NotFound(f"network {name} not found")
        return network

    def network_containers(self, network: Network) -> list[str]:
        if network.driver == "bridge":
            return [a.container_id for a in self.store.attachments(network_id=network.id)]
        return [e.container_id for e in self.store.list_endpoints() if e.network_id == network.id]

    async def create_network(self, name: str, driver: str = "", subnet: str = "", gateway: str = "",
                             ip_range: str = "", internal: bool = False,
                             labels: dict[str, str] | None = None) -> Network:
        if not name or not _NETWORK_NAME.fullmatch(name):
            raise InvalidArgument(f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                                  "are allowed")
        if driver not in ("", "bridge"):
            raise InvalidArgument(f"plugin \"{driver}\" not found: only the bridge driver is "
                                  "available")
        if (gateway or ip_range) and not subnet:
            raise InvalidArgument("--gateway and --ip-range need --subnet")
        async with self._lock:
            if self.store.find_network(name) is not None and \
                    self.store.find_network(name).name == name:
                raise AlreadyExists(f"network with name {name} already exists")
            network = await asyncio.to_thread(self._create_bridge_network, name, subnet, gateway,
                                              ip_range, internal, labels or {}, False)
            try:
                await self._apply_firewall()
            except BaseException:
                await asyncio.to_thread(self._delete_bridge_network, network)
                raise
            await self._serve_dns(network)
        log.info("network_created", network=name, subnet=network.options["subnet"],
                 bridge=network.options["bridge"])
        return network

    def _create_bridge_network(self, name: str, subnet: str, gateway: str, ip_range: str,
                               internal: bool, labels: dict[str, str], builtin: bool) -> Network:
        os.makedirs(os.path.dirname(SUBNET_LOCK), exist_ok=True)
        with open(SUBNET_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            taken = [ipam.parse_subnet(n.options["subnet"]) for n in self._bridges()]
            routes = kernel.host_routes()
            if subnet:
                net = ipam.parse_subnet(subnet)
                clash = ipam.overlapping(net, taken)
                if clash is not None:
                    raise InvalidArgument(f"invalid pool request: Pool overlaps with other one on "
                                          f"this address space ({clash})")
                clash = ipam.overlapping(net, routes)
                if clash is not None:
                    raise InvalidArgument(f"subnet {net} overlaps the host's route to {clash}")
            else:
                net = ipam.choose_subnet(taken + routes)
            pool = ipam.Pool.make(str(net), gateway, ip_range)
            network_id = _builtin_id(name) if builtin else secrets.token_hex(32)
            bridge_name = self.bridge_name if builtin else f"br-{network_id[:12]}"
            options = {"subnet": str(pool.subnet), "gateway": pool.gateway,
                       "ip_range": ip_range and str(pool.ip_range), "internal": "1" if internal else "",
                       "bridge": bridge_name, "loopback": pool.loopback_source}
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
        kernel.ensure_bridge(o["bridge"], [f"{o['gateway']}/{prefix}", f"{o['loopback']}/32"])

    def _delete_bridge_network(self, network: Network) -> None:
        self.store.remove_network(network.id)
        kernel.delete_link(network.options["bridge"])

    async def remove_network(self, name: str) -> None:
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
        if self.resolver is not None:
            self.resolver.stop(network.options["gateway"])
        self.store.remove_network(network.id)
        await self._apply_firewall()
        await asyncio.to_thread(kernel.delete_link, network.options["bridge"])
        log.info("network_removed", network=network.name)

    async def prune_networks(self) -> list[str]:
        removed = []
        async with self._lock:
            for network in self._bridges():
                if not network.builtin and not self.network_containers(network):
                    await self._remove_network(network)
                    removed.append(network.name)
        return removed

    def _bridges(self) -> list[Network]:
        return [n for n in self.store.list_networks() if n.driver == "bridge"]

    # -- endpoints --------------------------------------------------------------------

    def list_endpoints(self) -> list[EndpointView]:
        return [self._view(e) for e in self.store.list_endpoints()]

    def _view(self, endpoint: Endpoint) -> EndpointView:
        attachments = self.store.attachments(container_id=endpoint.container_id)
        mounts = []
        if attachments:
            d = self._files(endpoint.container_id)
            mounts = [(os.path.join(d, "hosts"), "/etc/hosts"),
                      (os.path.join(d, "resolv.conf"), "/etc/resolv.conf")]
        networks = {n.id: n for n in self._bridges()}
        return EndpointView(endpoint=endpoint, attachments=attachments,
                            ports=self.store.ports(endpoint.container_id), mounts=mounts,
                            networks=networks)

    async def attach(self, container_id: str, network_name: str, name: str = "",
                     hostname: str = "", ipv4_address: str = "", aliases: tuple[str, ...] = (),
                     ports: tuple[PortRequest, ...] = ()) -> EndpointView:
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
            bridge_net = network.driver == "bridge"
            if not bridge_net and (ipv4_address or aliases):
                raise InvalidArgument("user specified IP address and aliases are supported only "
                                      "on bridge networks")
            if bridge_net and network.options.get("internal"):
                ports = ()
            if not bridge_net:
                ports = ()   # docker ignores published ports on host and none
            if bridge_net:
                address = self._pick_address(network, ipv4_address)
                chosen = self._check_ports(container_id, ports)
            netns_path = ""
            if network.driver in ("null", "bridge"):
                netns_path = await asyncio.to_thread(self.namespaces.create, container_id)
            endpoint = Endpoint(container_id=container_id, network_id=network.id,
                                network_name=network.name, netns_path=netns_path, created_at=now())
            try:
                self.store.add_endpoint(endpoint)
                if bridge_net:
                    attachment = self._attachment(container_id, network, address, 0, name,
                                                  hostname, aliases)
                    self.store.add_attachment(attachment)
                    self.store.add_ports(chosen)
                    await asyncio.to_thread(self._plumb, netns_path, network, attachment, True)
                    self._write_files(container_id)
                    await self._apply_firewall()
            except BaseException:
                self.store.remove_endpoint(container_id)
                if netns_path:
                    await asyncio.to_thread(self._unplumb_all, container_id)
                    await self._apply_firewall_quietly()
                raise
        log.info("endpoint_attached", container_id=container_id, network=network.name,
                 netns_path=netns_path)
        return self._view(endpoint)

    async def connect(self, container_id: str, network_name: str, ipv4_address: str = "",
                      aliases: tuple[str, ...] = ()) -> EndpointView:
        network = self.get_network(network_name)
        async with self._lock:
            endpoint = self.store.get_endpoint(container_id)
            if endpoint is None:
                raise NotFound(f"container {container_id} has no network endpoint")
            if network.driver != "bridge":
                raise FailedPrecondition(
                    f"container cannot be connected to network {network.name}: only bridge "
                    "networks can be added to a running container's networks")
            if not endpoint.netns_path or not self.store.attachments(container_id=container_id):
                raise FailedPrecondition(
                    f"container cannot be disconnected from host network or connected to "
                    f"{network.name}: it is on network {endpoint.network_name}")
            current = self.store.attachments(container_id=container_id)
            if any(a.network_id == network.id for a in current):
                raise AlreadyExists(f"endpoint with name {current[0].name or container_id[:12]} "
                                    f"already exists in network {network.name}")
            address = self._pick_address(network, ipv4_address)
            index = _next_index(current)
            attachment = self._attachment(container_id, network, address, index, current[0].name,
                                          current[0].hostname, aliases)
            self.store.add_attachment(attachment)
            try:
                await asyncio.to_thread(self._plumb, endpoint.netns_path, network, attachment, False)
                self._write_files(container_id)
                await self._apply_firewall()
            except BaseException:
                self.store.remove_attachment(container_id, network.id)
                await asyncio.to_thread(kernel.delete_link, attachment.host_ifname)
                raise
        log.info("endpoint_connected", container_id=container_id, network=network.name)
        return self._view(endpoint)

    async def disconnect(self, container_id: str, network_name: str) -> None:
        network = self.get_network(network_name)
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
        log.info("endpoint_disconnected", container_id=container_id, network=network.name)

    def _repoint_endpoint(self, container_id: str) -> None:
        """An endpoint names the network it is on first. Once it left that one it names the next
        it is on, or "none" (only loopback is left), so the network it left can be removed."""
        rest = self.store.attachments(container_id=container_id)
        self.store.set_endpoint_network(container_id, rest[0].network_id if rest else _builtin_id("none"))

    async def detach(self, container_id: str) -> None:
        async with self._lock:
            endpoint = self.store.get_endpoint(container_id)
            if endpoint is None:
                return
            host_links = [a.host_ifname for a in self.store.attachments(container_id=container_id)]
            # Rows first: a crash after it leaves kernel objects with no endpoint,
            # which start() removes; the other order could leave rows that point at nothing.
            self.store.remove_endpoint(container_id)
            if host_links:
                await self._apply_firewall()
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

    def _pick_address(self, network: Network, requested: str) -> str:
        o = network.options
        pool = ipam.Pool.make(o["subnet"], o["gateway"], o.get("ip_range", ""))
        leased = {a.address for a in self.store.attachments(network_id=network.id)}
        if requested:
            address = pool.check_requested(requested)
            if address in leased:
                raise Conflict(f"Address already in use: {address} on network {network.name}")
            return address
        return pool.first_free(leased)

    def _attachment(self, container_id: str, network: Network, address: str, index: int,
                    name: str, hostname: str, aliases) -> Attachment:
        digest = hashlib.sha256(f"{container_id}/{network.id}".encode()).hexdigest()
        return Attachment(container_id=container_id, network_id=network.id,
                          network_name=network.name, address=address, ifname=f"eth{index}",
                          host_ifname=f"vb{digest[:11]}", name=name, hostname=hostname,
                          aliases=tuple(aliases), created_at=now())

    def _plumb(self, netns_path: str, network: Network, a: Attachment, first: bool) -> None:
        o = network.options
        gateway = o["gateway"] if first and not o.get("internal") else ""
        kernel.add_endpoint(o["bridge"], netns_path, kernel.Link(
            ifname=a.ifname, address=a.address, prefix_len=int(o["subnet"].split("/")[1]),
            gateway=gateway, host_ifname=a.host_ifname))

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
                               internal=bool(n.options.get("internal"))) for n in bridges]
        rules_p = []
        for p in self.store.ports():
            target = next((a for a in self.store.attachments(container_id=p.container_id)
                           if a.ifname == "eth0"), None)
            if target is None or by_id[target.network_id].options.get("internal"):
                continue
            rules_p.append(PortRule(p.protocol, p.host_ip, p.host_port, target.address,
                                    p.container_port))
        await self.firewall.apply(Ruleset(table=self.nft_table, bridges=rules_b, ports=rules_p))

    async def _apply_firewall_quietly(self) -> None:
        try:
            await self._apply_firewall()
        except Exception as exc:  # noqa: BLE001 - the original error wins
            log.warning("firewall_restore_failed", error=str(exc))

    async def _serve_dns(self, network: Network) -> None:
        if self.resolver is None:
            return
        network_id = network.id
        builtin = network.builtin

        def lookup(qname: str) -> list[str]:
            if builtin:   # as docker: no name resolution on the default bridge
                return []
            name = qname.rstrip(".").lower()
            out = []
            for a in self.store.attachments(network_id=network_id):
                names = {a.name.lower(), a.hostname.lower(), a.container_id[:12],
                         *(x.lower() for x in a.aliases)}
                if name in names:
                    out.append(a.address)
            return out
        await self.resolver.serve(network.options["gateway"], lookup)

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
        networks = {n.id: n for n in self._bridges()}
        resolv = [f"nameserver {networks[first.network_id].options['gateway']}",
                  "options ndots:0"]
        _write_in_place(os.path.join(d, "hosts"), "\n".join(hosts) + "\n")
        _write_in_place(os.path.join(d, "resolv.conf"), "\n".join(resolv) + "\n")

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
                if not kernel.link_exists(a.host_ifname):
                    self._plumb(endpoint.netns_path, networks[a.network_id], a, a.ifname == "eth0")
                    log.warning("endpoint_replumbed", container_id=cid, network=a.network_name)
            self._write_files(cid)
        for name in self.namespaces.names():
            if name not in wanted:
                self.namespaces.remove(name)
                log.warning("netns_removed", name=name, reason="no endpoint uses it")
        log.info("network_reconciled", endpoints=len(endpoints))


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
