"""The live chat widget of one session (anywidget; front end in `jupyter_sessions/static/chat.js`).

How events reach the browser: the kernel follows the session's websocket in a background thread
(`client.Follower`, one per session per kernel, reconnecting from the last seq) and pushes them into
synced state. The log travels as immutable `EventSegment` child widgets, each synced once, plus a
short `tail` of the newest events that is re-sent as it grows and sealed into a segment when it
gets long or a turn settles. So a page reload restores the whole history from the kernel, and a
long session costs about its own size in bandwidth, not its size per update.

Why the kernel and not the browser: the kernel reaches the server at the address the server gave
it (loopback, with the server's token) whatever URL the browser uses (JupyterHub's proxy, VS Code,
port forwarding), and updates arrive while the cell has finished or other cells run (comm messages
from a thread need no idle kernel). The Markdown snapshot is computed from the same events.
Actions (send, answer, stop, resume, feedback) go straight from the browser to the REST API when
the page itself can reach it (same server: works while the kernel is busy), else through the kernel.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import traitlets as t

from ..client import Follower, SessionsClient, SessionsError, compact_into
from .snapshot import METADATA_KEY, SeqTranscript, markdown_snapshot

STATIC = Path(__file__).resolve().parent.parent / "static"
RESTING = {"Stopped", "Completed", "Failed"}
SETTLE_TYPES = {"RUN_FINISHED", "RUN_ERROR", "QUESTION_ASKED", "QUESTION_ANSWERED", "PHASE_CHANGED",
                "AGENT_STATE_CHANGED", "TOOL_CALL_RESULT"}
SEGMENT_EVENTS = 200
SEGMENT_BYTES = 32_000


class EventSegment(ipywidgets.Widget):
    """An immutable slice of a session's (compacted) event log; synced to the front end once."""

    events = t.List().tag(sync=True)
    first_seq = t.Int(0).tag(sync=True)
    last_seq = t.Int(0).tag(sync=True)


