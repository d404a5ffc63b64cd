"""The event log: commit, then broadcast; replay from any seq, then follow live.

Event names for runs, text, tool calls and reasoning follow AG-UI; PHASE_CHANGED,
AGENT_STATE_CHANGED, QUESTION_*, MESSAGE_* and the repo/sandbox events are ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import AsyncIterator

from .models import Event
from .store import EventRow, Store

log = logging.getLogger("jupyter_sessions.events")

# Our own event types (AG-UI ones are written as literals by the agent).
PHASE_CHANGED = "PHASE_CHANGED"
AGENT_STATE_CHANGED = "AGENT_STATE_CHANGED"
MESSAGE_QUEUED = "MESSAGE_QUEUED"
SESSION_RENAMED = "SESSION_RENAMED"
REPO_CLONED = "REPO_CLONED"
REPO_CLONE_FAILED = "REPO_CLONE_FAILED"
SANDBOX_STARTED = "SANDBOX_STARTED"
SANDBOX_WARNING = "SANDBOX_WARNING"
SESSION_DELETED = "SESSION_DELETED"


def to_model(row: EventRow) -> Event:
    return Event(seq=row.seq, type=row.type, ts=row.ts, data=row.data)


class Subscription:
    """A live feed of one session's events; a bounded queue so a stuck client can't eat memory."""

    def __init__(self, maxsize: int = 10_000):
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False

    def push(self, ev: Event | None) -> None:
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            # The subscriber fell behind: close its feed; it reconnects with after=N and replays.
            self.overflowed = True


class SessionWatch:
    """Which sessions changed, for list views. Ids, not events: a burst of changes to one session
    is one entry, so a slow reader costs a set of ids, never a queue of events."""

    def __init__(self) -> None:
        self._changed: set[str] = set()
        self._wake = asyncio.Event()

    def push(self, session_id: str) -> None:
        self._changed.add(session_id)
        self._wake.set()

    async def next(self) -> set[str]:
        """The ids changed since the last call (waits for at least one)."""
        await self._wake.wait()
        self._wake.clear()
        changed, self._changed = self._changed, set()
        return changed


class EventLog:
    """Appends events durably and fans them out to subscribers of the session (and to watches of
    the session list when the session's row changed)."""

    def __init__(self, store: Store):
        self.store = store
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._watches: set[SessionWatch] = set()

    async def append(self, session_id: str, type_: str, data: dict | None = None, **session_values) -> Event:
        """Commit one event (and session-row changes), then broadcast it.

        The store group-commits and resolves appends in seq order, so broadcasts leave in seq order
        too; `follow` still fills any gap from the store, so a subscriber never sees one.
        """
        row = await self.store.append_event(session_id, type_, data or {}, session_values or None)
        ev = to_model(row)
        for sub in list(self._subs.get(session_id, ())):
            sub.push(ev)
        if session_values:
            self.touch(session_id)
        return ev

    def watch(self) -> SessionWatch:
        w = SessionWatch()
        self._watches.add(w)
        return w

    def unwatch(self, w: SessionWatch) -> None:
        self._watches.discard(w)

    def touch(self, session_id: str) -> None:
        """Tell list watches that a session's row changed (created, updated or deleted)."""
        for w in list(self._watches):
            w.push(session_id)

    def subscribe(self, session_id: str) -> Subscription:
        sub = Subscription()
        self._subs[session_id].add(sub)
        return sub

    def unsubscribe(self, session_id: str, sub: Subscription) -> None:
        subs = self._subs.get(session_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                self._subs.pop(session_id, None)

    def close_session(self, session_id: str) -> None:
        """End every live feed of a session (it was deleted)."""
        for sub in self._subs.pop(session_id, set()):
            sub.push(None)
        self.touch(session_id)

    async def replay(self, session_id: str, after: int, limit: int = 1000) -> list[Event]:
        return [to_model(r) for r in await self.store.events_after(session_id, after, limit)]

    async def follow(self, session_id: str, after: int) -> AsyncIterator[Event]:
        """Every event with seq > after: stored ones first, then live ones; no gaps, no duplicates.

        Subscribing before reading the store means nothing committed in between is missed; events
        seen in both are dropped by seq.
        """
        sub = self.subscribe(session_id)
        try:
            last = after
            while True:
                batch = await self.replay(session_id, last)
                for ev in batch:
                    last = ev.seq
                    yield ev
                if len(batch) < 1000:
                    break
            while True:
                ev = await sub.queue.get()
                if ev is None or sub.overflowed:
                    return
                if ev.seq <= last:
                    continue
                if ev.seq != last + 1:  # cannot happen with one writer; replay defensively
                    for missed in await self.replay(session_id, last):
                        if missed.seq >= ev.seq:
                            break
                        last = missed.seq
                        yield missed
                last = ev.seq
                yield ev
        finally:
            self.unsubscribe(session_id, sub)
