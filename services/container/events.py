"""Task events for any number of subscribers, read from the event log in commit order.

Every event is committed to the store's log (which gives it its seq) before it
is published; publishing only wakes the subscribers, and each one reads the log
from its own position. So a subscriber sees every event once and in order:
replay and live are one read loop, a slow reader holds no memory here and
misses nothing unless it falls behind the log's retention (then it gets
FailedPrecondition, as a caller asking for a pruned position does).

The newest published events are kept in memory too: a subscriber that is up to
date (the gateway, nearly always) takes the next ones from there without a query,
and reads the log whenever memory does not hold exactly what follows its position
without a gap.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from services.common import errors
from services.container import store as store_mod
from services.container.model import Event
from services.container.store import Pruned, Store

# Events read from the log per query.
PAGE = 500
# Published events kept in memory for subscribers that are up to date.
RECENT = 256


class Broker:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._wakeups: set[asyncio.Event] = set()
        # Never more than the log keeps: a reader the log's pruning overtook is told so.
        self._recent: deque[Event] = deque(maxlen=min(RECENT, store_mod.EVENT_RETENTION))

    def publish(self, *events: Event) -> None:
        """Announces events the store has committed."""
        if events:
            self._recent.extend(events)
            for w in self._wakeups:
                w.set()

    def _after(self, cursor: int) -> list[Event] | None:
        """The events after `cursor` from memory ([] when it is the newest published); None
        when memory does not hold them all, contiguous: then the log is read."""
        recent = self._recent
        if not recent:
            return None
        first, last = recent[0].seq, recent[-1].seq
        if last == cursor:
            return []
        i = cursor + 1 - first
        # Published in commit order, seqs rise one by one; anything else goes to the log.
        if i < 0 or last - first != len(recent) - 1 or last < cursor:
            return None
        return [recent[k] for k in range(i, len(recent))]

    async def subscribe(self, after_seq: int | None = None) -> AsyncIterator[Event]:
        """Events with a seq above after_seq, then live ones; None means live only."""
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        try:
            cursor = self._store.last_seq() if after_seq is None else after_seq
            while True:
                page = self._after(cursor)
                if page is None:
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