class ChatWidget(anywidget.AnyWidget):
    """A live view of one session: messages, tool and thinking blocks, questions, Stop/Resume.

    `ChatWidget(session_id, client=None, start_seq=0)`: items created at or before `start_seq` are
    folded behind a "show earlier" button (the `%%agent` widget starts at the message it sent).
    """

    _esm = STATIC / "chat.js"
    _css = STATIC / "chat.css"

    session_id = t.Unicode("").tag(sync=True)
    session = t.Dict().tag(sync=True)
    segments = t.List(t.Instance(EventSegment)).tag(sync=True, **ipywidgets.widget_serialization)
    tail = t.List().tag(sync=True)
    start_seq = t.Int(0).tag(sync=True)
    status = t.Unicode("connecting").tag(sync=True)
    browser_actions = t.Bool(True).tag(sync=True)

    def __init__(self, session_id: str, client: SessionsClient | None = None, *, start_seq: int = 0,
                 session: dict | None = None, **kwargs: Any):
        self.client = client or SessionsClient()
        info = session or self.client.session(session_id)
        super().__init__(session_id=info["id"], session=_session_view(info), start_seq=start_seq, **kwargs)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._tr = SeqTranscript()
        self._tail: list[dict] = []
        self._tail_bytes = 0
        self._segments: list[EventSegment] = []
        self._delivered: dict[str, int] = {}
        self._state_seq = 0
        self.on_msg(self._on_front_end_msg)
        self._follower: Follower = self.client.follower(self.session_id)
        try:
            with self._lock:
                history = self._follower.subscribe(self._on_events, self._on_status)
                self._ingest(history, initial=True)
                self.status = self._follower.status
        except BaseException:
            self.close()  # no half-made widget left in the kernel's registry
            raise

    # --- state ------------------------------------------------------------------------------
    @property
    def transcript(self) -> SeqTranscript:
        """The folded transcript (see `jupyter_sessions.transcript`)."""
        return self._tr

    @property
    def events(self) -> list[dict]:
        """The compacted event log as the front end has it (segments + tail)."""
        with self._lock:
            return [e for s in self._segments for e in s.events] + list(self._tail)

    @property
    def last_seq(self) -> int:
        return self._tr.last_seq

    def _on_events(self, batch: list[dict]) -> None:
        with self._lock:
            self._ingest(batch)

    def _on_status(self, status: str) -> None:
        with self._lock:
            self.status = status
            self._changed.notify_all()

    def _ingest(self, events: list[dict], initial: bool = False) -> None:
        if not events:
            return
        settle = False
        info_before = (self._tr.phase, self._tr.agent_state, self._tr.display_name)
        for ev in events:
            if ev["seq"] <= self._tr.last_seq:
                continue
            self._tr.apply(ev)
            n = len(self._tail)
            compact_into(self._tail, ev)
            self._tail_bytes += len(json.dumps(ev)) if len(self._tail) > n else len(ev["data"].get("delta", ""))
            if ev["type"] == "MESSAGE_DELIVERED":
                self._delivered[ev["data"].get("message_id", "")] = ev["seq"]
            elif ev["type"] == "AGENT_STATE_CHANGED":
                self._state_seq = ev["seq"]
            settle = settle or ev["type"] in SETTLE_TYPES
            if len(self._tail) >= SEGMENT_EVENTS or self._tail_bytes >= SEGMENT_BYTES:
                self._seal()
        if settle and len(self._tail) >= 8:
            self._seal()
        with self.hold_sync():
            if (self._tr.phase, self._tr.agent_state, self._tr.display_name) != info_before:
                self.session = {**self.session, **{k: v for k, v in (
                    ("phase", self._tr.phase), ("agent_state", self._tr.agent_state),
                    ("display_name", self._tr.display_name)) if v}}
            if len(self._segments) != len(self.segments):
                self.segments = list(self._segments)
            self.tail = list(self._tail)
        self._changed.notify_all()

    def _seal(self) -> None:
        if not self._tail:
            return
        seg = EventSegment(events=self._tail, first_seq=self._tail[0].get("seq0", self._tail[0]["seq"]),
                           last_seq=self._tail[-1]["seq"])
        self._segments.append(seg)
        self._tail = []
        self._tail_bytes = 0

    # --- waiting ----------------------------------------------------------------------------
    def settled(self, message_id: str | None = None) -> bool:
        """Is the agent done with `message_id` (or with everything): idle, asking, or at rest?"""
        with self._lock:
            if self._tr.phase in RESTING:
                return True
            if message_id is not None and message_id not in self._delivered:
                return False
            since = self._delivered.get(message_id, 0) if message_id else 0
            return self._tr.agent_state in ("idle", "waiting_input") and self._state_seq > since

    def wait(self, message_id: str | None = None, timeout: float | None = None) -> bool:
        """Block until `settled(message_id)`; returns False on timeout or when the stream closed."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self.settled(message_id):
                if self.status == "closed":
                    return False
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(0.5 if left is None else min(0.5, left))
            return True

    # --- actions (from the front end when the browser cannot reach the API itself) ------------
    def _on_front_end_msg(self, _widget, content: dict, _buffers) -> None:
        if not isinstance(content, dict) or "action" not in content:
            return
        rid = content.get("id")
        try:
            result = self.act(content["action"], content)
            self.send({"reply": rid, "ok": True, "result": result})
        except SessionsError as e:
            self.send({"reply": rid, "ok": False, "error": str(e)})
        except Exception as e:  # never a traceback in the notebook for a button click
            self.send({"reply": rid, "ok": False, "error": f"{type(e).__name__}: {e}"})

    def act(self, action: str, args: dict) -> Any:
        sid, c = self.session_id, self.client
        if action == "send":
            return c.send(sid, str(args.get("text", "")))
        if action == "answer":
            return _brief(c.answer(sid, str(args.get("tool_call_id", "")), list(args.get("answers") or [])))
        if action == "stop":
            return _brief(c.stop(sid))
        if action == "resume":
            return _brief(c.resume(sid))
        if action == "feedback":
            return c.feedback(sid, str(args.get("message_id", "")), str(args.get("rating", "")),
                              args.get("comment") or None)
        raise SessionsError(f"unknown action {action!r}")

    # --- output -----------------------------------------------------------------------------
    def markdown(self) -> str:
        with self._lock:
            return markdown_snapshot(self._tr, start_seq=self.start_seq, session=self.session)

    def _repr_mimebundle_(self, **kwargs: Any):
        bundle = super()._repr_mimebundle_(**kwargs)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        data["text/markdown"] = self.markdown()
        name = self.session.get("display_name") or self.session_id
        data["text/plain"] = f"<agent session {self.session_id}: {name} · {self.session.get('phase', '')}>"
        metadata = {**(metadata or {}), METADATA_KEY: {"session_id": self.session_id, "start_seq": self.start_seq}}
        return data, metadata

    def close(self) -> None:
        follower = getattr(self, "_follower", None)
        if follower is not None:
            follower.unsubscribe(self._on_events)
        for seg in getattr(self, "_segments", []):
            seg.close()
        super().close()


def _session_view(info: dict) -> dict:
    spec = info.get("spec") or {}
    return {"id": info["id"], "display_name": info.get("display_name"), "phase": info.get("phase"),
            "agent_state": info.get("agent_state"), "model": spec.get("model"), "sandbox": info.get("sandbox"),
            "isolated": info.get("isolated")}


def _brief(session: Any) -> Any:
    return {"phase": session.get("phase")} if isinstance(session, dict) else session
