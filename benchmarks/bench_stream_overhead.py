"""Per-delta streaming overhead: fake Anthropic SSE -> agent loop -> event log -> a live subscriber.

Baseline, measured in the same run: the `anthropic` SDK reading the same fake server directly. The
fake server runs on its own thread and event loop (like a remote model) and stamps every text delta
with the time it was written; each side records "now - stamp" when the delta reaches it. Deltas are
paced (a real model sends tens per second), so the numbers are per-delta latency, not backlog.
A second, unpaced pass shows throughput (deltas/s) both ways.

    python benchmarks/bench_stream_overhead.py [--deltas 400] [--pace-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import anthropic  # noqa: E402
from fakes import SSE, AgentHarness  # noqa: E402
from fakes.anthropic_server import FakeAnthropic, frame  # noqa: E402

from jupyter_sessions.agent.context import ProviderSettings  # noqa: E402
from jupyter_sessions.sandbox.base import Limits  # noqa: E402
from jupyter_sessions.sandbox.local import LocalBackend  # noqa: E402
from jupyter_sessions.store import Store  # noqa: E402


def stamped_reply(n: int, pace: float) -> SSE:
    """A text message of n deltas, each carrying its send time in ns."""
    frames: list = [frame("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}),
        frame("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})]
    for _ in range(n):
        if pace:
            frames.append(pace)
        frames.append(lambda: frame("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "text_delta", "text": f"{time.perf_counter_ns()} "}}))
    frames += [frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
               frame("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                        "stop_sequence": None},
                                       "usage": {"output_tokens": n}}),
               frame("message_stop", {"type": "message_stop"})]
    return SSE(frames)


class ServerThread:
    """The fake model server on its own loop, so its pacing is not disturbed by the client's work."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeAnthropic = self.call(FakeAnthropic().start())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def push(self, reply: SSE) -> None:
        self.loop.call_soon_threadsafe(self.fake.push, reply)

    def close(self) -> None:
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def stamps_of(delta: str) -> list[int]:
    """A delta event may carry several model deltas (coalesced while a commit was in flight)."""
    return [int(x) for x in delta.split()]


async def baseline(srv: ServerThread, n: int, pace: float) -> tuple[list[float], float]:
    srv.push(stamped_reply(n, pace))
    client = anthropic.AsyncAnthropic(api_key="bench", base_url=srv.fake.url, max_retries=0)
    lat: list[float] = []
    t0 = time.perf_counter()
    stream = await client.messages.create(model="claude-sonnet-4-5", max_tokens=100, stream=True,
                                          messages=[{"role": "user", "content": "go"}])
    async with stream:
        async for ev in stream:
            if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                now = time.perf_counter_ns()
                lat.extend((now - st) / 1e3 for st in stamps_of(ev.delta.text))
    elapsed = time.perf_counter() - t0
    await client.close()
    return lat, elapsed


async def ours(srv: ServerThread, n: int, pace: float, tmp: Path, k: int) -> tuple[list[float], float, int]:
    store = Store(f"sqlite:///{tmp}/bench-{k}.sqlite")
    await store.migrate()
    sb = LocalBackend().sandbox("bench", tmp / f"ws-{k}", Limits())
    await sb.start()
    h = AgentHarness(store, sb, providers=ProviderSettings(anthropic_api_key="bench", anthropic_base_url=srv.fake.url),
                     state={}, sid=f"bench-{k}")
    await h.create()
    after = (await store.get_session(h.sid)).last_seq
    lat: list[float] = []
    count = [0]

    async def subscriber() -> None:
        async for ev in h.events.follow(h.sid, after):
            if ev.type == "TEXT_MESSAGE_CONTENT":
                count[0] += 1
                now = time.perf_counter_ns()
                lat.extend((now - st) / 1e3 for st in stamps_of(ev.data["delta"]))
            elif ev.type in ("RUN_FINISHED", "RUN_ERROR"):
                if ev.type == "RUN_ERROR":
                    raise RuntimeError(ev.data["message"])
                return

    srv.push(stamped_reply(n, pace))
    sub = asyncio.ensure_future(subscriber())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    await h.post("go")
    await sub
    elapsed = time.perf_counter() - t0
    await h.agent.shutdown("bench done")
    await store.close()
    return lat, elapsed, count[0]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def main(n: int, pace_ms: float) -> None:
    srv = ServerThread()
    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    try:
        await baseline(srv, 20, 0)  # warm up imports and connections
        await ours(srv, 20, 0, tmp, 0)
        pace = pace_ms / 1000
        base_lat, _ = await baseline(srv, n, pace)
        our_lat, _, paced_events = await ours(srv, n, pace, tmp, 1)
        _, base_t = await baseline(srv, n, 0)
        _, our_t, our_events = await ours(srv, n, 0, tmp, 2)
    finally:
        srv.close()
    assert len(base_lat) == n and len(our_lat) == n, (len(base_lat), len(our_lat))
    b50, b99, o50, o99 = pct(base_lat, 50), pct(base_lat, 99), pct(our_lat, 50), pct(our_lat, 99)
    print(f"per-delta latency, {n} deltas paced {pace_ms:g} ms (microseconds, send -> receive)")
    print(f"  baseline (SDK reads the fake server):   p50 {b50:8.0f}   p99 {b99:8.0f}")
    print(f"  ours (agent -> event log -> subscriber): p50 {o50:8.0f}   p99 {o99:8.0f}")
    print(f"  overhead per delta:                      p50 {o50 - b50:8.0f}   p99 {o99 - b99:8.0f}")
    print(f"  ratio ours/baseline:                     p50 {o50 / b50:8.2f}   p99 {o99 / b99:8.2f}")
    print(f"  ({paced_events} delta events for {n} model deltas)")
    print(f"throughput, {n} deltas unpaced: baseline {n / base_t:8.0f} deltas/s, ours {n / our_t:8.0f} deltas/s, "
          f"ratio ours/baseline {base_t / our_t:.2f} ({our_events} delta events: coalesced while commits ran)")
    print(f"mean latency: baseline {statistics.mean(base_lat):.0f} us, ours {statistics.mean(our_lat):.0f} us")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deltas", type=int, default=400)
    ap.add_argument("--pace-ms", type=float, default=2.0)
    args = ap.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)  # the SDK warns about the fake's model id
    asyncio.run(main(args.deltas, args.pace_ms))
