"""Admission control: how many sandboxes may run at once, per user and per workspace.

A session beyond the limit waits (Pending, with the reason in its events) until another session's
sandbox is released; it is never started over the limit.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable


class Capacity:
    def __init__(self, per_user: int = 0, per_workspace: dict[str, int] | None = None):
        self.per_user = per_user  # 0 = no limit
        self.per_workspace = per_workspace or {}
        self._active: dict[str, tuple[str, str]] = {}  # session id -> (owner, workspace)
        self._changed = asyncio.Condition()

    def _blocked(self, owner: str, workspace: str) -> str | None:
        users = sum(1 for o, _ in self._active.values() if o == owner)
        if self.per_user and users >= self.per_user:
            return f"waiting for capacity: {owner} already has {users} running sandboxes (limit {self.per_user})"
        limit = self.per_workspace.get(workspace, 0)
        spaces = sum(1 for _, w in self._active.values() if w == workspace)
        if limit and spaces >= limit:
            return f"waiting for capacity: workspace {workspace!r} has {spaces} running sandboxes (limit {limit})"
        return None

    async def acquire(
        self, sid: str, owner: str, workspace: str, on_wait: Callable[[str], Awaitable[None]]
    ) -> None:
        """Reserve a slot for `sid`, calling `on_wait(reason)` once if it has to queue."""
        async with self._changed:
            if sid in self._active:
                return
            told = False
            while (reason := self._blocked(owner, workspace)) is not None:
                if not told:
                    told = True
                    await on_wait(reason)
                await self._changed.wait()
            self._active[sid] = (owner, workspace)

    def reserve(self, sid: str, owner: str, workspace: str) -> None:
        """Count a sandbox that already exists (re-attached after a restart), limit or not."""
        self._active[sid] = (owner, workspace)

    async def release(self, sid: str) -> None:
        async with self._changed:
            if self._active.pop(sid, None) is not None:
                self._changed.notify_all()

    def holds(self, sid: str) -> bool:
        return sid in self._active
