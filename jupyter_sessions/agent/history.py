"""The model-facing history in provider-neutral content blocks, and its repair.

A message is {"role": "user" | "assistant", "content": [block, ...]}; blocks are

    {"type": "text", "text": str}
    {"type": "thinking", "thinking": str, "signature": str}     # signature as the provider gave it
    {"type": "redacted_thinking", "data": str}
    {"type": "tool_use", "id": str, "name": str, "input": dict}
    {"type": "tool_result", "tool_use_id": str, "name": str, "content": str, "is_error": bool}

Providers may add keys of their own (e.g. Gemini's `signature` on a text or tool_use block); the
other providers ignore them. Every provider forbids a tool_use without its tool_result in the very
next user message, so a crash or a Stop between the two is repaired with an error result before
the history is sent again, and user text always follows the tool_results of a turn.
"""

from __future__ import annotations

from typing import Iterable

INTERRUPTED = "The tool call was interrupted before it finished (the session was stopped or restarted); its outcome is unknown."


def text(s: str) -> dict:
    return {"type": "text", "text": s}


def tool_result(tool_use_id: str, name: str, content: str, is_error: bool = False) -> dict:
    return {"type": "tool_result", "tool_use_id": tool_use_id, "name": name, "content": content,
            "is_error": bool(is_error)}


def tool_uses(message: dict) -> list[dict]:
    return [b for b in message.get("content") or [] if b.get("type") == "tool_use"]


def result_ids(message: dict | None) -> set[str]:
    if not message or message.get("role") != "user":
        return set()
    return {b["tool_use_id"] for b in message.get("content") or [] if b.get("type") == "tool_result"}


def order_user_content(blocks: Iterable[dict], order: list[str] | None = None) -> list[dict]:
    """tool_results first (in tool_use order when given), then everything else in its order."""
    blocks = list(blocks)
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if order:
        pos = {tid: i for i, tid in enumerate(order)}
        results.sort(key=lambda b: pos.get(b["tool_use_id"], len(pos)))
    return results + [b for b in blocks if b.get("type") != "tool_result"]


def repair_plan(messages: list[dict], skip: set[str] = frozenset(), reason: str = INTERRUPTED
                ) -> list[tuple[int | None, dict]]:
    """Changes that give every tool_use (except `skip`) a result: [(index or None=append, message)].

    A missing result goes into the user message right after the tool_use (created when absent),
    ahead of any text in it. `messages` is not modified.
    """
    plan: list[tuple[int | None, dict]] = []
    for i, msg in enumerate(messages):
        if msg.get("role") != "assistant":
            continue
        uses = tool_uses(msg)
        if not uses:
            continue
        nxt = messages[i + 1] if i + 1 < len(messages) else None
        have = result_ids(nxt)
        missing = [u for u in uses if u["id"] not in have and u["id"] not in skip]
        if not missing:
            continue
        fill = [tool_result(u["id"], u["name"], reason, True) for u in missing]
        order = [u["id"] for u in uses]
        if nxt is None:
            plan.append((None, {"role": "user", "content": order_user_content(fill, order)}))
        elif nxt.get("role") == "user":
            plan.append((i + 1, {"role": "user", "content": order_user_content(list(nxt["content"]) + fill, order)}))
        # an assistant right after an assistant cannot be fixed in place; providers merge it anyway
    return plan


def dangling(messages: list[dict], skip: set[str] = frozenset()) -> list[str]:
    """Ids of tool_use blocks that have no result (for assertions and logs)."""
    out = []
    for i, msg in enumerate(messages):
        if msg.get("role") == "assistant":
            nxt = messages[i + 1] if i + 1 < len(messages) else None
            have = result_ids(nxt)
            out += [u["id"] for u in tool_uses(msg) if u["id"] not in have and u["id"] not in skip]
    return out
