"""The `replay` provider: plays a recorded transcript as if a model streamed it, with no network.

For offline demos (Binder, a laptop on a plane) and for tests of everything downstream of the
model. Tools still run for real in the sandbox; only the model's side is recorded.

Transcript format (JSON), either a bare list of steps or an object with options::

    {
      "delay": 0.02,          # optional: seconds between streamed chunks (default 0.01)
      "steps": [              # one entry per model response, played in order
        [                     # a step is a list of neutral content blocks
          {"type": "thinking", "thinking": "The user wants a listing..."},
          {"type": "text", "text": "Let me look at the workspace."},
          {"type": "tool_use", "name": "bash", "input": {"command": "ls -la"}}
        ],
        [{"type": "text", "text": "Done."}]
      ]
    }

Block types are those of `history.py`: `text`, `thinking` (no signature needed) and `tool_use`
(`id` optional; one is generated). A step with a tool_use ends with stop reason `tool_use`, so the
loop runs the tools and asks for the next step; a step without one ends the turn. The step played
is the number of assistant responses already in the session's history, so a resumed session
continues where it left off; after the last step the provider says the recording has ended.

Where the transcript comes from: the model id `replay` plays `<replay_dir>/demo.json` when it
exists, else the demo shipped in the package (`agent/replay_demo.json`); a model id
`replay:<name>` (or `replay-<name>`) plays `<replay_dir>/<name>.json`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path
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

DEMO = Path(__file__).resolve().parent.parent / "replay_demo.json"
_WORDS = re.compile(r"\S+\s*|\s+")


def transcript_name(model_id: str) -> str:
    for sep in (":", "-"):
        prefix = "replay" + sep
        if model_id.startswith(prefix) and len(model_id) > len(prefix):
            return model_id[len(prefix):]
    return "demo"


def load_transcript(path: Path) -> tuple[list[list[dict]], float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ProviderError(f"cannot read the replay transcript {path.name}: {e}", retryable=False) from None
    delay = 0.01
    if isinstance(data, dict):
        delay = float(data.get("delay", delay))
        data = data.get("steps")
    if not isinstance(data, list) or not all(isinstance(s, list) for s in data):
        raise ProviderError(f"the replay transcript {path.name} must be a list of steps (lists of blocks)",
                            retryable=False)
    return data, delay


class ReplayProvider(Provider):
    name = "replay"

    def __init__(self, ctx: AgentContext):
        super().__init__(ctx)
        name = transcript_name(ctx.model.id)
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", name) or name.startswith("."):
            raise ProviderError(f"invalid replay transcript name {name!r}", retryable=False)
        folder = ctx.providers.replay_dir
        path = Path(folder) / f"{name}.json" if folder else None
        if path is None or not path.is_file():
            if name != "demo":
                raise ProviderError(f"no replay transcript {name!r} in {folder or '(no replay_dir configured)'}",
                                    retryable=False)
            path = DEMO
        self.steps, self.delay = load_transcript(path)

    async def _pause(self) -> None:
        if self.delay > 0:
            await asyncio.sleep(self.delay)

    async def stream(self, req: StepRequest) -> AsyncIterator[StreamEvent]:
        n = sum(1 for m in req.messages if m["role"] == "assistant")
        step = self.steps[n] if n < len(self.steps) else [
            {"type": "text", "text": "(The recorded replay transcript has ended; there is nothing more to play.)"}]
        has_tool = False
        for index, raw in enumerate(step):
            kind = raw.get("type")
            if kind == "text":
                block = {"type": "text", "text": ""}
                yield BlockStart(index, "text")
                for piece in _WORDS.findall(str(raw.get("text", ""))):
                    await self._pause()
                    block["text"] += piece
                    yield BlockDelta(index, piece)
                yield BlockStop(index, block)
            elif kind == "thinking":
                block = {"type": "thinking", "thinking": "", "signature": "", "provider": "replay"}
                yield BlockStart(index, "thinking")
                for piece in _WORDS.findall(str(raw.get("thinking", ""))):
                    await self._pause()
                    block["thinking"] += piece
                    yield BlockDelta(index, piece)
                yield BlockStop(index, block)
            elif kind == "tool_use":
                has_tool = True
                tid = raw.get("id") or f"toolu_replay_{secrets.token_hex(6)}"
                args = raw.get("input") or {}
                block = {"type": "tool_use", "id": tid, "name": raw.get("name", ""), "input": args}
                yield BlockStart(index, "tool_use", tid, block["name"])
                text = json.dumps(args)
                for i in range(0, len(text), 40):
                    await self._pause()
                    yield BlockDelta(index, text[i:i + 40])
                yield BlockStop(index, block)
        yield StepEnd("tool_use" if has_tool else "end_turn", {})
