"""`python -m services.container`: the container service on config.socket_path("container")."""

from __future__ import annotations

import os
from collections import Counter

from opentelemetry.metrics import Observation

from services.common import metrics
from services.common.config import Config
from services.common.process import run_service
from services.container import api
from services.container.runtime import Runtime, become_subreaper
from services.container.model import Status
from services.container.service import ContainerService
from services.container.store import ContainerStore


async def build(config: Config):
    state = config.state_dir("container")
    become_subreaper()
    store = ContainerStore(os.path.join(state, "containers.db"))
    service = ContainerService(store, Runtime(config, os.path.join(state, "bundles")))
    await service.reconcile()
    metrics.meter(__name__).create_observable_gauge(
        "berth.containers", callbacks=[lambda options: _by_state(service)],
        description="Containers on this node, by state")

    def on_stop() -> None:
        # Containers keep running: only berth's own handles close.
        service.close()
        store.close()

    return api.register(service), on_stop


def _by_state(service: ContainerService) -> list[Observation]:
    counts = Counter(c.status.value for c in service.list({}))
    # Every state, so a state that empties reads 0 rather than its last value.
    return [Observation(counts.get(s.value, 0), {"state": s.value}) for s in Status]


if __name__ == "__main__":
    run_service("container", build)
