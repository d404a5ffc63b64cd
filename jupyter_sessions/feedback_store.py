"""Tables of the feedback and export features: ratings, the delivery outbox, Drive tokens.

ORM classes on the store's `Base` (schema by migrations/versions/0002_feedback.py) and an async
facade that runs on the Store's single database thread like every other query.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, delete, func, select, update
from sqlalchemy.orm import Mapped, Session as DBSession, mapped_column

from .store import Base, Store, utcnow


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class FeedbackRow(Base):
    """One user's rating of one agent message (a changed rating updates this row)."""

    __tablename__ = "feedback"

    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    rating: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    trace_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score_id: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxRow(Base):
    """Something to deliver to an outside service, retried with backoff until it is accepted.

    `id` is the idempotency key the receiver sees (a Langfuse score id): a new version of the same
    item replaces the pending payload instead of queueing a second item.
    """

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(10), index=True)  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DriveTokenRow(Base):
    """A user's Google Drive grant (server-side only: never sent to a client or the sandbox)."""

    __tablename__ = "drive_tokens"

    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    refresh_token: Mapped[str] = mapped_column(Text)
    access_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    expiry: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    scopes: Mapped[str] = mapped_column(Text, default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _plain(row: Any) -> dict:
    out = {c.key: getattr(row, c.key) for c in row.__table__.columns}
    return {k: aware(v) if isinstance(v, datetime) else v for k, v in out.items()}


class FeedbackStore:
    """Async access to the tables above (on the Store's database thread)."""

    def __init__(self, store: Store):
        self.store = store

    async def _run(self, fn):
        return await self.store._run(fn)  # the store's single writer thread

    # ratings ----------------------------------------------------------------------------------
    async def upsert_feedback(self, *, session_id: str, message_id: str, user: str, rating: str,
                              comment: str | None, run_id: str | None, trace_id: str | None,
                              score_id: str) -> tuple[dict, bool]:
        """Insert or update a rating; returns (row, updated-an-existing-one)."""
        now = utcnow()

        def fn(db: DBSession) -> tuple[dict, bool]:
            row = db.get(FeedbackRow, (session_id, message_id, user))
            existed = row is not None
            if row is None:
                row = FeedbackRow(session_id=session_id, message_id=message_id, user=user, created=now,
                                  score_id=score_id)
                db.add(row)
            row.rating, row.comment, row.run_id, row.trace_id, row.updated = rating, comment, run_id, trace_id, now
            db.flush()
            return _plain(row), existed

        return await self._run(fn)

    async def list_feedback(self, session_id: str) -> list[dict]:
        def fn(db: DBSession) -> list[dict]:
            q = select(FeedbackRow).where(FeedbackRow.session_id == session_id).order_by(FeedbackRow.created)
            return [_plain(r) for r in db.scalars(q)]

        return await self._run(fn)

    # outbox -----------------------------------------------------------------------------------
    async def enqueue(self, item_id: str, kind: str, payload: dict) -> int:
        """Queue `payload` under `item_id`; a pending or delivered item gets the new version. Returns it."""
        now = utcnow()

        def fn(db: DBSession) -> int:
            row = db.get(OutboxRow, item_id)
            if row is None:
                db.add(OutboxRow(id=item_id, kind=kind, payload=payload, version=1, status="pending", attempts=0,
                                 next_attempt=now, created=now))
                return 1
            row.payload, row.version, row.status = payload, row.version + 1, "pending"
            row.attempts, row.next_attempt, row.last_error, row.sent = 0, now, None, None
            return row.version

        return await self._run(fn)

    async def claim_due(self, kind: str, now: datetime, lease: float, limit: int = 50) -> list[dict]:
        """Pending items due by `now`, each leased for `lease` seconds so no other worker sends it meanwhile."""
        def fn(db: DBSession) -> list[dict]:
            q = (select(OutboxRow).where(OutboxRow.kind == kind, OutboxRow.status == "pending",
                                         OutboxRow.next_attempt <= now)
                 .order_by(OutboxRow.next_attempt).limit(limit))
            claimed = []
            for row in db.scalars(q):
                hit = db.execute(update(OutboxRow).where(
                    OutboxRow.id == row.id, OutboxRow.version == row.version, OutboxRow.status == "pending",
                    OutboxRow.next_attempt == row.next_attempt,
                ).values(next_attempt=now + timedelta(seconds=lease))).rowcount
                if hit:
                    claimed.append(_plain(row))
            return claimed

        return await self._run(fn)

    async def next_due(self, kind: str) -> datetime | None:
        def fn(db: DBSession) -> datetime | None:
            return db.scalar(select(func.min(OutboxRow.next_attempt)).where(
                OutboxRow.kind == kind, OutboxRow.status == "pending"))

        return aware(await self._run(fn))

    async def mark_sent(self, item_id: str, version: int, attempts: int) -> bool:
        """Delivered: only the version that was sent (a newer one stays pending)."""
        now = utcnow()
        return await self._run(lambda db: db.execute(update(OutboxRow).where(
            OutboxRow.id == item_id, OutboxRow.version == version).values(
            status="sent", sent=now, attempts=attempts, last_error=None)).rowcount > 0)

    async def mark_retry(self, item_id: str, version: int, attempts: int, next_attempt: datetime, error: str) -> None:
        await self._run(lambda db: db.execute(update(OutboxRow).where(
            OutboxRow.id == item_id, OutboxRow.version == version).values(
            attempts=attempts, next_attempt=next_attempt, last_error=error[:2000])))

    async def mark_failed(self, item_id: str, version: int, attempts: int, error: str) -> None:
        await self._run(lambda db: db.execute(update(OutboxRow).where(
            OutboxRow.id == item_id, OutboxRow.version == version).values(
            status="failed", attempts=attempts, last_error=error[:2000])))

    async def outbox_item(self, item_id: str) -> dict | None:
        def fn(db: DBSession) -> dict | None:
            row = db.get(OutboxRow, item_id)
            return _plain(row) if row else None

        return await self._run(fn)

    # Drive tokens -----------------------------------------------------------------------------
    async def get_drive_token(self, user: str) -> dict | None:
        def fn(db: DBSession) -> dict | None:
            row = db.get(DriveTokenRow, user)
            return _plain(row) if row else None

        return await self._run(fn)

    async def put_drive_token(self, user: str, *, refresh_token: str | None = None, access_token: str | None,
                              expiry: datetime | None, scopes: str | None = None) -> None:
        now = utcnow()

        def fn(db: DBSession) -> None:
            row = db.get(DriveTokenRow, user)
            if row is None:
                if not refresh_token:
                    raise ValueError("a new Drive grant needs a refresh token")
                row = DriveTokenRow(user=user, created=now, scopes=scopes or "")
                db.add(row)
            if refresh_token:
                row.refresh_token = refresh_token
            if scopes is not None:
                row.scopes = scopes
            row.access_token, row.expiry, row.updated = access_token, expiry, now

        await self._run(fn)

    async def delete_drive_token(self, user: str) -> bool:
        return await self._run(lambda db: db.execute(delete(DriveTokenRow).where(DriveTokenRow.user == user)).rowcount > 0)
