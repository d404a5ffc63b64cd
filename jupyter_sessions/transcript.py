"""Fold a session's event log into chat items: the one reading of events that every view shares.

Exports, the widget's Markdown snapshot and the magics all call `fold`; the browser front-ends
apply the same rules in their reducer. Items are plain dicts so they serialize as they are.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

Item = dict[str, Any]


def _parse_args(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


class Transcript:
    """Incremental fold: feed events in seq order, read `items`."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.phase: str | None = None
        self.agent_state: str | None = None
        self.display_name: str | None = None
        self.last_seq = 0
        self._by_key: dict[str, Item] = {}
        self._args: dict[str, str] = {}

    def _add(self, key: str | None, item: Item) -> Item:
        self.items.append(item)
        if key:
            self._by_key[key] = item
        return item

    def apply(self, ev: dict) -> None:  # noqa: C901 - one branch per event type reads best
        t, d = ev["type"], ev.get("data") or {}
        self.last_seq = max(self.last_seq, ev.get("seq", 0))
        ts = ev.get("ts")
        if t == "PHASE_CHANGED":
            self.phase = d.get("phase")
            self._add(None, {"kind": "phase", "phase": d.get("phase"), "reason": d.get("reason"), "ts": ts})
        elif t == "AGENT_STATE_CHANGED":
            self.agent_state = d.get("state")
        elif t == "SESSION_RENAMED":
            self.display_name = d.get("display_name")
        elif t == "USER_MESSAGE":
            self._add("u:" + d["message_id"], {"kind": "user", "message_id": d["message_id"], "text": d.get("text", ""),
                                               "status": "queued", "ts": ts})
        elif t == "MESSAGE_DELIVERED":
            item = self._by_key.get("u:" + str(d.get("message_id")))
            if item:
                item["status"] = "delivered"
        elif t == "TEXT_MESSAGE_START":
            self._add("a:" + d["messageId"], {"kind": "assistant", "message_id": d["messageId"], "text": "", "ts": ts})
        elif t == "TEXT_MESSAGE_CONTENT":
            item = self._by_key.get("a:" + d.get("messageId", ""))
            if item is not None:
                item["text"] += d.get("delta", "")
        elif t == "REASONING_MESSAGE_START":
            self._add("r:" + d["messageId"], {"kind": "thinking", "message_id": d["messageId"], "text": "", "ts": ts})
        elif t == "REASONING_MESSAGE_CONTENT":
            item = self._by_key.get("r:" + d.get("messageId", ""))
            if item is not None:
                item["text"] += d.get("delta", "")
        elif t == "TOOL_CALL_START":
            tid = d["toolCallId"]
            self._args[tid] = ""
            self._add("t:" + tid, {"kind": "tool", "tool_call_id": tid, "name": d.get("toolCallName", ""),
                                   "args": {}, "result": None, "is_error": False, "summary": "",
                                   "status": "running", "ts": ts})
        elif t == "TOOL_CALL_ARGS":
            tid = d.get("toolCallId", "")
            self._args[tid] = self._args.get(tid, "") + d.get("delta", "")
            item = self._by_key.get("t:" + tid)
            if item is not None:
                item["args"] = _parse_args(self._args[tid])
        elif t == "TOOL_CALL_RESULT":
            item = self._by_key.get("t:" + d.get("toolCallId", ""))
            if item is not None:
                item.update(result=d.get("content"), is_error=bool(d.get("isError")),
                            summary=d.get("summary") or item["summary"], status="done")
        elif t == "QUESTION_ASKED":
            self._add("q:" + d["toolCallId"], {"kind": "question", "tool_call_id": d["toolCallId"],
                                               "questions": d.get("questions", []), "answers": None, "ts": ts})
        elif t == "QUESTION_ANSWERED":
            item = self._by_key.get("q:" + d.get("toolCallId", ""))
            if item is not None:
                item["answers"] = d.get("answers")
        elif t == "RUN_ERROR":
            self._add(None, {"kind": "error", "message": d.get("message", ""), "ts": ts})
        elif t in ("REPO_CLONED", "REPO_CLONE_FAILED", "SANDBOX_WARNING"):
            self._add(None, {"kind": "notice", "type": t, "data": d, "ts": ts})

    @property
    def pending_question(self) -> Item | None:
        for item in reversed(self.items):
            if item["kind"] == "question" and item["answers"] is None:
                return item
        return None


def fold(events: Iterable[dict]) -> Transcript:
    tr = Transcript()
    for ev in events:
        tr.apply(ev)
    return tr
