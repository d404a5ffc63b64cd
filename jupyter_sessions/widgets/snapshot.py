"""The chat widget's Markdown snapshot: what a saved notebook shows where no widget can render.

GitHub, nbviewer and `jupyter nbconvert --to markdown` read the `text/markdown` entry of the widget's
output. It is built from `transcript.fold` (the shared reading of the event log) and is safe to
render as trusted Markdown: user and agent text has HTML escaped and script-like link targets
defused; arguments and results sit in code fences.

Pure functions, no ipywidgets: the server can also refresh snapshots in a notebook it saves
(`refresh_notebook`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable

from ..safe_text import safe_markdown
from ..transcript import Transcript

#: Output metadata key that marks a chat widget's output and names its session.
METADATA_KEY = "jupyter_sessions"
MAX_RESULT_CHARS = 4000



def escape_text(text: str) -> str:
    """Markdown that renders as written, minus raw HTML, script links and control codes."""
    return safe_markdown(text)


def _fence(body: str, lang: str = "") -> str:
    ticks = max([3] + [len(m) + 1 for m in re.findall(r"`{3,}", body)])
    return f"{'`' * ticks}{lang}\n{body.rstrip()}\n{'`' * ticks}"


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines() or [""])


def _answer_text(a: Any) -> str:
    if isinstance(a, dict):
        return str(a.get("text") or ", ".join(a.get("selected") or []) or a.get("other") or "")
    if isinstance(a, list):
        return ", ".join(map(str, a))
    return str(a)


def _one_line(s: str, n: int = 120) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def tool_summary(name: str, args: Any) -> str:
    """Mirror of the agent's one-line tool summary, for blocks that have no result yet."""
    a = args if isinstance(args, dict) else {}
    if name in ("read_file", "write_file", "edit_file"):
        return str(a.get("path", ""))
    if name == "bash":
        cmd = str(a.get("command", "")).strip()
        return cmd.splitlines()[0] if cmd else ""
    if name in ("grep", "glob"):
        return str(a.get("pattern", "")) + (f" in {a['path']}" if a.get("path") else "")
    if name == "ask_user_question":
        return ", ".join(str(q.get("header", "")) for q in a.get("questions", []) if isinstance(q, dict))
    return ""


def markdown_snapshot(source: Transcript | Iterable[dict], *, start_seq: int = 0,
                      session: dict | None = None) -> str:
    """The transcript as Markdown; items created at or before `start_seq` are left out."""
    tr = source if isinstance(source, Transcript) else seq_fold(source)
    session = session or {}
    name = tr.display_name or session.get("display_name") or session.get("id") or "session"
    bits = [f"`{session['id']}`"] if session.get("id") else []
    if session.get("spec", {}).get("model"):
        bits.append(str(session["spec"]["model"]))
    bits.append(tr.phase or session.get("phase") or "")
    state = tr.agent_state or session.get("agent_state")
    if state and (tr.phase or session.get("phase")) == "Running":
        bits.append(state)
    out = [f"**Agent session: {escape_text(name)}**" + (" · " + " · ".join(b for b in bits if b) if bits else "")]
    shown = [it for it in tr.items if it.get("_seq", 0) > start_seq]
    hidden = len(tr.items) - len(shown)
    if hidden:
        out.append(f"*… {hidden} earlier item(s) not shown*")
    for it in shown:
        out.append(_item_md(it))
    return "\n\n".join(x for x in out if x)


