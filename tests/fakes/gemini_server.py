"""A fake Gemini API: `POST /{v1,v1beta}/models/{model}:streamGenerateContent?alt=sse`, from a script.

The real `google-genai` client reaches it through `HttpOptions(base_url=...)`. Each SSE frame is a
`data: <GenerateContentResponse JSON>` line, the way the service streams.
"""

from __future__ import annotations

import base64
import json
import re

from . import CLOSE, SSE, HTTPError, ScriptedServer

__all__ = ["FakeGemini", "CLOSE", "SSE", "HTTPError", "chunk", "text_reply", "call_reply", "thought", "part_text",
           "function_call"]


def chunk(*parts: dict, finish: str | None = None, usage: bool = False) -> str:
    cand: dict = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    data: dict = {"candidates": [cand], "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"}
    if usage or finish:
        data["usageMetadata"] = {"promptTokenCount": 12, "candidatesTokenCount": 7, "totalTokenCount": 19}
    return f"data: {json.dumps(data)}\r\n\r\n"


def part_text(s: str) -> dict:
    return {"text": s}


def thought(s: str, signature: bytes | None = None) -> dict:
    p: dict = {"text": s, "thought": True}
    if signature:
        p["thoughtSignature"] = base64.b64encode(signature).decode()
    return p


def function_call(name: str, args: dict, id: str | None = None, signature: bytes | None = None) -> dict:
    fc: dict = {"name": name, "args": args}
    if id:
        fc["id"] = id
    p: dict = {"functionCall": fc}
    if signature:
        p["thoughtSignature"] = base64.b64encode(signature).decode()
    return p


def text_reply(s: str, *, thoughts: str | None = None) -> SSE:
    """Text streamed over a few chunks (optionally after a thought summary), finishing with STOP."""
    words = re.findall(r"\S+\s*", s) or [""]
    frames = []
    if thoughts:
        frames.append(chunk(thought(thoughts)))
    for i in range(0, len(words), 2):
        last = i + 2 >= len(words)
        frames.append(chunk(part_text("".join(words[i:i + 2])), finish="STOP" if last else None))
    return SSE(frames)


def call_reply(name: str, args: dict, *, preface: str | None = None, id: str | None = None,
               signature: bytes | None = b"gemini-sig") -> SSE:
    frames = []
    if preface:
        frames.append(chunk(part_text(preface)))
    frames.append(chunk(function_call(name, args, id=id, signature=signature), finish="STOP"))
    return SSE(frames)


class FakeGemini(ScriptedServer):
    route = r"/v1(?:beta)?/models/(.+)"  # google-genai 3.x defaults to v1, older ones to v1beta

    def exhausted_body(self) -> dict:
        return {"error": {"code": 400, "message": "fake server: no scripted reply left", "status": "INVALID_ARGUMENT"}}
