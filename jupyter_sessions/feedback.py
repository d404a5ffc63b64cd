"""Thumbs up/down on agent messages: stored locally, recorded on the session, scored in Langfuse.

`record` always stores the rating (one row per session, message and user: changing it updates the
row) and appends a FEEDBACK_RECORDED event so every view sees it. When Langfuse is configured the
rating also becomes a Langfuse score on the trace of the run that produced the message (trace ids
derive from the run id, see tracing.trace_id_for_run) with session, message, user and workflow in
its metadata.

Delivery goes through the `outbox` table: a worker sends due items with the SDK's API client,
retries transport errors, 5xx, 429 and auth failures with exponential backoff (the schedule is
stored, so it survives restarts) and gives up on other 4xx. Each score has a fixed id per (session,
message, user): a changed rating replaces the pending payload, and Langfuse upserts by id, so a
score is never counted twice even if a send is repeated after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .feedback_store import FeedbackStore
from .tracing import trace_id_for_run

log = logging.getLogger("jupyter_sessions.feedback")

FEEDBACK_RECORDED = "FEEDBACK_RECORDED"
SCORE_KIND = "langfuse-score"
SCORE_NAME = "user-feedback"
_NS = uuid.UUID("6f1c7a52-3a0e-4d55-9a43-1f3f0b8f4c11")


class FeedbackIn(BaseModel):
    """A rating of one agent message."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    message_id: str = Field(min_length=1, max_length=200, description="the agent message (TEXT_MESSAGE_START messageId)")
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=5000)


class Feedback(BaseModel):
    """A stored rating and where its Langfuse score stands."""

    session_id: str
    message_id: str
    user: str
    rating: Literal["up", "down"]
    comment: str | None = None
    run_id: str | None = None
    trace_id: str | None = Field(default=None, description="Langfuse trace of the run that produced the message")
    score_id: str
    created: datetime
    updated: datetime
    delivery: Literal["pending", "sent", "failed", "disabled"] = "disabled"


class FeedbackList(BaseModel):
    feedback: list[Feedback]


class UnknownMessage(LookupError):
    """The session has no agent message with this id."""


def score_id(session_id: str, message_id: str, user: str) -> str:
    return str(uuid.uuid5(_NS, f"{session_id}\x00{message_id}\x00{user}"))


async def find_run(events, session_id: str, message_id: str) -> str | None:
    """The run whose stream carried the agent message; UnknownMessage if no such message.

    Returns None for a message outside any run (it has no trace).
    """
    run: str | None = None
    after = 0
    while batch := await events.replay(session_id, after):
        for e in batch:
            t, d = e.type, e.data
            if t == "RUN_STARTED":
                run = d.get("runId")
            elif t in ("RUN_FINISHED", "RUN_ERROR"):
                run = None
            elif t == "TEXT_MESSAGE_START" and d.get("messageId") == message_id:
                return run
        after = batch[-1].seq
    raise UnknownMessage(message_id)


