"""The store under pressure: a database locked by another process loses no event and no seq."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from jupyter_sessions.events import EventLog
from jupyter_sessions.store import SessionRow, Store, utcnow


async def test_locked_database_is_waited_out(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    await store.insert_session(SessionRow(id="s-1", owner="o", display_name="d", phase="Running", spec={},
                                          sandbox="local", created=utcnow(), state={}))
    log = EventLog(store)
    await log.append("s-1", "A", {"n": 0})
    locked, release = threading.Event(), threading.Event()

    def hold_lock():  # another process (a backup, a careless sqlite3 shell) takes the write lock
        con = sqlite3.connect(tmp_path / "s.db", timeout=1)
        con.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(10)
        con.rollback()
        con.close()

    t = threading.Thread(target=hold_lock)
    t.start()
    locked.wait(5)
    started = time.monotonic()
    pending = asyncio.ensure_future(asyncio.gather(*(log.append("s-1", "B", {"n": i}) for i in range(1, 6))))
    await asyncio.sleep(7)  # longer than SQLite's own busy timeout (5 s)
    assert not pending.done()
    release.set()
    results = await asyncio.wait_for(pending, 30)
    t.join()
    assert [e.seq for e in results] == [2, 3, 4, 5, 6] and time.monotonic() - started >= 7
    stored = await log.replay("s-1", 0)
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5, 6]
    assert [e.data["n"] for e in stored] == [0, 1, 2, 3, 4, 5]
    await store.close()
