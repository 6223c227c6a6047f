"""What the CRI service finds on start: node objects it made whose CRI record never got written.

RunPodSandbox and CreateContainer write their row last, so a crash midway
leaves a labelled snapshot, maybe a sandbox endpoint, maybe a node container,
and no row. Every such object carries the CRI's label with its id (snapshots
are made first for that reason); on start, before serving, those without a row
are removed. Rows whose node objects are gone stay: their status says UNKNOWN
and RemoveContainer / RemovePodSandbox clear them.
"""

from __future__ import annotations

import structlog

from berth.container.v1 import container_pb2
from berth.image.v1 import image_pb2
from berth.network.v1 import network_pb2
from services.common import errors
from services.cri.containers import CONTAINER_LABEL
from services.cri.sandboxes import SANDBOX_LABEL
from services.cri.store import Store

log = structlog.get_logger(__name__)


async def reconcile(store: Store, image, network, container) -> set[str]:
    """Remove the orphans; return the ids of the CRI's containers that run now."""
    sandboxes = {s.id for s in store.sandboxes()}
    containers = {c.id for c in store.containers()}
    running = set()
    for c in (await container.ListContainers(container_pb2.ListContainersRequest())).containers:
        cid, sid = c.labels.get(CONTAINER_LABEL), c.labels.get(SANDBOX_LABEL)
        if cid and cid in containers and c.status == container_pb2.STATUS_RUNNING:
            running.add(cid)
        if (cid and cid not in containers) or (not cid and sid and sid not in sandboxes):
            log.info("orphan_removed", kind="container", id=c.id)
            await _quietly(container.RemoveContainer(
                container_pb2.RemoveContainerRequest(id=c.id, force=True)))
    for s in (await image.ListSnapshots(image_pb2.ListSnapshotsRequest())).snapshots:
        cid, sid = s.labels.get(CONTAINER_LABEL), s.labels.get(SANDBOX_LABEL)
        if cid and cid not in containers:
            log.info("orphan_removed", kind="snapshot", id=s.key)
            await _quietly(image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=s.key)))
        elif sid and not cid and sid not in sandboxes:
            log.info("orphan_removed", kind="sandbox", id=sid)
            await _quietly(network.DeleteEndpoint(network_pb2.DeleteEndpointRequest(container_id=sid)))
            await _quietly(image.RemoveSnapshot(image_pb2.RemoveSnapshotRequest(key=s.key)))
    return running


async def _quietly(call) -> None:
    try:
        await call
    except errors.NotFound:
        pass
    except errors.BerthError as exc:
        log.warning("orphan_not_removed", error=exc.message)
