"""Persistence: sessions, their append-only event logs and their model-facing message history.

SQLAlchemy 2 on any URL (SQLite in WAL mode by default, PostgreSQL for hubs). All database work runs
on one dedicated thread, so the tornado loop never blocks and per-session `seq` numbers are handed
out by a single writer: monotonic, gap-free and committed before anyone hears of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    bindparam,
    create_engine,
    delete,
    insert,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session as DBSession, mapped_column, sessionmaker

log = logging.getLogger("jupyter_sessions.store")
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC and read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    phase: Mapped[str] = mapped_column(String(20))
    agent_state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    spec: Mapped[dict] = mapped_column(JSON)
    sandbox: Mapped[str] = mapped_column(String(20))
    isolated: Mapped[int] = mapped_column(Integer, default=1)
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    started: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    stopped: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[dict] = mapped_column(JSON, default=dict)  # runtime bookkeeping (pending question, usage...)


class EventRow(Base):
    __tablename__ = "events"

    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    data: Mapped[dict] = mapped_column(JSON)


class MessageRow(Base):
    """Model-facing history: provider-neutral content blocks, one row per turn."""

    __tablename__ = "messages"

    session_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[list] = mapped_column(JSON)


# Prepared once so SQLAlchemy's compiled-statement cache serves every append.
_INSERT_EVENT = insert(EventRow)
_BUMP_SEQ = update(SessionRow).where(SessionRow.id == bindparam("sid")).values(last_seq=bindparam("seq"))


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest alembic revision (creates it on a new database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store:
    """Async facade over the database; every call runs on the store's single worker thread."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jupyter-sessions-db")
        self._seq: dict[str, int] = {}  # last seq per session (this process is the only writer)
        self._pending: list[tuple] = []
        self.lock_patience = 60.0  # seconds an append waits out a locked database before failing
        self._flusher: asyncio.Future | None = None

    async def _run(self, fn: Callable[[DBSession], T]) -> T:
        def work() -> T:
            with self._sessions() as db, db.begin():
                return fn(db)

        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def _run_core(self, fn: Callable[[Connection], T]) -> T:
        def work() -> T:
            with self.engine.begin() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def migrate(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, upgrade, self.engine)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.dispose)
        self._pool.shutdown(wait=False)

    # sessions -------------------------------------------------------------------------------
    async def insert_session(self, row: SessionRow) -> SessionRow:
        def fn(db: DBSession) -> SessionRow:
            db.add(row)
            return row

        return await self._run(fn)

    async def get_session(self, session_id: str) -> SessionRow | None:
        return await self._run(lambda db: db.get(SessionRow, session_id))

    async def list_sessions(self, owner: str | None = None) -> list[SessionRow]:
        def fn(db: DBSession) -> list[SessionRow]:
            q = select(SessionRow).order_by(SessionRow.created.desc())
            if owner is not None:
                q = q.where(SessionRow.owner == owner)
            return list(db.scalars(q))

        return await self._run(fn)

    async def update_session(self, session_id: str, **values: Any) -> None:
        await self._run(lambda db: db.execute(update(SessionRow).where(SessionRow.id == session_id).values(**values)))

    async def delete_session(self, session_id: str) -> bool:
        def fn(db: DBSession) -> bool:
            db.execute(delete(EventRow).where(EventRow.session_id == session_id))
            db.execute(delete(MessageRow).where(MessageRow.session_id == session_id))
            return db.execute(delete(SessionRow).where(SessionRow.id == session_id)).rowcount > 0

        self._seq.pop(session_id, None)
        return await self._run(fn)

    # events ---------------------------------------------------------------------------------
    async def append_event(
        self, session_id: str, type_: str, data: dict, session_values: dict | None = None
    ) -> EventRow:
        """Append one event with the next seq (and optionally update the session row).

        Appends are group-committed: whatever queued while the previous commit ran goes into the
        next transaction, in order. The returned row is committed.
        """
        fut: asyncio.Future[EventRow] = asyncio.get_running_loop().create_future()
        self._pending.append((session_id, type_, data, session_values, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                rows = await self._write_with_retry(batch)
            except Exception as e:
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (*_, fut), row in zip(batch, rows):
                if fut.done():
                    continue
                if isinstance(row, Exception):
                    fut.set_exception(row)
                else:
                    fut.set_result(row)

    async def _write_with_retry(self, batch: list) -> list:
        """Write a batch; a locked or busy database is waited out (with backoff) instead of losing events."""
        delay = 0.05
        deadline = asyncio.get_running_loop().time() + self.lock_patience
        while True:
            try:
                return await self._run_core(lambda conn: self._write_batch(conn, batch))
            except OperationalError as e:
                self._seq.clear()  # the cache may hold seqs of the rolled-back batch
                transient = "locked" in str(e) or "busy" in str(e)
                if not transient or asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("session store is locked; retrying in %.2f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception:
                self._seq.clear()
                raise

    def _write_batch(self, db: Connection, batch: list) -> list[EventRow | KeyError]:
        rows: list[EventRow | KeyError] = []
        for session_id, type_, data, session_values, _fut in batch:
            seq = self._seq.get(session_id)
            if seq is None:
                seq = db.scalar(select(SessionRow.last_seq).where(SessionRow.id == session_id))
                if seq is None:  # deleted meanwhile: this event has nowhere to go
                    rows.append(KeyError(session_id))
                    continue
            seq += 1
            self._seq[session_id] = seq
            ts = utcnow()
            db.execute(_INSERT_EVENT, {"session_id": session_id, "seq": seq, "type": type_, "ts": ts, "data": data})
            if session_values:
                db.execute(update(SessionRow).where(SessionRow.id == session_id).values(last_seq=seq, **session_values))
            else:
                db.execute(_BUMP_SEQ, {"sid": session_id, "seq": seq})
            rows.append(EventRow(session_id=session_id, seq=seq, type=type_, ts=ts, data=data))
        return rows

    async def events_after(self, session_id: str, after: int, limit: int = 1000) -> list[EventRow]:
        def fn(db: DBSession) -> list[EventRow]:
            q = (
                select(EventRow)
                .where(EventRow.session_id == session_id, EventRow.seq > after)
                .order_by(EventRow.seq)
                .limit(limit)
            )
            return list(db.scalars(q))

        return await self._run(fn)

    def events_sync(self, session_id: str) -> list[dict]:
        """Every event of a session, read on the caller's thread: for the contents pre-save hook,
        which jupyter_server calls synchronously."""
        with self._sessions() as db:
            rows = db.scalars(select(EventRow).where(EventRow.session_id == session_id).order_by(EventRow.seq))
            return [{"seq": r.seq, "type": r.type, "ts": r.ts.isoformat(), "data": r.data} for r in rows]

    # message history ------------------------------------------------------------------------
    async def append_message(self, session_id: str, role: str, content: list[dict]) -> int:
        def fn(db: DBSession) -> int:
            idx = db.scalar(select(func.coalesce(func.max(MessageRow.idx), -1)).where(
                MessageRow.session_id == session_id)) + 1
            db.add(MessageRow(session_id=session_id, idx=idx, role=role, content=content))
            return idx

        return await self._run(fn)

    async def replace_message(self, session_id: str, idx: int, role: str, content: list[dict]) -> None:
        await self._run(lambda db: db.merge(MessageRow(session_id=session_id, idx=idx, role=role, content=content)))

    async def load_messages(self, session_id: str) -> list[dict]:
        def fn(db: DBSession) -> list[dict]:
            q = select(MessageRow).where(MessageRow.session_id == session_id).order_by(MessageRow.idx)
            return [{"role": m.role, "content": m.content} for m in db.scalars(q)]

        return await self._run(fn)


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
