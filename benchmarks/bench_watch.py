"""The side panel's list: the session watch (push) against polling GET /sessions (the old way).

A real jupyter server subprocess with N sessions. Ours: the time from sending a rename to the
watch message that carries it (the rename's own round trip included), and the bytes that message
costs. Baseline, measured in the same run: one GET /sessions, which a poller pays every interval
whether or not anything changed, and whose news is on average half an interval old on top.

    python benchmarks/bench_watch.py [--sessions 50] [--changes 200] [--interval 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_process import Server  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def measure(srv: Server, changes: int) -> dict:
    base = f"127.0.0.1:{srv.port}/jupyter-sessions/api"
    auth = {"Authorization": f"token {srv.token}"}
    http = AsyncHTTPClient()
    ws = await websocket_connect(HTTPRequest(f"ws://{base}/sessions/watch", headers=auth))
    snapshot = json.loads(await ws.read_message())
    ids = [s["id"] for s in snapshot["sessions"]]

    push_ms, push_bytes = [], []
    for i in range(changes):
        sid = ids[i % len(ids)]
        name = f"renamed {i}"
        t0 = time.perf_counter()
        await http.fetch(f"http://{base}/sessions/{sid}", method="PATCH", headers=auth,
                         body=json.dumps({"display_name": name}))
        while True:
            msg = await ws.read_message()
            change = json.loads(msg)
            if change.get("session", {}).get("display_name") == name:
                break
        push_ms.append((time.perf_counter() - t0) * 1000)
        push_bytes.append(len(msg))
    ws.close()

    poll_ms, poll_bytes = [], 0
    for _ in range(changes):
        t0 = time.perf_counter()
        r = await http.fetch(f"http://{base}/sessions", headers=auth)
        poll_ms.append((time.perf_counter() - t0) * 1000)
        poll_bytes = len(r.body)
    return {"push_ms": push_ms, "push_bytes": statistics.mean(push_bytes), "poll_ms": poll_ms,
            "poll_bytes": poll_bytes, "sessions": len(ids)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--interval", type=float, default=3.0, help="the side panel's poll interval (s)")
    a = p.parse_args()
    srv = Server(Path(tempfile.mkdtemp()), "local")
    srv.start()
    try:
        for i in range(a.sessions):
            code, s = srv.call("POST", "sessions", body={"display_name": f"bench {i}", "model": "replay"})
            assert code == 201, s
        r = asyncio.run(measure(srv, a.changes))
    finally:
        srv.stop()
    push50, poll50 = statistics.median(r["push_ms"]), statistics.median(r["poll_ms"])
    stale = a.interval * 1000 / 2 + poll50
    print(f"{r['sessions']} sessions, {a.changes} renames")
    print(f"watch: rename -> list message p50 {push50:.1f} ms, p99 {pct(r['push_ms'], 99):.1f} ms, "
          f"{r['push_bytes']:.0f} bytes per change, nothing when nothing changes")
    print(f"poll:  GET /sessions p50 {poll50:.1f} ms, p99 {pct(r['poll_ms'], 99):.1f} ms, {r['poll_bytes']} bytes "
          f"every {a.interval:g} s; a change is seen after {stale:.0f} ms on average")
    print(f"ratio watch latency / one poll round trip: {push50 / poll50:.2f}; "
          f"/ average poll staleness: {push50 / stale:.4f}; bytes per change / per poll: "
          f"{r['push_bytes'] / r['poll_bytes']:.3f}")


if __name__ == "__main__":
    main()
