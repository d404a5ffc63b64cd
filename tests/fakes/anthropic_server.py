"""A fake Anthropic Messages API: `POST /v1/messages` with `stream: true`, answered from a script.

Builders make the SSE event flow the real API sends (message_start, content blocks with deltas,
message_delta, message_stop, pings), plus mid-stream `error` events and HTTP errors with
retry-after, so the real `anthropic` SDK is exercised on the wire.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading

from . import CLOSE, SSE, HTTPError, ScriptedServer

__all__ = ["FakeAnthropic", "CLOSE", "SSE", "HTTPError", "text", "thinking", "tool_use", "reply", "frame",
           "error_frame", "overloaded", "rate_limited"]


def frame(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def text(s: str) -> dict:
    return {"type": "text", "text": s}


def thinking(s: str, signature: str = "sig-abc") -> dict:
    return {"type": "thinking", "thinking": s, "signature": signature}


def tool_use(name: str, input: dict, id: str | None = None) -> dict:
    return {"type": "tool_use", "id": id or f"toolu_{secrets.token_hex(6)}", "name": name, "input": input}


def _pieces(s: str, n: int = 3) -> list[str]:
    words = re.findall(r"\S+\s*|\s+", s) or [""]
    return ["".join(words[i:i + n]) for i in range(0, len(words), n)]


def block_frames(index: int, b: dict, pause: float = 0.0) -> list:
    out: list = []
    t = b["type"]
    if t == "text":
        out.append(frame("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {"type": "text", "text": ""}}))
        for p in _pieces(b["text"]):
            if pause:
                out.append(pause)
            out.append(frame("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "text_delta", "text": p}}))
    elif t == "thinking":
        out.append(frame("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
        for p in _pieces(b["thinking"]):
            out.append(frame("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "thinking_delta", "thinking": p}}))
        out.append(frame("content_block_delta", {"type": "content_block_delta", "index": index,
                                                 "delta": {"type": "signature_delta", "signature": b["signature"]}}))
    elif t == "tool_use":
        out.append(frame("content_block_start", {"type": "content_block_start", "index": index,
                                                 "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"],
                                                                   "input": {}}}))
        js = json.dumps(b["input"])
        for i in range(0, len(js), 15):
            if pause:
                out.append(pause)
            out.append(frame("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "input_json_delta", "partial_json": js[i:i + 15]}}))
    out.append(frame("content_block_stop", {"type": "content_block_stop", "index": index}))
    return out


def reply(*blocks: dict, stop_reason: str | None = None, pause: float = 0.0, model: str = "claude-sonnet-4-5",
          ping: bool = True, tail: list | None = None) -> SSE:
    """A complete streamed message with these content blocks."""
    frames: list = [frame("message_start", {"type": "message_start", "message": {
        "id": f"msg_{secrets.token_hex(6)}", "type": "message", "role": "assistant", "content": [], "model": model,
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})]
    if ping:
        frames.append(frame("ping", {"type": "ping"}))
    for i, b in enumerate(blocks):
        frames += block_frames(i, b, pause)
    if tail is not None:  # cut the message short: e.g. an error event instead of the end
        return SSE(frames + tail)
    stop = stop_reason or ("tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn")
    frames.append(frame("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                          "usage": {"output_tokens": 42}}))
    frames.append(frame("message_stop", {"type": "message_stop"}))
    return SSE(frames)


def error_frame(kind: str = "overloaded_error", message: str = "Overloaded") -> str:
    return frame("error", {"type": "error", "error": {"type": kind, "message": message}})


def overloaded(*partial: dict) -> SSE:
    """A stream that starts these blocks, then breaks with an overloaded_error event."""
    return reply(*partial, tail=[error_frame()])


def rate_limited(retry_after: float = 1) -> HTTPError:
    return HTTPError(429, {"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}},
                     {"retry-after": retry_after, "x-should-retry": "true"})


class FakeAnthropic(ScriptedServer):
    route = r"/v1/messages"

    def exhausted_body(self) -> dict:
        return {"type": "error", "error": {"type": "invalid_request_error",
                                           "message": "fake server: no scripted reply left"}}


class ThreadedFake:
    """The scripted fake Anthropic server on its own loop, for a server in another process."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake: FakeAnthropic = self.run(FakeAnthropic().start())

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def push(self, *replies):
        self.loop.call_soon_threadsafe(self.fake.push, *replies)

    def close(self):
        self.run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