class FeedbackService:
    """Ratings, their events and their delivery to Langfuse."""

    def __init__(self, store, events, client=None, *, base_delay: float = 2.0, max_delay: float = 3600.0,
                 max_attempts: int = 30, lease: float = 120.0, poll_interval: float = 30.0,
                 send_timeout: float = 10.0):
        self.db = FeedbackStore(store)
        self.events = events
        self.client = client  # a langfuse.Langfuse or None (then nothing is sent)
        self.base_delay, self.max_delay, self.max_attempts = base_delay, max_delay, max_attempts
        self.lease, self.poll_interval, self.send_timeout = lease, poll_interval, send_timeout
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.client is not None

    # recording --------------------------------------------------------------------------------
    async def record(self, row, body: FeedbackIn, user: str) -> Feedback:
        """Store (or update) the rating, emit FEEDBACK_RECORDED, queue the score."""
        run_id = await find_run(self.events, row.id, body.message_id)
        trace_id = trace_id_for_run(row.id, run_id) if run_id else None
        sid = score_id(row.id, body.message_id, user)
        stored, updated = await self.db.upsert_feedback(
            session_id=row.id, message_id=body.message_id, user=user, rating=body.rating, comment=body.comment,
            run_id=run_id, trace_id=trace_id, score_id=sid)
        delivery = "disabled"
        if self.enabled:
            workflow = (row.spec or {}).get("workflow")
            metadata = {"session_id": row.id, "message_id": body.message_id, "user_id": user, "run_id": run_id,
                        "workflow": workflow, "model": (row.spec or {}).get("model"), "rating": body.rating,
                        "source": "jupyter-sessions"}
            payload: dict[str, Any] = {
                "id": sid, "name": SCORE_NAME, "value": 1.0 if body.rating == "up" else 0.0, "dataType": "BOOLEAN",
                "traceId": trace_id, "comment": body.comment or None,
                "metadata": {k: v for k, v in metadata.items() if v is not None},
                "timestamp": stored["updated"].astimezone(timezone.utc).isoformat(),
            }
            await self.db.enqueue(sid, SCORE_KIND, {k: v for k, v in payload.items() if v is not None})
            delivery = "pending"
            self._wake.set()
        await self.events.append(row.id, FEEDBACK_RECORDED, {
            "message_id": body.message_id, "rating": body.rating, "comment": body.comment, "user": user,
            "run_id": run_id, "trace_id": trace_id, "score_id": sid, "updated": updated})
        return Feedback(**stored, delivery=delivery)

    async def list(self, session_id: str) -> list[Feedback]:
        out = []
        for f in await self.db.list_feedback(session_id):
            item = await self.db.outbox_item(f["score_id"]) if self.enabled else None
            out.append(Feedback(**f, delivery=item["status"] if item else "disabled"))
        return out

    # delivery ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Run the outbox worker (idempotent); it picks up what a previous server left."""
        if self.enabled and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._worker())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _worker(self) -> None:
        while True:
            try:
                await self.deliver_due()
                nxt = await self.db.next_due(SCORE_KIND)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("feedback outbox pass failed")
                nxt = None
            wait = self.poll_interval
            if nxt is not None:
                wait = max(0.05, min(wait, (nxt - datetime.now(timezone.utc)).total_seconds()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def _delay(self, attempts: int) -> float:
        return min(self.base_delay * 2 ** (attempts - 1), self.max_delay) * random.uniform(0.8, 1.0)

    async def deliver_due(self) -> int:
        """One pass over due outbox items; returns how many were delivered."""
        if not self.enabled:
            return 0
        async with self._lock:
            sent = 0
            now = datetime.now(timezone.utc)
            for item in await self.db.claim_due(SCORE_KIND, now, self.lease):
                attempts = item["attempts"] + 1
                try:
                    await asyncio.to_thread(self._send, item["payload"])
                except _Permanent as e:
                    log.warning("Langfuse rejected feedback score %s: %s", item["id"], e)
                    await self.db.mark_failed(item["id"], item["version"], attempts, str(e))
                except Exception as e:  # transport errors, 5xx, 429, auth: try again later
                    err = f"{type(e).__name__}: {e}"
                    if attempts >= self.max_attempts:
                        await self.db.mark_failed(item["id"], item["version"], attempts, f"gave up: {err}")
                    else:
                        when = datetime.now(timezone.utc) + timedelta(seconds=self._delay(attempts))
                        await self.db.mark_retry(item["id"], item["version"], attempts, when, err)
                        log.info("feedback score %s not delivered (attempt %d, next at %s): %s",
                                 item["id"], attempts, when.isoformat(timespec="seconds"), err)
                else:
                    await self.db.mark_sent(item["id"], item["version"], attempts)
                    sent += 1
            return sent

    def _send(self, payload: dict) -> None:
        """POST /api/public/scores through the SDK's API client (raises on anything but acceptance)."""
        from langfuse.api.core import ApiError
        from langfuse.api.scores.types.create_score_batch_results import CreateScoreBatchResults

        try:
            resp = self.client.api.scores.create(
                request=[payload],  # JSON-ready API field names, as the SDK's own score consumer sends them
                request_options={"max_retries": 0, "timeout_in_seconds": int(self.send_timeout)})
        except ApiError as e:
            status = e.status_code
            if status is not None and 400 <= status < 500 and status not in (401, 403, 408, 409, 429):
                raise _Permanent(f"HTTP {status}: {e.body}") from None
            raise
        if isinstance(resp, CreateScoreBatchResults) and resp.rejected:
            raise _Permanent("; ".join(err.message for err in resp.errors) or "rejected")


class _Permanent(Exception):
    """Langfuse refused the score for good (bad request); retrying would not help."""
