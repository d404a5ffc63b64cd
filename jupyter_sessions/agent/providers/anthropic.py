"""Claude through the `anthropic` SDK's streaming Messages API.

The SDK's own retries are off (`max_retries=0`): the loop retries with backoff and honours
`retry-after`, and a mid-stream `error` event (which the SDK raises as a status-200
`APIStatusError` and never retries) is retried the same way. The read timeout is the stream idle
timeout, so a silent connection counts as a broken stream. `temperature` goes in `extra_body`:
anthropic 2.x no longer lists sampling parameters on `messages.create`, but the API reads them.
"""

from __future__ import annotations

import json
from typing import AsyncIterator

import anthropic
import httpx2

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
    parse_retry_after,
)

_RETRYABLE_STREAM_ERRORS = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


def to_wire(messages: list[dict]) -> list[dict]:
    """Neutral history -> Anthropic `messages` (empty blocks dropped, same-role turns merged)."""
    out: list[dict] = []
    for m in messages:
        role = m["role"]
        blocks = []
        for b in m.get("content") or []:
            t = b.get("type")
            if t == "text":
                if b.get("text"):
                    blocks.append({"type": "text", "text": b["text"]})
            elif t == "thinking":
                if role == "assistant" and b.get("signature") and b.get("provider", "anthropic") == "anthropic":
                    blocks.append({"type": "thinking", "thinking": b.get("thinking", ""), "signature": b["signature"]})
            elif t == "redacted_thinking":
                if role == "assistant" and b.get("provider", "anthropic") == "anthropic":
                    blocks.append({"type": "redacted_thinking", "data": b["data"]})
            elif t == "tool_use":
                blocks.append({"type": "tool_use", "id": b["id"], "name": b["name"], "input": b.get("input") or {}})
            elif t == "tool_result":
                blocks.append({"type": "tool_result", "tool_use_id": b["tool_use_id"],
                               "content": b.get("content") or "(no output)", "is_error": bool(b.get("is_error"))})
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _readable(e: anthropic.APIStatusError) -> str:
    status, kind = e.status_code, e.type or "error"
    detail = e.api_message or (str(e.body) if e.body else str(e))
    if status == 200:
        return f"the Claude stream broke off with {kind}: {detail}"
    if status == 429:
        return f"Anthropic rate limit reached (HTTP 429): {detail}"
    if status == 529 or kind == "overloaded_error":
        return f"Anthropic is overloaded (HTTP {status}): {detail}"
    if status == 401:
        return f"Anthropic rejected the API key (HTTP 401): {detail}"
    if status == 403:
        return f"the API key may not use this model (HTTP 403): {detail}"
    if status == 404:
        return f"Anthropic does not know this model or endpoint (HTTP 404): {detail}"
    return f"Anthropic API error (HTTP {status}, {kind}): {detail}"


