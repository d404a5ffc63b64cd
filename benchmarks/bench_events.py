"""Event log throughput: append (SQLite commit) + broadcast to one websocket subscriber.

Baseline, measured in the same run: a bare tornado websocket echo (no storage) pushing the same
number of messages of the same size. Prints events/s for both and the ratio ours/baseline.

    python benchmarks/bench_events.py [--events 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from pathlib import Path

import tornado.web
import tornado.websocket

from jupyter_sessions.events import EventLog
from jupyter_sessions.store import SessionRow, Store, utcnow

PAYLOAD = {"messageId": "m-1", "delta": "x" * 40}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EchoPush(tornado.websocket.WebSocketHandler):
    """Baseline: push n messages as fast as tornado can."""

    async def open(self):
        n = int(self.get_query_argument("n"))
        for i in range(n):
            await self.write_message(json.dumps({"seq": i + 1, "type": "X", "data": PAYLOAD}))


class Follow(tornado.websocket.WebSocketHandler):
    """Ours: the same loop as routes.StreamHandler (EventLog.follow -> write_message)."""

    def initialize(self, log: EventLog):
        self.log = log

    def open(self):
        asyncio.ensure_future(self.pump())

    async def pump(self):
        async for ev in self.log.follow("s-bench", 0):
            await self.write_message(ev.model_dump_json())


async def receive(url: str, n: int) -> float:
    ws = await tornado.websocket.websocket_connect(url)
    t0 = time.perf_counter()
    for _ in range(n):
        assert await ws.read_message() is not None
    dt = time.perf_counter() - t0
    ws.close()
    return dt


async def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    store = Store(f"sqlite:///{tmp / 'bench.db'}")
    await store.migrate()
    await store.insert_session(SessionRow(id="s-bench", owner="b", display_name="b", phase="Running",
                                          spec={}, sandbox="local", created=utcnow(), state={}))
    log = EventLog(store)
    port = free_port()
    app = tornado.web.Application([(r"/echo", EchoPush), (r"/follow", Follow, {"log": log})])
    server = app.listen(port, address="127.0.0.1")

    base_dt = await receive(f"ws://127.0.0.1:{port}/echo?n={n}", n)

    async def produce():
        for _ in range(n):
            await log.append("s-bench", "TEXT_MESSAGE_CONTENT", PAYLOAD)

    ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/follow")
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    producer = asyncio.ensure_future(produce())
    for _ in range(n):
        assert await ws.read_message() is not None
    ours_dt = time.perf_counter() - t0
    await producer
    ws.close()
    server.stop()
    await store.close()

    ours, base = n / ours_dt, n / base_dt
    print(f"events: {n}")
    print(f"baseline tornado ws push: {base:,.0f} msg/s")
    print(f"event log append+broadcast (SQLite WAL commit each) to 1 ws subscriber: {ours:,.0f} events/s")
    print(f"ratio ours/baseline: {ours / base:.3f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=3000)
    asyncio.run(main(p.parse_args().events))
