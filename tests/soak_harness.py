"""Load and soak: many replay-provider sessions on a real server, websocket subscribers that
reconnect at random, a driver that keeps every agent busy. Used by tests/test_soak.py (bounded, in
CI) and benchmarks/soak.py (longer, by flag).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from server_process import Server

ROUNDS = 400  # user messages a session can take before its recording runs out


def write_transcript(folder: Path) -> None:
    """Each user message: one tool step (a real bash in the sandbox), then a short answer."""
    steps = []
    for i in range(ROUNDS):
        steps.append([{"type": "text", "text": f"Round {i}: checking."},
                      {"type": "tool_use", "name": "bash", "input": {"command": f"echo round {i}"}}])
        steps.append([{"type": "text", "text": f"Round {i} done."}])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "soak.json").write_text(json.dumps({"delay": 0.002, "steps": steps}))


@dataclass
class Stats:
    errors: list[str] = field(default_factory=list)
    gaps: int = 0
    duplicates: int = 0
    events: int = 0
    reconnects: int = 0
    messages: int = 0
    latencies: list[float] = field(default_factory=list)
    rss_start_kb: int = 0
    rss_end_kb: int = 0

    def summary(self) -> dict:
        lat = sorted(self.latencies) or [0.0]
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        return {"errors": len(self.errors), "gaps": self.gaps, "duplicates": self.duplicates,
                "events": self.events, "messages": self.messages, "reconnects": self.reconnects,
                "p50_ms": round(p(0.50), 1), "p99_ms": round(p(0.99), 1),
                "rss_start_mb": round(self.rss_start_kb / 1024, 1), "rss_end_mb": round(self.rss_end_kb / 1024, 1)}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Soak:
    def __init__(self, server: Server, sessions: int, seconds: float, seed: int = 7):
        self.srv, self.n, self.seconds = server, sessions, seconds
        self.base = f"http://127.0.0.1:{server.port}/jupyter-sessions/api"
        self.headers = {"Authorization": f"token {server.token}"}
        self.http = AsyncHTTPClient(max_clients=50)
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.seen: dict[str, list[int]] = {}
        self.idle: dict[str, asyncio.Event] = {}

    async def call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = HTTPRequest(self.base + path, method=method, headers=self.headers, request_timeout=120,
                          body=json.dumps(body) if body is not None else (b"{}" if method == "POST" else None))
        try:
            resp = await self.http.fetch(req)
        except HTTPClientError as e:
            self.stats.errors.append(f"{method} {path}: {e.code} {e.response.body[:200] if e.response else ''}")
            raise
        return json.loads(resp.body) if resp.body else {}

    async def follow(self, sid: str, stop: asyncio.Event) -> None:
        """Subscribe, check seq continuity, reconnect at random with after=<last seen>."""
        last = 0
        seen = self.seen[sid]
        while not stop.is_set():
            url = self.base.replace("http", "ws", 1) + f"/sessions/{sid}/stream?after={last}"
            ws = await websocket_connect(HTTPRequest(url, headers=self.headers))
            connected = time.time()
            life = time.monotonic() + self.rng.uniform(0.5, 8)
            try:
                while not stop.is_set() and time.monotonic() < life:
                    try:
                        msg = await asyncio.wait_for(ws.read_message(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    if msg is None:
                        self.stats.errors.append(f"{sid}: stream closed by the server")
                        return
                    ev = json.loads(msg)
                    if ev["seq"] <= last:
                        self.stats.duplicates += 1
                        continue
                    if ev["seq"] != last + 1:
                        self.stats.gaps += 1
                    last = ev["seq"]
                    seen.append(last)
                    self.stats.events += 1
                    ts = datetime.fromisoformat(ev["ts"].replace("Z", "+00:00")).timestamp()
                    if ts >= connected:  # live events only: replayed ones are old on purpose
                        self.stats.latencies.append(max(0.0, time.time() - ts))
                    if ev["type"] == "RUN_ERROR":
                        self.stats.errors.append(f"{sid}: RUN_ERROR {ev['data'].get('message')}")
                    if ev["type"] == "AGENT_STATE_CHANGED" and ev["data"].get("state") == "idle":
                        self.idle[sid].set()
            finally:
                ws.close()
            self.stats.reconnects += 1

    async def drive(self, sid: str, stop: asyncio.Event) -> None:
        """Keep the agent busy: a new message whenever it goes idle."""
        i = 0
        while not stop.is_set() and i < ROUNDS:
            self.idle[sid].clear()
            await self.call("POST", f"/sessions/{sid}/messages", {"text": f"message {i}"})
            self.stats.messages += 1
            i += 1
            while not stop.is_set() and not self.idle[sid].is_set():
                try:
                    await asyncio.wait_for(self.idle[sid].wait(), 0.5)
                except asyncio.TimeoutError:
                    pass

    async def run(self) -> Stats:
        sids = []
        for _ in range(self.n):
            s = await self.call("POST", "/sessions", {"model": "replay:soak"})
            sids.append(s["id"])
            self.seen[s["id"]] = []
            self.idle[s["id"]] = asyncio.Event()
        deadline = time.monotonic() + 300
        while True:
            listed = (await self.call("GET", "/sessions"))["sessions"]
            if all(x["phase"] == "Running" and x["agent_state"] == "idle" for x in listed):
                break
            if time.monotonic() > deadline:
                self.stats.errors.append("sessions did not all reach Running")
                return self.stats
            await asyncio.sleep(0.5)
        self.stats.rss_start_kb = rss_kb(self.srv.proc.pid)
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(self.follow(sid, stop)) for sid in sids]
        tasks += [asyncio.ensure_future(self.drive(sid, stop)) for sid in sids]
        await asyncio.sleep(self.seconds)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(2)  # let in-flight runs settle before reading the logs
        self.stats.rss_end_kb = rss_kb(self.srv.proc.pid)
        for sid in sids:  # what each subscriber saw is exactly the stored log, in order
            stored = []
            after = 0
            while batch := (await self.call("GET", f"/sessions/{sid}/events?after={after}"))["events"]:
                stored += [e["seq"] for e in batch]
                after = batch[-1]["seq"]
            if stored != list(range(1, len(stored) + 1)):
                self.stats.gaps += 1
            if self.seen[sid] != stored[: len(self.seen[sid])]:
                self.stats.errors.append(f"{sid}: subscriber order differs from the stored log")
        return self.stats


def run_soak(tmp: Path, sessions: int, seconds: float) -> Stats:
    write_transcript(tmp / "replays")
    srv = Server(tmp, sandbox="local", replay_dir=str(tmp / "replays"), watch_interval=5.0)
    srv.start()
    try:
        return asyncio.run(Soak(srv, sessions, seconds).run())
    finally:
        srv.stop()


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0