def classify(e: Exception) -> ProviderError:
    if isinstance(e, anthropic.APIStatusError):
        status = e.status_code
        if status == 200:
            retryable = (e.type or "") in _RETRYABLE_STREAM_ERRORS
            return ProviderError(_readable(e), retryable=retryable, status=529 if e.type == "overloaded_error" else None)
        headers = e.response.headers if e.response is not None else None
        retryable = status in (408, 409, 429) or status >= 500
        forced = headers.get("x-should-retry") if headers is not None else None
        if forced in ("true", "false"):
            retryable = forced == "true"
        return ProviderError(_readable(e), retryable=retryable, retry_after=parse_retry_after(headers), status=status)
    if isinstance(e, anthropic.APITimeoutError):
        return ProviderError("the connection to Anthropic timed out", retryable=True)
    if isinstance(e, anthropic.APIConnectionError):
        return ProviderError(f"could not reach Anthropic: {e.__cause__ or e}", retryable=True)
    if isinstance(e, httpx2.TimeoutException):
        return ProviderError("the Claude stream timed out (no data within the stream idle timeout)", retryable=True)
    if isinstance(e, httpx2.HTTPError):
        return ProviderError(f"the connection to Anthropic broke: {type(e).__name__}: {e}", retryable=True)
    return ProviderError(f"unexpected error from the Anthropic client: {type(e).__name__}: {e}", retryable=False)


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(self, ctx: AgentContext):
        super().__init__(ctx)
        p = ctx.providers
        if not p.anthropic_api_key:
            raise ProviderError("no Anthropic API key is configured (SessionsApp.anthropic_api_key or "
                                "ANTHROPIC_API_KEY)", retryable=False)
        idle = p.stream_idle_timeout
        self.client = anthropic.AsyncAnthropic(
            api_key=p.anthropic_api_key,
            base_url=p.anthropic_base_url or None,
            max_retries=0,
            timeout=httpx2.Timeout(connect=10.0, read=idle, write=60.0, pool=10.0),
        )

    def params(self, req: StepRequest) -> dict:
        spec, ctx = self.ctx.spec, self.ctx
        params = {
            "model": ctx.model.id,
            "max_tokens": spec.max_tokens,
            # anthropic 2.x dropped the sampling arguments from create(); the API still takes them
            "extra_body": {"temperature": spec.temperature},
            "system": req.system,
            "messages": to_wire(req.messages),
            "tools": [{"name": t.name, "description": t.description, "input_schema": t.input_schema}
                      for t in req.tools],
        }
        if ctx.thinking is not None and ctx.thinking.enabled:
            params["thinking"] = {"type": "enabled", "budget_tokens": ctx.thinking.budget_tokens}
        return params

    async def stream(self, req: StepRequest) -> AsyncIterator[StreamEvent]:
        try:
            stream = await self.client.messages.create(stream=True, **self.params(req))
        except Exception as e:
            raise classify(e) from e
        blocks: dict[int, dict] = {}
        parts: dict[int, list[str]] = {}
        stop_reason, usage, done = None, {}, False
        try:
            async with stream:
                async for ev in stream:
                    t = ev.type
                    if t == "content_block_delta":
                        d, i = ev.delta, ev.index
                        b = blocks.get(i)
                        if b is None:
                            continue
                        dt = d.type
                        if dt == "text_delta":
                            b["text"] += d.text
                            yield BlockDelta(i, d.text)
                        elif dt == "thinking_delta":
                            b["thinking"] += d.thinking
                            yield BlockDelta(i, d.thinking)
                        elif dt == "signature_delta":
                            b["signature"] += d.signature
                        elif dt == "input_json_delta" and d.partial_json:
                            parts[i].append(d.partial_json)
                            yield BlockDelta(i, d.partial_json)
                    elif t == "content_block_start":
                        cb, i = ev.content_block, ev.index
                        kind = cb.type
                        if kind == "text":
                            blocks[i] = {"type": "text", "text": cb.text or ""}
                            yield BlockStart(i, "text")
                            if cb.text:
                                yield BlockDelta(i, cb.text)
                        elif kind == "thinking":
                            blocks[i] = {"type": "thinking", "thinking": cb.thinking or "", "signature": cb.signature or ""}
                            yield BlockStart(i, "thinking")
                        elif kind == "redacted_thinking":
                            blocks[i] = {"type": "redacted_thinking", "data": cb.data}
                            yield BlockStart(i, "redacted_thinking")
                        elif kind == "tool_use":
                            blocks[i] = {"type": "tool_use", "id": cb.id, "name": cb.name, "input": {}}
                            parts[i] = []
                            yield BlockStart(i, "tool_use", cb.id, cb.name)
                    elif t == "content_block_stop":
                        i = ev.index
                        b = blocks.get(i)
                        if b is None:
                            continue
                        if b["type"] == "tool_use":
                            raw = "".join(parts.pop(i, []))
                            try:
                                b["input"] = json.loads(raw) if raw.strip() else {}
                                if not isinstance(b["input"], dict):
                                    raise ValueError("not an object")
                            except ValueError:
                                b["input"] = {}
                                b["invalid_input"] = raw
                        yield BlockStop(i, b)
                    elif t == "message_delta":
                        stop_reason = ev.delta.stop_reason or stop_reason
                        if ev.usage is not None:
                            usage["output_tokens"] = ev.usage.output_tokens
                    elif t == "message_start":
                        u = ev.message.usage
                        if u is not None:
                            usage["input_tokens"] = u.input_tokens
                    elif t == "message_stop":
                        done = True
        except ProviderError:
            raise
        except Exception as e:
            raise classify(e) from e
        if not done:
            raise ProviderError("the Claude stream ended before message_stop", retryable=True)
        yield StepEnd(stop_reason or "end_turn", usage)

    async def aclose(self) -> None:
        await self.client.close()
