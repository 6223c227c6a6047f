"""Task events for any number of subscribers, read from the event log in commit order.

Every event is committed to the store's log (which gives it its seq) before it
is published; publishing only wakes the subscribers, and each one reads the log
from its own position. So a subscriber sees every event once and in order:
replay and live are one read loop, a slow reader holds no memory here and
misses nothing unless it falls behind the log's retention (then it gets
FailedPrecondition, as a caller asking for a pruned position does).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from services.common import errors
from services.container.model import Event
from services.container.store import Pruned, Store

# Events read from the log per query.
PAGE = 500


class Broker:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._wakeups: set[asyncio.Event] = set()

    def publish(self, *events: Event) -> None:
        """Announces events the store has committed."""
        if events:
            for w in self._wakeups:
                w.set()

    async def subscribe(self, after_seq: int | None = None) -> AsyncIterator[Event]:
        """Events with a seq above after_seq, then live ones; None means live only."""
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        try:
            cursor = self._store.last_seq() if after_seq is None else after_seq
            while True:
                try:
                    page = self._store.events_after(cursor, PAGE)
                except Pruned as exc:
                    raise errors.FailedPrecondition(str(exc)) from None
                if not page:
                    # Cleared before the next read, so a commit after that read wakes us.
                    await wakeup.wait()
                    wakeup.clear()
                    continue
                for event in page:
                    cursor = event.seq
                    yield event
        finally:
            self._wakeups.discard(wakeup)
