"""`python -m services.container`: the container service on config.socket_path("container")."""

from __future__ import annotations

import os

from services.common.config import Config
from services.common.process import run_service
from services.container import api
from services.container.runtime import Runtime, become_subreaper
from services.container.service import ContainerService
from services.container.store import ContainerStore


async def build(config: Config):
    state = config.state_dir("container")
    become_subreaper()
    store = ContainerStore(os.path.join(state, "containers.db"))
    service = ContainerService(store, Runtime(config, os.path.join(state, "bundles")))
    await service.reconcile()

    def on_stop() -> None:
        # Containers keep running: only berth's own handles close.
        service.close()
        store.close()

    return api.register(service), on_stop


if __name__ == "__main__":
    run_service("container", build)