def _item_md(it: dict) -> str:
    kind = it["kind"]
    if kind == "user":
        mark = " *(queued)*" if it.get("status") == "queued" else ""
        return f"**You:**{mark}\n\n{_quote(escape_text(it['text']))}"
    if kind == "assistant":
        return f"**Agent:**\n\n{escape_text(it['text'])}" if it["text"].strip() else ""
    if kind == "thinking":
        return ("<details><summary>Thinking</summary>\n\n" + _quote(escape_text(it["text"])) + "\n\n</details>"
                if it["text"].strip() else "")
    if kind == "tool":
        summary = it.get("summary") or tool_summary(it["name"], it.get("args"))
        state = "error" if it.get("is_error") else ("running" if it.get("status") == "running" else "")
        title = f"Tool: {escape_text(it['name'])}" + (f" · <code>{escape_text(_one_line(summary))}</code>" if summary else "") \
            + (f" · {state}" if state else "")
        args = it.get("args")
        args_s = json.dumps(args, indent=2, ensure_ascii=False) if not isinstance(args, str) else args
        parts = [f"<details><summary>{title}</summary>\n", "Arguments:\n", _fence(args_s, "json")]
        if it.get("result") is not None:
            res = it["result"] if isinstance(it["result"], str) else json.dumps(it["result"], indent=2)
            if len(res) > MAX_RESULT_CHARS:
                res = res[:MAX_RESULT_CHARS] + f"\n… ({len(res) - MAX_RESULT_CHARS} more characters)"
            parts += ["\nError:\n" if it.get("is_error") else "\nResult:\n", _fence(res)]
        parts.append("\n</details>")
        return "\n".join(parts)
    if kind == "question":
        lines = ["**Agent asks:**"]
        answers = it.get("answers")
        for i, q in enumerate(it.get("questions") or []):
            line = f"- **{escape_text(q.get('header', ''))}**: {escape_text(q.get('question', ''))}"
            opts = [o.get("label", "") for o in q.get("options") or []]
            if opts:
                line += f" ({'several of' if q.get('multiSelect') else 'one of'}: {escape_text(', '.join(opts))})"
            if answers is not None and i < len(answers):
                line += f" → *{escape_text(_answer_text(answers[i]))}*"
            lines.append(line)
        if answers is None:
            lines.append("*(waiting for an answer)*")
        return "\n".join(lines)
    if kind == "error":
        return f"> **Error:** {escape_text(_one_line(it['message'], 500))}"
    if kind == "phase":
        reason = f" ({escape_text(it['reason'])})" if it.get("reason") else ""
        return f"*Phase: {escape_text(it['phase'])}{reason}*"
    if kind == "notice":
        d = it.get("data") or {}
        text = d.get("message") or d.get("error") or d.get("path") or d.get("url") or ""
        return f"*{escape_text(it['type'].replace('_', ' ').lower())}: {escape_text(_one_line(text, 300))}*"
    return ""


class SeqTranscript(Transcript):
    """A Transcript whose items remember the seq of the event that created them."""

    _cur_seq = 0

    def _add(self, key, item):
        item["_seq"] = self._cur_seq
        return super()._add(key, item)

    def apply(self, ev: dict) -> None:
        self._cur_seq = ev.get("seq0", ev.get("seq", 0))
        super().apply(ev)


def seq_fold(events: Iterable[dict]) -> SeqTranscript:
    tr = SeqTranscript()
    for ev in events:
        tr.apply(ev)
    return tr


def refresh_notebook(nb: dict, events_of: Callable[[str], list[dict] | None]) -> int:
    """Rewrite the Markdown snapshot of every chat-widget output in a notebook (a dict in nbformat 4).

    `events_of(session_id)` returns the session's events, or None when the session is gone (the
    output then keeps its last snapshot). Returns the number of outputs refreshed. Meant for a
    contents-manager pre-save hook, so a saved notebook shows what happened after the cell ran.
    """
    n = 0
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            meta = (out.get("metadata") or {}).get(METADATA_KEY)
            if out.get("output_type") not in ("display_data", "execute_result") or not isinstance(meta, dict):
                continue
            sid = meta.get("session_id")
            events = events_of(sid) if sid else None
            if events is None:
                continue
            out.setdefault("data", {})["text/markdown"] = markdown_snapshot(
                seq_fold(events), start_seq=int(meta.get("start_seq") or 0), session={"id": sid})
            n += 1
    return n
