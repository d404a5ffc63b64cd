"""Masking secrets in everything a session shows: tool output, events, exports, traces.

Two kinds: values the server knows (its API keys, git tokens, Langfuse keys) are replaced wherever
they appear; secrets it cannot know (a `.env` in the user's repo the agent printed) are caught by
the shapes of common credentials and by `NAME=value` lines whose name says secret.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterable

MASK = "[secret masked]"

# Shapes of well-known credentials (prefix-based, so they don't hit ordinary text).
_TOKEN_SHAPES = [
    r"sk-ant-[A-Za-z0-9_\-]{16,}",                     # Anthropic
    r"sk-(?:proj-)?[A-Za-z0-9_\-]{32,}",               # OpenAI-style
    r"AIza[0-9A-Za-z_\-]{35}",                         # Google API key
    r"gh[pousr]_[A-Za-z0-9]{36,}",                     # GitHub tokens
    r"github_pat_[A-Za-z0-9_]{40,}",                   # GitHub fine-grained
    r"glpat-[A-Za-z0-9_\-]{20,}",                      # GitLab
    r"xox[abpors]-[A-Za-z0-9\-]{10,}",                 # Slack
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",                      # AWS access key id
    r"pk-lf-[A-Za-z0-9\-]{8,}|sk-lf-[A-Za-z0-9\-]{8,}",  # Langfuse
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]
# `API_KEY=...`, `password: ...`, `export AWS_SECRET_ACCESS_KEY="..."`: keep the name, mask the value.
# Anchored at a word start rather than a line start: tools prefix lines (`12\tKEY=…` from read_file,
# `path:3:KEY=…` from grep), and the secret must be masked there too.
_ASSIGNMENT = (
    r"(?i)(?<![\w.\-])((?:export\s+)?[\w.\-]*(?:secret|token|passw(?:or)?d|api[_\-]?key|access[_\-]?key"
    r"|private[_\-]?key|credential)s?[\w.\-]*\s*[=:]\s*)(['\"]?)([^\s'\"#]{6,})\2"
)
_SHAPES = re.compile("|".join(f"(?:{p})" for p in _TOKEN_SHAPES))
_ASSIGN = re.compile(_ASSIGNMENT)


@lru_cache(maxsize=64)
def _known_pattern(known: tuple[str, ...]) -> re.Pattern | None:
    values = sorted({k for k in known if k and len(k) >= 4}, key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in values)) if values else None


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    """`text` with known secret values and credential-shaped strings masked."""
    if not text:
        return text
    pattern = _known_pattern(tuple(known))
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _SHAPES.sub(MASK, text)
    return _ASSIGN.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(2)}", text)


def redact(value: Any, known: Iterable[str] = ()) -> Any:
    """Recursively redact strings inside dicts, lists and tuples (keys included)."""
    known = tuple(known)
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, dict):
        return {redact(k, known) if isinstance(k, str) else k: redact(v, known) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, known) for v in value]
    return value
