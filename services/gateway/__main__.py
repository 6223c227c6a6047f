"""Entry point: `python -m services.gateway`. The wiring: every backend and what it is given."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable
from dataclasses import dataclass

from berth.build.v1 import build_pb2_grpc
from berth.container.v1 import container_pb2_grpc
from berth.engine.v1 import engine_pb2, engine_pb2_grpc
from berth.image.v1 import image_pb2_grpc
from berth.network.v1 import network_pb2_grpc
from berth.volume.v1 import volume_pb2_grpc
from services.common import process, rpc
from services.common.config import Config
from services.gateway.api import EngineApi
from services.gateway.backends import Backends
from services.gateway.backends.build import Builds
from services.gateway.backends.containers import Containers
from services.gateway.backends.execs import Execs
from services.gateway.backends.health import Monitors, exec_available
from services.gateway.backends.image_configs import ImageConfigs
from services.gateway.backends.images import Images, Registry
from services.gateway.backends.networks import Networks
from services.gateway.backends.restarts import Restarts
from services.gateway.backends.system import System
from services.gateway.backends.task_events import TaskEvents
from services.gateway.backends.volumes import Volumes
from services.gateway.docker.server import DockerApiServer
from services.gateway.events import EventLog
from services.gateway.metrics_http import MetricsServer
from services.gateway.store import GatewayStore
from services.gateway.volumes import Mounter


class Tasks:
    """The gateway's own background tasks (followers, monitors, removals), cancelled at stop."""

    def __init__(self):
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Awaitable) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True)
class Wiring:
    backends: Backends
    events: EventLog
    task_events: TaskEvents
    tasks: Tasks


def wire(config: Config, image, network, volume, container, store: GatewayStore | None,
         build=None) -> Wiring:
    """Every backend, given only its collaborators. Late-bound lambdas break the cycles
    (the restart policy starts containers; the containers backend cancels policies)."""
    tasks = Tasks()
    events = EventLog(store)
    image_configs = ImageConfigs(image)
    containers: Containers
    execs: Execs
    restarts = Restarts(container, store, start=lambda cid: containers.start_for_policy(cid),
                        busy=lambda cid: containers.busy(cid), spawn=tasks.spawn)
    health = Monitors(
        run_probe=lambda cid, argv, timeout: execs.run_exec(cid, argv, timeout),
        publish=lambda cid, status: containers.publish(f"health_status: {status}", cid),
        spawn=tasks.spawn, container=container, store=store, image_configs=image_configs)
    task_events = TaskEvents(
        container, store, events, attributes=lambda cid: containers.attributes(cid),
        on_start=lambda cid: containers.on_task_start(cid),
        on_exit=lambda cid: containers.on_task_exit(cid),
        exec_info=lambda exec_id: execs.info(exec_id), exec_ended=lambda exec_id: execs.ended(exec_id),
        reconcile=lambda listed: containers.reconcile(listed), spawn=tasks.spawn)
    containers = Containers(image, network, container, store, events, image_configs,
                            Mounter(volume, image), restarts, health, task_events, tasks.spawn,
                            probes=exec_available())
    execs = Execs(container, containers, task_events, store)
    images = Images(image, events.publish, image_configs, containers.image_usage)
    networks = Networks(network, events.publish, containers.resolve_id)
    volumes = Volumes(volume, events.publish)
    system = System(config.runtime, image, container, volume, containers, images, networks,
                    volumes, events)
    backends = Backends(containers=containers, execs=execs, system=system, images=images,
                        networks=networks, volumes=volumes, registry=Registry(image, events.publish),
                        builds=Builds(build, events.publish))
    return Wiring(backends, events, task_events, tasks)


async def build(config: Config):
    clients = [
        image := rpc.connect(config, "image", image_pb2_grpc.ImageServiceStub),
        network := rpc.connect(config, "network", network_pb2_grpc.NetworkServiceStub),
        volume := rpc.connect(config, "volume", volume_pb2_grpc.VolumeServiceStub),
        container := rpc.connect(config, "container", container_pb2_grpc.ContainerServiceStub),
        build_client := rpc.connect(config, "build", build_pb2_grpc.BuildServiceStub),
    ]
    store = GatewayStore(os.path.join(config.state_dir("gateway"), "gateway.db"))
    wiring = wire(config, image, network, volume, container, store, build_client)
    backends, tasks = wiring.backends, wiring.tasks
    tasks.spawn(wiring.task_events.follow())
    # The Docker Engine API in this same loop, over the same backends the gRPC API uses.
    docker_api = DockerApiServer(config, backends)
    await docker_api.start()
    metrics_server = MetricsServer(config.metrics_address, {
        name: client.channel for name, client in zip(("image", "network", "volume", "container", "build"), clients)})
    await metrics_server.start()

    def register(server):
        engine_pb2_grpc.add_EngineServiceServicer_to_server(EngineApi(backends), server)
        return [engine_pb2.DESCRIPTOR.services_by_name["EngineService"].full_name]

    async def on_stop():
        await metrics_server.stop()
        await docker_api.stop()
        await tasks.close()
        for client in clients:
            await client.channel.close()
        store.close()

    return register, on_stop


def main(argv: list[str]) -> None:
    """`python -m services.gateway [--metrics-addr HOST:PORT]` (as a unit runs it; config from BERTH_*)."""
    import argparse
    parser = argparse.ArgumentParser(prog="berth-gateway")
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (BERTH_METRICS_ADDRESS)")
    args = parser.parse_args(argv)
    if args.metrics_addr is not None:
        os.environ["BERTH_METRICS_ADDRESS"] = args.metrics_addr
    process.run_service("gateway", build)


if __name__ == "__main__":
    main(sys.argv[1:])
