"""Task events fanned out to any number of subscribers, in the order they were published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog

from services.container.model import Event

log = structlog.get_logger(__name__)

# A subscriber that falls this far behind loses its oldest events rather than
# making the service hold memory for it without bound.
QUEUE_SIZE = 1024


class Broker:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()

    def publish(self, event: Event) -> None:
        for q in self._queues:
            if q.full():
                q.get_nowait()
                log.warning("event_dropped", container_id=event.container_id)
            q.put_nowait(event)

    async def subscribe(self) -> AsyncIterator[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._queues.discard(q)
