"""Gemini through `google-genai` (`client.aio.models.generate_content_stream`).

Tools are plain function declarations with automatic function calling off: the loop runs them in
the sandbox. Gemini 2.5 attaches `thought_signature`s to parts; they are kept (base64) on the
neutral block they came with and sent back on the same part, as the API requires for tool use with
thinking. Function-call ids are optional in the Gemini API; when none is given we make one up and
do not send it back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from typing import AsyncIterator

from ..context import AgentContext
from .base import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Provider,
    ProviderError,
    StepEnd,
    StepRequest,
    StreamEvent,
)

_GENERATED = "gcall_"


def _sig_out(sig: bytes | None) -> str | None:
    return base64.b64encode(sig).decode() if sig else None


def _sig_in(sig: str | None) -> bytes | None:
    return base64.b64decode(sig) if sig else None


def to_wire(messages: list[dict]) -> list[dict]:
    """Neutral history -> Gemini `contents` dicts (role "user" / "model")."""
    out: list[dict] = []
    for m in messages:
        role = "model" if m["role"] == "assistant" else "user"
        parts: list[dict] = []
        for b in m.get("content") or []:
            t = b.get("type")
            if t == "text":
                if b.get("text") or b.get("signature"):
                    p = {"text": b.get("text", "")}
                    if role == "model" and b.get("signature") and b.get("provider") == "gemini":
                        p["thought_signature"] = _sig_in(b["signature"])
                    parts.append(p)
            elif t == "thinking":
                if role == "model" and b.get("provider") == "gemini" and b.get("signature"):
                    parts.append({"text": b.get("thinking", ""), "thought": True,
                                  "thought_signature": _sig_in(b["signature"])})
            elif t == "tool_use":
                fc = {"name": b["name"], "args": b.get("input") or {}}
                if not str(b["id"]).startswith(_GENERATED):
                    fc["id"] = b["id"]
                p = {"function_call": fc}
                if b.get("signature") and b.get("provider") == "gemini":
                    p["thought_signature"] = _sig_in(b["signature"])
                parts.append(p)
            elif t == "tool_result":
                key = "error" if b.get("is_error") else "output"
                fr = {"name": b.get("name") or "tool", "response": {key: b.get("content") or ""}}
                if not str(b["tool_use_id"]).startswith(_GENERATED):
                    fr["id"] = b["tool_use_id"]
                parts.append({"function_response": fr})
        if not parts:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


def _retry_delay(details) -> float | None:
    """RetryInfo.retryDelay ("3s") from a Google error body, when present."""
    try:
        for d in (details or {}).get("error", {}).get("details", []) or []:
            if "RetryInfo" in str(d.get("@type", "")):
                m = re.match(r"([\d.]+)s", str(d.get("retryDelay", "")))
                if m:
                    return float(m.group(1))
    except AttributeError:
        return None
    return None


def classify(e: Exception) -> ProviderError:
    from google.genai import errors

    if isinstance(e, errors.APIError):
        code = e.code or 0
        retryable = code in (408, 429) or code >= 500
        headers = getattr(getattr(e, "response", None), "headers", None)
        from .base import parse_retry_after

        retry_after = parse_retry_after(headers) if headers is not None else None
        if retry_after is None:
            retry_after = _retry_delay(e.details)
        kind = {429: "Gemini rate limit reached", 401: "Gemini rejected the API key",
                403: "the API key may not use this model"}.get(code, "Gemini API error")
        return ProviderError(f"{kind} (HTTP {code}, {e.status}): {e.message}", retryable=retryable,
                             retry_after=retry_after, status=code)
    if isinstance(e, asyncio.TimeoutError):
        return ProviderError("the Gemini stream went silent", retryable=True)
    name = type(e).__name__
    if "Timeout" in name or "Connect" in name or "Protocol" in name or "Network" in name or "ReadError" in name:
        return ProviderError(f"the connection to Gemini broke: {name}: {e}", retryable=True)
    return ProviderError(f"unexpected error from the Gemini client: {name}: {e}", retryable=False)


class GeminiProvider(Provider):
    name = "gemini"

    def __init__(self, ctx: AgentContext):
        super().__init__(ctx)
        try:
            from google import genai
            from google.genai import types
        except ImportError:
            raise ProviderError("Gemini models need the google-genai package "
                                "(pip install 'jupyter-sessions[gemini]')", retryable=False) from None
        p = ctx.providers
        if not p.gemini_api_key:
            raise ProviderError("no Gemini API key is configured (SessionsApp.gemini_api_key or "
                                "GEMINI_API_KEY)", retryable=False)
        self.types = types
        http = types.HttpOptions(base_url=p.gemini_base_url) if p.gemini_base_url else None
        self.client = genai.Client(api_key=p.gemini_api_key, http_options=http)

    def config(self, req: StepRequest):
        types, ctx = self.types, self.ctx
        decls = [types.FunctionDeclaration(name=t.name, description=t.description,
                                           parameters_json_schema=t.input_schema) for t in req.tools]
        cfg = dict(
            system_instruction=req.system,
            temperature=ctx.spec.temperature,
            max_output_tokens=ctx.spec.max_tokens,
            tools=[types.Tool(function_declarations=decls)] if decls else None,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        if ctx.thinking is not None and ctx.thinking.enabled:
            cfg["thinking_config"] = types.ThinkingConfig(include_thoughts=True,
                                                          thinking_budget=ctx.thinking.budget_tokens)
        elif ctx.model.thinking_default:
            # thinking is on by default for this model and the session turned it off: say so
            cfg["thinking_config"] = types.ThinkingConfig(thinking_budget=0)
        return types.GenerateContentConfig(**cfg)

    async def stream(self, req: StepRequest) -> AsyncIterator[StreamEvent]:
        idle = self.ctx.providers.stream_idle_timeout
        try:
            it = await asyncio.wait_for(self.client.aio.models.generate_content_stream(
                model=self.ctx.model.id, contents=to_wire(req.messages), config=self.config(req)), idle)
        except Exception as e:
            raise classify(e) from e
        index = -1
        cur: dict | None = None  # the open text/thinking block
        calls = 0
        finish = None
        usage: dict = {}
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(it.__anext__(), idle)
                except StopAsyncIteration:
                    break
                if chunk.usage_metadata is not None:
                    um = chunk.usage_metadata
                    usage = {"input_tokens": um.prompt_token_count, "output_tokens": um.candidates_token_count,
                             "thinking_tokens": um.thoughts_token_count}
                if not chunk.candidates:
                    continue
                cand = chunk.candidates[0]
                if cand.finish_reason is not None:
                    finish = str(getattr(cand.finish_reason, "value", cand.finish_reason))
                parts = (cand.content.parts if cand.content is not None else None) or []
                for part in parts:
                    sig = _sig_out(part.thought_signature)
                    if part.function_call is not None:
                        if cur is not None:
                            yield BlockStop(index, cur)
                            cur = None
                        fc = part.function_call
                        index += 1
                        calls += 1
                        cid = fc.id or f"{_GENERATED}{secrets.token_hex(8)}"
                        block = {"type": "tool_use", "id": cid, "name": fc.name, "input": dict(fc.args or {}),
                                 "provider": "gemini"}
                        if sig:
                            block["signature"] = sig
                        yield BlockStart(index, "tool_use", cid, fc.name)
                        yield BlockDelta(index, json.dumps(block["input"]))
                        yield BlockStop(index, block)
                        continue
                    if part.text is None and not sig:
                        continue
                    kind = "thinking" if part.thought else "text"
                    if cur is None or cur["type"] != kind:
                        if cur is not None:
                            yield BlockStop(index, cur)
                        index += 1
                        cur = ({"type": "thinking", "thinking": "", "provider": "gemini"} if kind == "thinking"
                               else {"type": "text", "text": "", "provider": "gemini"})
                        yield BlockStart(index, kind)
                    if part.text:
                        cur[kind if kind == "text" else "thinking"] += part.text
                        yield BlockDelta(index, part.text)
                    if sig:
                        cur["signature"] = sig
            if cur is not None:
                yield BlockStop(index, cur)
        except ProviderError:
            raise
        except Exception as e:
            raise classify(e) from e
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    pass
        if finish is None:
            raise ProviderError("the Gemini stream ended without a finish reason", retryable=True)
        if calls:
            stop = "tool_use"
        elif finish == "MAX_TOKENS":
            stop = "max_tokens"
        elif finish == "STOP":
            stop = "end_turn"
        else:
            stop = finish.lower()  # SAFETY, RECITATION, MALFORMED_FUNCTION_CALL...
        yield StepEnd(stop, usage)

    async def aclose(self) -> None:
        try:
            await self.client.aio.aclose()
        except Exception:
            pass
