"""Notebook widgets for sessions: `ChatWidget` (the live chat of one session).

`snapshot` (the Markdown transcript of a widget's output) needs no ipywidgets; `ChatWidget` is
imported lazily so the server can use `snapshot` without the widget stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ChatWidget", "EventSegment"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import chat

        return getattr(chat, name)
    raise AttributeError(name)
