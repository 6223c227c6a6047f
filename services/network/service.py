"""NetworkService: which network a container is on, and the namespace it joins.

"none" gives each container its own network namespace with only loopback;
"host" shares the host's namespace, so its endpoint has no namespace path.
Endpoints are rows in the store; the namespaces are the kernel's and are
pinned by bind mounts, so both survive this service. `reconcile` makes the
two agree again after a crash or after someone removed a namespace by hand.
"""

from __future__ import annotations

import asyncio
import re

import structlog

from services.common.errors import InvalidArgument, NotFound
from services.network.netns import Namespaces
from services.network.store import Endpoint, Network, Store, now

log = structlog.get_logger(__name__)

# Container ids become file names under the netns directory.
_CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


class NetworkService:
    def __init__(self, store: Store, namespaces: Namespaces):
        self.store = store
        self.namespaces = namespaces
        # One change at a time: attach/detach of one container must not race
        # (two creates of one namespace path), and they are quick.
        self._lock = asyncio.Lock()

    def list_networks(self) -> list[Network]:
        return self.store.list_networks()

    def get_network(self, name: str) -> Network:
        network = self.store.find_network(name) if name else None
        if network is None:
            raise NotFound(f"network {name} not found")
        return network

    def list_endpoints(self) -> list[Endpoint]:
        return self.store.list_endpoints()

    async def attach(self, container_id: str, network_name: str) -> Endpoint:
        _check_container_id(container_id)
        network = self.get_network(network_name or "none")
        async with self._lock:
            existing = self.store.get_endpoint(container_id)
            if existing is not None:
                if existing.network_id != network.id:
                    raise InvalidArgument(
                        f"container {container_id} is already attached to network "
                        f"{existing.network_name}; detach it first")
                return existing
            netns_path = ""
            if network.driver == "null":
                netns_path = await asyncio.to_thread(self.namespaces.create, container_id)
            endpoint = Endpoint(container_id=container_id, network_id=network.id,
                                network_name=network.name, netns_path=netns_path,
                                created_at=now())
            try:
                self.store.add_endpoint(endpoint)
            except BaseException:
                if netns_path:
                    await asyncio.to_thread(self.namespaces.remove, container_id)
                raise
        log.info("endpoint_attached", container_id=container_id, network=network.name,
                 netns_path=netns_path)
        return endpoint

    async def detach(self, container_id: str) -> None:
        async with self._lock:
            endpoint = self.store.get_endpoint(container_id)
            if endpoint is None:
                return
            # Row first: a crash after it leaves a namespace with no endpoint,
            # which reconcile removes; the other order could leave a row that
            # points at nothing.
            self.store.remove_endpoint(container_id)
            if endpoint.netns_path:
                await asyncio.to_thread(self.namespaces.remove, container_id)
        log.info("endpoint_detached", container_id=container_id, network=endpoint.network_name)

    def reconcile(self) -> None:
        """Make the endpoints and the namespaces on disk agree, on start."""
        endpoints = self.store.list_endpoints()
        wanted = {e.container_id for e in endpoints if e.netns_path}
        for endpoint in endpoints:
            if not endpoint.netns_path:
                continue
            if self.namespaces.path(endpoint.container_id) != endpoint.netns_path:
                # The run root moved: the old path is not ours to manage any more.
                self.store.remove_endpoint(endpoint.container_id)
                wanted.discard(endpoint.container_id)
                log.warning("endpoint_dropped", container_id=endpoint.container_id,
                            reason="namespace path is outside this run root",
                            netns_path=endpoint.netns_path)
            elif not self.namespaces.is_live(endpoint.container_id):
                # Its processes (if any still run) keep the old namespace; a
                # fresh one at the same path lets the container start again.
                self.namespaces.remove(endpoint.container_id)
                self.namespaces.create(endpoint.container_id)
                log.warning("endpoint_netns_recreated", container_id=endpoint.container_id,
                            reason="its namespace had vanished (reboot or removed by hand)",
                            netns_path=endpoint.netns_path)
        for name in self.namespaces.names():
            if name not in wanted:
                self.namespaces.remove(name)
                log.warning("netns_removed", name=name, reason="no endpoint uses it")
        log.info("network_reconciled", endpoints=len(endpoints))


def _check_container_id(container_id: str) -> None:
    if not _CONTAINER_ID.fullmatch(container_id or ""):
        raise InvalidArgument(
            f"invalid container id {container_id!r}: want letters, digits, '_', '.' or '-'")
