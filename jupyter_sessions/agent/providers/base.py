"""What every model provider gives the agent loop: one streamed step in provider-neutral terms.

A provider turns the neutral history (see `history.py`) into its wire format, streams one model
response, and yields `BlockStart` / `BlockDelta` / `BlockStop` / `StepEnd`. The loop maps those to
AG-UI events and decides about retries, so providers never emit events or sleep themselves.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import AsyncIterator, Union

from ..context import AgentContext
from ..tools import ToolSpec


@dataclass(slots=True)
class BlockStart:
    index: int
    kind: str  # "text" | "thinking" | "redacted_thinking" | "tool_use"
    id: str | None = None  # tool_use id
    name: str | None = None  # tool name


@dataclass(slots=True)
class BlockDelta:
    index: int
    text: str  # text, thinking text, or a piece of the tool input's JSON


@dataclass(slots=True)
class BlockStop:
    index: int
    block: dict  # the finished neutral block


@dataclass(slots=True)
class StepEnd:
    stop_reason: str  # "end_turn" | "tool_use" | "max_tokens" | ...
    usage: dict = field(default_factory=dict)


StreamEvent = Union[BlockStart, BlockDelta, BlockStop, StepEnd]


@dataclass
class StepRequest:
    system: str
    messages: list[dict]
    tools: list[ToolSpec]


class ProviderError(Exception):
    """A model call failed. `retryable` errors are retried by the loop (honouring `retry_after`)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class Provider(abc.ABC):
    """One model backend; created per agent, closed at shutdown."""

    name = "abstract"

    def __init__(self, ctx: AgentContext):
        self.ctx = ctx

    @abc.abstractmethod
    def stream(self, req: StepRequest) -> AsyncIterator[StreamEvent]:
        """Stream one model response; raise ProviderError on failure."""

    async def aclose(self) -> None:
        """Release HTTP connections."""


def parse_retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` / `retry-after` (seconds or an HTTP date), when sensible."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        ra = headers.get("retry-after")
        if ra is None:
            return None
        try:
            return max(0.0, float(ra))
        except ValueError:
            from datetime import datetime, timezone
            from email.utils import parsedate_to_datetime

            when = parsedate_to_datetime(ra)
            return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except Exception:
        return None
