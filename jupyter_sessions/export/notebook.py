"""A session's event log as an nbformat notebook: the one document every export format renders.

`fold` (jupyter_sessions.transcript) reads the events into chat items; this module lays them out
as markdown cells: a metadata table, then each user message and the agent's turn that answers it,
with tool calls as collapsible ``<details>`` blocks (arguments and results, long ones truncated
with a note) and, on request, thinking blocks. Secret values are masked before anything is laid
out, so no format can leak them.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import nbformat
from nbformat.notebooknode import from_dict
from nbformat.v4 import new_notebook

from ..redact import redact
from ..safe_text import safe_markdown, strip_controls
from ..transcript import fold

FORMAT_VERSION = 1
from ..redact import MASK  # noqa: E402,F401


# -- secrets ---------------------------------------------------------------------------------------
def mask_secrets(value: Any, secrets: Sequence[str]) -> Any:
    """`value` with secrets masked, recursively (str, list, dict): see jupyter_sessions.redact."""
    return redact(value, secrets)


# -- options and session facts ---------------------------------------------------------------------
@dataclass
class NotebookOptions:
    include_thinking: bool = False
    max_args_chars: int = 2000  # tool arguments shown in full up to this many characters
    max_result_chars: int = 2000  # tool results (and errors) likewise
    max_lines: int = 200  # ... and at most this many lines of either
    open_details: bool = False  # PDF: print tool blocks expanded (a closed <details> prints its summary only)
    secrets: Sequence[str] = field(default_factory=tuple)


@dataclass
class SessionFacts:
    """What the metadata table shows; from the session row (or a saved session file)."""

    id: str
    display_name: str
    model: str = ""
    phase: str = ""
    created: datetime | str | None = None
    owner: str = ""
    workflow: str | None = None

    @classmethod
    def from_row(cls, row) -> "SessionFacts":
        spec = row.spec or {}
        return cls(id=row.id, display_name=row.display_name, model=spec.get("model", ""), phase=row.phase,
                   created=row.created, owner=row.owner, workflow=spec.get("workflow"))

    @classmethod
    def from_dict(cls, d: dict) -> "SessionFacts":
        spec = d.get("spec") or {}
        return cls(id=d.get("id", ""), display_name=d.get("display_name") or d.get("id", "Session"),
                   model=spec.get("model") or d.get("model", ""), phase=d.get("phase", ""),
                   created=d.get("created"), owner=d.get("owner", ""),
                   workflow=spec.get("workflow") or d.get("workflow"))

    def to_dict(self) -> dict:
        return {"id": self.id, "display_name": self.display_name, "model": self.model, "phase": self.phase,
                "created": _iso(self.created), "owner": self.owner, "workflow": self.workflow}


def _iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _time(value: Any) -> str:
    """A short UTC time for headings (`2025-01-02 10:11:12 UTC`)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if not isinstance(value, datetime):
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- markdown helpers ------------------------------------------------------------------------------
def _cell_text(s: str) -> str:
    """Table-cell safe: no pipes or newlines, no HTML or control codes."""
    return " ".join(safe_markdown(str(s)).split()).replace("|", "\\|")


def _deep(value: Any, fn) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _deep(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep(v, fn) for v in value]
    return value


def _inert(item: dict) -> dict:
    """A transcript item whose text can go into trusted Markdown: prose escaped, code left as code
    (tool arguments and results are fenced) but stripped of terminal control codes."""
    item = dict(item)
    if item["kind"] in ("user", "assistant", "thinking"):
        item["text"] = safe_markdown(item.get("text", ""))
    elif item["kind"] == "tool":
        item["args"] = _deep(item.get("args"), strip_controls)
        item["result"] = _deep(item.get("result"), strip_controls)
        item["summary"] = strip_controls(item.get("summary") or "")
        item["name"] = strip_controls(item.get("name") or "")
    elif item["kind"] == "question":
        item["questions"] = _deep(item.get("questions"), safe_markdown)
        item["answers"] = _deep(item.get("answers"), safe_markdown)
    return item


