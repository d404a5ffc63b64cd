"""Text from a model or a tool made safe to show: no terminal control codes, no active HTML.

Used wherever a transcript becomes trusted Markdown (exports, the widget's saved snapshot): HTML
is escaped outside code (fenced blocks and inline spans, where Markdown shows it literally anyway),
and link schemes that run code are renamed so no renderer treats them as links.
"""

from __future__ import annotations

import re

# CSI/OSC/other ESC sequences, then the remaining C0/C1 controls except tab and newline.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SCHEME = re.compile(r"(?i)\b(javascript|vbscript|data|file)(\s*):")
_CODE = re.compile(r"(`{3,}[\s\S]*?`{3,}|`[^`\n]*`)")


def strip_controls(text: str) -> str:
    """Remove ANSI escape sequences and control characters (keeps newlines and tabs)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_markdown(text: str) -> str:
    """Markdown that renders as written, minus raw HTML, script links and control codes."""
    parts = _CODE.split(strip_controls(str(text or "")))
    out = [p if i % 2 else _escape_html(p) for i, p in enumerate(parts)]  # odd parts are code
    return _SCHEME.sub(r"\1-blocked\2:", "".join(out))
