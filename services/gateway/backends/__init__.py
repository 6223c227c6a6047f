"""The gateway's backends, one per resource, each behind a Protocol in interfaces.py.

Both API edges (the gRPC Engine servicer, services/gateway/api.py, and the Docker
routes, services/gateway/docker/routes/) take one `Backends` and use only those
Protocols; services/gateway/__main__.py builds each backend with its collaborators.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway.backends.interfaces import (BuildBackend, ContainerBackend, ExecBackend,
                                                  ImageBackend, NetworkBackend, RegistryBackend,
                                                  SystemBackend, VolumeBackend)


@dataclass(frozen=True)
class Backends:
    containers: ContainerBackend
    execs: ExecBackend
    system: SystemBackend
    images: ImageBackend
    networks: NetworkBackend
    volumes: VolumeBackend
    registry: RegistryBackend
    # None only where a gateway is put together without the build service (unit tests).
    builds: BuildBackend | None = None