def _fence(text: str, lang: str = "") -> str:
    """A fenced code block that no backtick run inside `text` can close early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}"


def _truncate(text: str, limit: int, max_lines: int = 0) -> tuple[str, str]:
    """(shown text, a note when something was cut)."""
    shown = text[:limit] if limit > 0 and len(text) > limit else text
    if max_lines > 0 and shown.count("\n") >= max_lines:
        shown = "\n".join(shown.split("\n")[:max_lines])
    if shown == text:
        return text, ""
    lines = text.count("\n") + 1
    return shown, (f"*… truncated: showing {len(shown):,} of {len(text):,} characters"
                   f" ({shown.count(chr(10)) + 1:,} of {lines:,} lines).*")


def _pretty(value: Any) -> tuple[str, str]:
    """Text and a fence language for tool arguments/results."""
    if value is None:
        return "", ""
    if isinstance(value, str):
        s = value.strip()
        if s[:1] in "{[":
            try:
                return json.dumps(json.loads(s), indent=2, ensure_ascii=False), "json"
            except ValueError:
                pass
        return value, ""
    if isinstance(value, list) and all(isinstance(b, dict) and "type" in b for b in value):
        # provider content blocks: show the text parts, name the others
        parts = [b.get("text", "") if b.get("type") == "text" else f"[{b.get('type')}]" for b in value]
        return "\n".join(parts), ""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str), "json"


def _block(label: str, value: Any, limit: int, max_lines: int = 0) -> str:
    text, lang = _pretty(value)
    shown, note = _truncate(text, limit, max_lines)
    out = f"**{label}**\n\n{_fence(shown, lang)}"
    return out + (f"\n\n{note}" if note else "")


# -- the notebook ----------------------------------------------------------------------------------
def metadata_table(facts: SessionFacts, exported: datetime) -> str:
    rows = [
        ("Session", f"`{facts.id}`"),
        ("Name", _cell_text(facts.display_name)),
        ("Model", _cell_text(facts.model or "—")),
        ("Phase", _cell_text(facts.phase or "—")),
        ("Created", _cell_text(_time(facts.created) or "—")),
        ("Exported", _time(exported)),
        ("User", _cell_text(facts.owner or "—")),
        ("Workflow", _cell_text(facts.workflow or "none")),
    ]
    lines = [f"# {_cell_text(facts.display_name)}", "", "| | |", "|---|---|"]
    lines += [f"| **{k}** | {v} |" for k, v in rows]
    return "\n".join(lines)


def _tool_cell(item: dict, opt: NotebookOptions) -> str:
    name = html.escape(item.get("name") or "tool")
    status = "error" if item.get("is_error") else ("running" if item.get("status") == "running" else "done")
    icon = "❌" if status == "error" else "🔧"
    summary = item.get("summary") or ""
    extra = f" — {_cell_text(summary)}" if summary else ""
    head = f"<details{' open' if opt.open_details else ''}>\n<summary>{icon} Tool: <code>{name}</code>{extra}</summary>"
    parts = [head, "", _block("Arguments", item.get("args"), opt.max_args_chars, opt.max_lines)]
    if item.get("status") == "running" and item.get("result") is None:
        parts += ["", "*No result: the call did not finish.*"]
    else:
        parts += ["", _block("Error" if item.get("is_error") else "Result", item.get("result"), opt.max_result_chars, opt.max_lines)]
    parts += ["", "</details>"]
    return "\n".join(parts)


def _question_cell(item: dict) -> str:
    lines = ["**❓ The agent asked:**", ""]
    answers = item.get("answers")
    for i, q in enumerate(item.get("questions") or []):
        header = q.get("header")
        lines.append(f"{i + 1}. {('**' + header + ':** ') if header else ''}{q.get('question', '')}")
        for o in q.get("options") or []:
            desc = f" — {o.get('description')}" if o.get("description") else ""
            lines.append(f"   - {o.get('label', '')}{desc}")
        if answers is not None and i < len(answers):
            a = answers[i]
            lines.append(f"   - **Answer:** {', '.join(a) if isinstance(a, list) else a}")
    if answers is None:
        lines += ["", "*Not answered yet.*"]
    return "\n".join(lines)


def _feedback(events: Iterable[dict]) -> dict[str, dict]:
    """The latest rating per message from FEEDBACK_RECORDED events."""
    out: dict[str, dict] = {}
    for ev in events:
        if ev.get("type") == "FEEDBACK_RECORDED":
            d = ev.get("data") or {}
            if d.get("message_id"):
                out[d["message_id"]] = d
    return out


def new_markdown_cell(source: str, metadata: dict | None = None) -> nbformat.NotebookNode:
    """A markdown cell without nbformat's per-cell schema validation (thousands of cells: the
    notebook is validated once, by nbconvert); ids are assigned in order by build_notebook."""
    return from_dict({"cell_type": "markdown", "id": "", "metadata": metadata or {}, "source": source})


_SHOWN_PHASES = {"Stopping", "Stopped", "Completed", "Failed"}


def build_notebook(events: Sequence[dict], facts: SessionFacts, options: NotebookOptions | None = None,
                   exported: datetime | None = None) -> nbformat.NotebookNode:
    """The transcript of `events` as a notebook (nbformat v4, markdown cells)."""
    opt = options or NotebookOptions()
    exported = exported or datetime.now(timezone.utc)
    events = [e if isinstance(e, dict) else e.model_dump(mode="json") for e in events]
    tr = fold(events)
    if tr.display_name:
        facts.display_name = tr.display_name
    items = mask_secrets(tr.items, opt.secrets) if opt.secrets else tr.items
    items = [_inert(item) for item in items]
    facts_d = mask_secrets(facts.to_dict(), opt.secrets) if opt.secrets else facts.to_dict()
    facts = SessionFacts(**{**facts_d})
    ratings = _feedback(events)

    cells = [new_markdown_cell(metadata_table(facts, exported), metadata={"jupyter_sessions": {"kind": "metadata"}})]
    in_agent_turn = False
    body = 0
    for item in items:
        kind = item["kind"]
        meta: dict[str, Any] = {"kind": kind}
        if kind == "user":
            in_agent_turn = False
            meta["message_id"] = item["message_id"]
            text = item.get("text", "")
            src = f"## 👤 User · {_time(item.get('ts'))}\n\n{text}"
        elif kind in ("assistant", "thinking", "tool", "question"):
            if kind == "thinking" and not opt.include_thinking:
                continue
            if kind == "assistant":
                meta["message_id"] = item["message_id"]
                text = item.get("text", "")
                if not text.strip():
                    continue
                rating = ratings.get(item["message_id"])
                mark = ""
                if rating:
                    mark = "\n\n*Rated " + ("👍" if rating.get("rating") == "up" else "👎")
                    mark += (f": {_cell_text(mask_secrets(rating.get('comment') or '', opt.secrets))}"
                             if rating.get("comment") else "") + "*"
                src = text + mark
            elif kind == "thinking":
                meta["message_id"] = item["message_id"]
                quoted = "\n".join("> " + ln for ln in item.get("text", "").splitlines())
                src = (f"<details{' open' if opt.open_details else ''}>\n<summary>💭 Thinking</summary>\n\n"
                       f"{quoted}\n\n</details>")
            elif kind == "tool":
                meta["tool_call_id"] = item["tool_call_id"]
                meta["tool"] = item.get("name")
                src = _tool_cell(item, opt)
            else:
                meta["tool_call_id"] = item["tool_call_id"]
                src = _question_cell(item)
            if not in_agent_turn:
                src = f"## 🤖 Assistant · {_time(item.get('ts'))}\n\n" + src
                in_agent_turn = True
        elif kind == "error":
            src = f"> **⚠️ Error:** {_cell_text(item.get('message', ''))}"
        elif kind == "phase":
            if item.get("phase") not in _SHOWN_PHASES:
                continue
            reason = f" — {_cell_text(item['reason'])}" if item.get("reason") else ""
            src = f"*Session {item['phase']}{reason} · {_time(item.get('ts'))}*"
            in_agent_turn = False
        elif kind == "notice":
            d = item.get("data") or {}
            if item["type"] == "REPO_CLONED":
                src = f"*📦 Cloned {_cell_text(d.get('url', ''))} ({_cell_text(d.get('branch') or '')}) into `{d.get('path', '')}`*"
            elif item["type"] == "REPO_CLONE_FAILED":
                src = f"*📦 Could not clone {_cell_text(d.get('url', ''))}: {_cell_text(d.get('error', ''))}*"
            else:
                src = f"*⚠️ {_cell_text(d.get('message', ''))}*"
        else:
            continue
        body += 1
        cells.append(new_markdown_cell(src, metadata={"jupyter_sessions": meta}))
    if body == 0:
        cells.append(new_markdown_cell("*No conversation content found.*"))
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:05d}"  # stable ids: the same session exports to the same notebook
    nb = new_notebook(cells=cells)
    nb.metadata["jupyter_sessions"] = {"format_version": FORMAT_VERSION, "session": facts.to_dict(),
                                       "exported": _iso(exported), "include_thinking": opt.include_thinking}
    nb.metadata["title"] = facts.display_name
    return nb


# -- saved session files (the `json` export) -------------------------------------------------------
def session_document(facts: SessionFacts, events: Sequence[dict], secrets: Sequence[str] = (),
                     exported: datetime | None = None) -> dict:
    """The `json` export: the raw event log plus the session facts; the jupyter-session exporter reads it."""
    doc = {
        "jupyter_sessions": FORMAT_VERSION,
        "exported": _iso(exported or datetime.now(timezone.utc)),
        "session": facts.to_dict(),
        "events": [e if isinstance(e, dict) else e.model_dump(mode="json") for e in events],
    }
    return mask_secrets(doc, secrets) if secrets else doc


def read_session_document(data: dict) -> tuple[SessionFacts, list[dict]]:
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError("not a jupyter-sessions session file: expected an object with an 'events' list")
    return SessionFacts.from_dict(data.get("session") or {}), data["events"]
