"""Langfuse traces of agent runs, read from the event log (the agent loop knows nothing of them).

Each run (RUN_STARTED ... RUN_FINISHED / RUN_ERROR) becomes one trace with a root `agent`
observation carrying the session id, user id, workflow and model; each model call a `generation`
(input, output, usage, timing) and each tool call a `tool` span (arguments, result, error level).

Trace ids are derived from (session id, run id), so anything that knows which run produced a
message (feedback scores, links from the UI) finds its trace without asking Langfuse or keeping a
table, and a score can be sent even if the trace was sampled out or sent later.

Langfuse is optional: without keys no client exists, nothing is sent and nothing fails. The SDK
(OpenTelemetry-based) exports spans by OTLP/HTTP to `{base_url}/api/public/otel/v1/traces`.

Per-model-call detail: the AG-UI stream has no "model call finished" event, so generations are
delimited by the stream itself (a step starts at RUN_STARTED or after the last tool result of the
previous step, its output is the text, thinking and tool calls that follow). When the agent emits
MODEL_CALL_FINISHED {runId, model, usage: {input_tokens, output_tokens, ...}, stopReason,
latencyMs, timeToFirstTokenMs} after each call, the generation gets that call's usage and model;
otherwise a run's usage (RUN_FINISHED.usage) goes to its only generation, or to the run's metadata
when it made several calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Sequence

log = logging.getLogger("jupyter_sessions.tracing")

RESTING = {"Stopped", "Completed", "Failed"}
MAX_IO_CHARS = 20_000  # inputs/outputs longer than this are cut (with a note) before they leave


@dataclass
class LangfuseSettings:
    """Langfuse connection; both keys are needed, else tracing and scores are off."""

    public_key: str | None = None
    secret_key: str | None = None
    base_url: str | None = None  # default: the SDK's (LANGFUSE_BASE_URL / LANGFUSE_HOST, then Langfuse Cloud)
    environment: str | None = None
    release: str | None = None
    timeout: int = 5
    flush_interval: float | None = None
    sample_rate: float | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.public_key and self.secret_key)

    def secrets(self) -> list[str]:
        return [s for s in (self.secret_key,) if s]


def trace_id_for_run(session_id: str, run_id: str) -> str:
    """The Langfuse trace id of one run: 32 hex chars derived from the ids (the SDK's own seed scheme)."""
    from langfuse import Langfuse

    return Langfuse.create_trace_id(seed=f"jupyter-sessions/{session_id}/{run_id}")


def make_client(settings: LangfuseSettings):
    """A Langfuse client with its own OpenTelemetry TracerProvider (the process-global one is left
    alone), or None when Langfuse is not configured."""
    if not settings.enabled:
        return None
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import TracerProvider

    kwargs: dict[str, Any] = dict(public_key=settings.public_key, secret_key=settings.secret_key,
                                  timeout=settings.timeout, tracer_provider=TracerProvider())
    for name in ("base_url", "environment", "release", "flush_interval", "sample_rate"):
        if getattr(settings, name) is not None:
            kwargs[name] = getattr(settings, name)
    return Langfuse(**kwargs)


@dataclass
class TraceInfo:
    """Trace-level attributes of a session's runs."""

    session_id: str
    user_id: str
    model: str
    workflow: str | None = None
    name: str = "agent-run"

    @classmethod
    def from_row(cls, row) -> "TraceInfo":
        spec = row.spec or {}
        return cls(session_id=row.id, user_id=row.owner, model=spec.get("model", ""),
                   workflow=spec.get("workflow"))


def _ns(ts: Any) -> int | None:
    if isinstance(ts, str):
        try:
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        return int(ts.timestamp() * 1e9)
    return None


def _end(obs: Any, started_ns: int, end_ns: int | None) -> None:
    """End an observation at `end_ns` (an event's time), never before it started."""
    obs.end(end_time=max(end_ns, started_ns) if end_ns else None)


def _cut(value: Any, limit: int = MAX_IO_CHARS) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"\n… [truncated: {len(value):,} characters]"
    return value


def _short(value: Any) -> str:
    s = value if isinstance(value, str) else json.dumps(value, default=str)
    return s[:200]


@dataclass
class _Obs:
    obs: Any
    end_ns: int | None = None
    done: bool = False
    started_ns: int = field(default_factory=time.time_ns)


@dataclass
class _Generation:
    obs: Any
    input: list = field(default_factory=list)
    texts: dict = field(default_factory=dict)  # messageId -> text
    thinking: dict = field(default_factory=dict)
    tool_calls: dict = field(default_factory=dict)  # toolCallId -> {name, arguments}
    last_ns: int | None = None
    closed: bool = False  # its stream ended (the tools ran or the run ended)
    detail: dict | None = None  # from MODEL_CALL_FINISHED
    started_ns: int = field(default_factory=time.time_ns)

    @property
    def empty(self) -> bool:
        return not (self.texts or self.thinking or self.tool_calls or self.detail)

    def output(self) -> dict:
        out: dict[str, Any] = {}
        if self.thinking:
            out["thinking"] = "\n\n".join(self.thinking.values())
        out["text"] = "\n\n".join(t for t in self.texts.values() if t)
        if self.tool_calls:
            out["tool_calls"] = [{"id": k, **v} for k, v in self.tool_calls.items()]
        return out


class RunTrace:
    """One run's observations; built as events arrive, exported when the run ends."""

    def __init__(self, client, info: TraceInfo, run_id: str, mask: Callable[[Any], Any]):
        from langfuse import propagate_attributes

        self.client, self.info, self.run_id, self.mask = client, info, run_id, mask
        self.trace_id = trace_id_for_run(info.session_id, run_id)
        self.generations: list[_Generation] = []
        self.tools: dict[str, _Obs] = {}
        self.step_tools: set[str] = set()
        self.step_results: set[str] = set()
        self.user_input: list[str] = []
        self.retries = 0
        self._propagate = propagate_attributes
        with self._context():
            self.root = client.start_observation(
                trace_context={"trace_id": self.trace_id}, name=info.name, as_type="agent",
                metadata={"run_id": run_id, "session_id": info.session_id, "workflow": info.workflow,
                          "model": info.model})
        self.started_ns = time.time_ns()
        self.gen: _Generation | None = None
        self.pending_input: list = []
        self.open_generation()

    def _context(self):
        md = {"run_id": self.run_id, "model": self.info.model[:200]}
        if self.info.workflow:
            md["workflow"] = self.info.workflow[:200]
        return self._propagate(user_id=self.info.user_id[:200], session_id=self.info.session_id[:200],
                               trace_name=self.info.name, metadata=md, tags=["jupyter-sessions"])

    # -- building ---------------------------------------------------------------------------------
    def open_generation(self) -> None:
        """A model call starts: at the run's start and after each step's tool results."""
        pending, self.pending_input = self.pending_input, []
        with self._context():
            obs = self.root.start_observation(name="model-call", as_type="generation", model=self.info.model)
        self.gen = _Generation(obs=obs, input=pending)
        self.generations.append(self.gen)

    def _add_input(self, item: dict) -> None:
        """Input for the model call that is about to start (or the next one)."""
        if self.gen is not None and self.gen.empty and not self.gen.closed:
            self.gen.input.append(item)
        else:
            self.pending_input.append(item)

    def _close_step(self) -> None:
        if self.gen is not None:
            self.gen.closed = True

    def apply(self, ev: dict) -> None:  # noqa: C901 - one branch per event type
        t, d = ev["type"], ev.get("data") or {}
        ns = _ns(ev.get("ts"))
        gen = self.gen
        if t == "MESSAGE_DELIVERED" and "text" in d:
            self.user_input.append(d["text"])
            self._add_input({"role": "user", "content": self.mask(d["text"])})
        elif t in ("TEXT_MESSAGE_CONTENT", "REASONING_MESSAGE_CONTENT", "TEXT_MESSAGE_START", "REASONING_START",
                   "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TEXT_MESSAGE_END", "REASONING_END"):
            if gen is None or gen.closed:
                self.open_generation()
                gen = self.gen
            gen.last_ns = ns
            mid = d.get("messageId") or ""
            if t == "TEXT_MESSAGE_START":
                gen.texts.setdefault(mid, "")
            elif t == "TEXT_MESSAGE_CONTENT":
                gen.texts[mid] = gen.texts.get(mid, "") + d.get("delta", "")
            elif t == "REASONING_MESSAGE_CONTENT":
                gen.thinking[mid] = gen.thinking.get(mid, "") + d.get("delta", "")
            elif t == "TOOL_CALL_START":
                tid = d.get("toolCallId", "")
                gen.tool_calls[tid] = {"name": d.get("toolCallName", ""), "arguments": ""}
                self.step_tools.add(tid)
            elif t == "TOOL_CALL_ARGS":
                call = gen.tool_calls.get(d.get("toolCallId", ""))
                if call is not None:
                    call["arguments"] += d.get("delta", "")
            elif t == "TOOL_CALL_END":
                tid = d.get("toolCallId", "")
                call = gen.tool_calls.get(tid)
                if call is not None and tid not in self.tools:
                    args = call["arguments"]
                    try:
                        args = json.loads(args) if args else {}
                    except ValueError:
                        pass
                    call["arguments"] = args
                    with self._context():
                        obs = self.root.start_observation(name=call["name"] or "tool", as_type="tool",
                                                          input=self.mask(args), metadata={"tool_call_id": tid})
                    self.tools[tid] = _Obs(obs)
        elif t == "MODEL_CALL_FINISHED":
            if gen is None:
                return
            gen.detail = d
            gen.closed = True
            if ns:
                gen.last_ns = ns
        elif t == "TOOL_CALL_RESULT":
            tid = d.get("toolCallId", "")
            if tid in self.step_tools:
                self._close_step()  # the model call's stream ended; its tools are running
            entry = self.tools.get(tid)
            if entry is None:  # a call of an earlier run (e.g. the question this run resumes)
                with self._context():
                    obs = self.root.start_observation(name=d.get("toolCallName") or "tool", as_type="tool",
                                                      metadata={"tool_call_id": tid, "from_earlier_run": True})
                entry = self.tools[tid] = _Obs(obs)
            result = d.get("content")
            level = "ERROR" if d.get("isError") else None
            entry.obs.update(output=self.mask(_cut(result if isinstance(result, str) else json.dumps(result, default=str))),
                             level=level, status_message=_short(result) if level else None)
            entry.end_ns = ns
            entry.done = True
            self._add_input({"role": "tool", "tool_call_id": tid, "content": self.mask(_cut(str(result), 2000))})
            self.step_results.add(tid)
            if self.step_tools and self.step_tools <= self.step_results:
                self.step_tools, self.step_results = set(), set()
                self.open_generation()  # the next model call starts now
        elif t == "QUESTION_ANSWERED":
            self._add_input({"role": "user", "content": self.mask(json.dumps(d.get("answers"), default=str))})
        elif t == "MODEL_RETRYING":
            self.retries += 1
            if gen is not None:
                gen.obs.update(metadata={"retries": self.retries, "last_retry_reason": _short(d.get("message", ""))})

    # -- ending -----------------------------------------------------------------------------------
    def finish(self, ev: dict | None, *, error: str | None = None, cancelled: str | None = None) -> str:
        """End every observation of the run (spans go out now); returns the trace id."""
        d = (ev or {}).get("data") or {}
        end_ns = _ns((ev or {}).get("ts"))
        usage = d.get("usage") or []
        gens = [g for g in self.generations if not g.empty]
        per_call = any(g.detail for g in gens)
        for g in self.generations:
            if g.empty and not (error and g is self.gen):
                continue  # a model call that never happened: never ended, never exported
            upd: dict[str, Any] = {"input": self.mask(g.input) if g.input else None, "output": self.mask(g.output())}
            if g.detail:
                u = g.detail.get("usage") or {}
                upd["model"] = g.detail.get("model") or self.info.model
                upd["usage_details"] = _usage(u)
                upd["metadata"] = {k: g.detail[k] for k in ("stopReason", "latencyMs", "timeToFirstTokenMs")
                                   if k in g.detail}
            elif not per_call and len(gens) == 1 and usage:
                upd["usage_details"] = _usage_sum(usage)
            if error and g is self.gen and g.empty:
                upd.update(level="ERROR", status_message=_short(error))
            g.obs.update(**{k: v for k, v in upd.items() if v is not None})
            _end(g.obs, g.started_ns, g.last_ns or end_ns)
        for entry in self.tools.values():
            if not entry.done:
                entry.obs.update(level="WARNING", status_message=cancelled or error or "no result in this run")
            _end(entry.obs, entry.started_ns, entry.end_ns or end_ns)
        final_text = next((g.output()["text"] for g in reversed(gens) if g.output().get("text")), "")
        md: dict[str, Any] = {"outcome": (d.get("outcome") or {}).get("type") if d else None}
        if usage and (per_call or len(gens) != 1):
            md["usage"] = usage
        if self.retries:
            md["retries"] = self.retries
        root_upd: dict[str, Any] = {"input": self.mask("\n\n".join(self.user_input)) if self.user_input else None,
                                    "output": self.mask(_cut(final_text)) if final_text else None,
                                    "metadata": {k: v for k, v in md.items() if v is not None}}
        if error:
            root_upd.update(level="ERROR", status_message=_short(error))
        elif cancelled:
            root_upd.update(level="WARNING", status_message=_short(cancelled))
        self.root.update(**{k: v for k, v in root_upd.items() if v is not None})
        _end(self.root, self.started_ns, end_ns)
        return self.trace_id


def _usage(u: dict) -> dict[str, int]:
    keys = {"input_tokens": "input", "inputTokens": "input", "output_tokens": "output", "outputTokens": "output",
            "cache_read_input_tokens": "cache_read_input_tokens",
            "cache_creation_input_tokens": "cache_creation_input_tokens"}
    out: dict[str, int] = {}
    for k, v in u.items():
        if k in keys and isinstance(v, (int, float)):
            out[keys[k]] = out.get(keys[k], 0) + int(v)
    return out


def _usage_sum(entries: list) -> dict[str, int]:
    total: dict[str, int] = {}
    for e in entries:
        for k, v in _usage(e).items():
            total[k] = total.get(k, 0) + v
    return total


class SessionTracer:
    """Turns one session's events into traces (a pure consumer: feed events in seq order)."""

    def __init__(self, client, info: TraceInfo, secrets: Sequence[str] = ()):
        from .export.notebook import mask_secrets

        self.client, self.info = client, info
        self._secrets = list(secrets)
        self._mask = (lambda v: mask_secrets(v, self._secrets)) if self._secrets else (lambda v: v)
        self.run: RunTrace | None = None
        self.finished: list[str] = []  # trace ids of ended runs
        self._delivered_text: dict[str, str] = {}
        self._carry: list[dict] = []  # events before a run that belong to it (a question's answer)

    def apply(self, ev: dict) -> None:
        t, d = ev["type"], ev.get("data") or {}
        if t == "USER_MESSAGE":
            self._delivered_text[d.get("message_id", "")] = d.get("text", "")
            return
        if t == "MESSAGE_DELIVERED":  # carry the text along for the generation's input
            ev = {**ev, "data": {**d, "text": self._delivered_text.pop(d.get("message_id", ""), "")}}
        if t == "SESSION_RENAMED":
            return
        if t == "RUN_STARTED":
            if self.run is not None:
                self._end(None, cancelled="superseded by a new run")
            try:
                self.run = RunTrace(self.client, self.info, d.get("runId") or "", self._mask)
                carry, self._carry = self._carry, []
                for e in carry:
                    self.run.apply(e)
            except Exception:
                log.exception("could not start a Langfuse trace")
                self.run = None
            return
        if self.run is None:
            if t == "QUESTION_ANSWERED":
                self._carry.append(ev)
            return
        if t == "RUN_FINISHED":
            self._end(ev)
        elif t == "RUN_ERROR":
            self._end(ev, error=d.get("message") or "run failed")
        elif t == "PHASE_CHANGED" and d.get("phase") in RESTING | {"Stopping"}:
            self._end(ev, cancelled=f"session {d.get('phase')}: {d.get('reason') or ''}".strip())
        else:
            try:
                self.run.apply(ev)
            except Exception:
                log.exception("Langfuse tracing of %s failed", t)

    def _end(self, ev: dict | None, **kw) -> None:
        run, self.run = self.run, None
        try:
            self.finished.append(run.finish(ev, **kw))
        except Exception:
            log.exception("could not end a Langfuse trace")


class Tracing:
    """Follows live sessions' event logs and traces their runs in Langfuse (when configured).

    Wiring: `watch(session_id)` when a session's agent starts (provision/resume); the watcher ends
    itself when the session comes to rest and is idempotent per session. `close()` at shutdown.
    """

    def __init__(self, settings: LangfuseSettings, events, info: Callable[[str], Awaitable[TraceInfo]],
                 secrets: Sequence[str] = (), client=None):
        self.settings = settings
        self.events = events
        self._info = info
        self._secrets = [*secrets, *settings.secrets()]
        self.client = client if client is not None else make_client(settings)
        self._tasks: dict[str, asyncio.Task] = {}

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def watch(self, session_id: str, after: int | None = None) -> asyncio.Task | None:
        """Trace the session's runs from `after` (default: its current last seq) on."""
        if not self.enabled:
            return None
        task = self._tasks.get(session_id)
        if task is not None and not task.done():
            return task
        task = asyncio.ensure_future(self._follow(session_id, after))
        self._tasks[session_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(session_id, None) if self._tasks.get(session_id) is _t else None)
        return task

    async def _follow(self, session_id: str, after: int | None) -> None:
        try:
            info = await self._info(session_id)
            if after is None:
                after = await self._last_seq(session_id)
            tracer = SessionTracer(self.client, info, self._secrets)
            async for ev in self.events.follow(session_id, after):
                e = ev.model_dump() if hasattr(ev, "model_dump") else ev
                tracer.apply(e)
                if e["type"] == "PHASE_CHANGED" and (e.get("data") or {}).get("phase") in RESTING:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Langfuse tracing of session %s stopped", session_id)

    async def _last_seq(self, session_id: str) -> int:
        row = await self.events.store.get_session(session_id)
        return row.last_seq if row is not None else 0

    def flush(self) -> None:
        if self.client is not None:
            self.client.flush()

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        if self.client is not None:
            await asyncio.to_thread(self.client.shutdown)
