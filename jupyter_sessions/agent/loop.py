"""The agent loop: one asyncio task per session that turns user messages into model steps and tool calls.

A run starts at a user message and ends when the model ends its turn, or pauses on
`ask_user_question` (the agent then waits in `waiting_input` with the question stored in the
session row, so it survives restarts). Every model delta becomes an AG-UI event in the session's
event log; the history the model sees is stored as provider-neutral blocks (`history.py`).

Turn semantics (DESIGN.md): a message sent while the agent works is queued and handed to the model
at the next tool boundary, as text after that step's tool_results, or as the next turn when the
model was only writing text. A message sent while a question waits counts as the user's reply: the
question is dismissed (the model is told) and the message follows. Nothing is dropped or reordered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import secrets
from dataclasses import dataclass, field

from ..models import AgentState
from ..repos import strip_userinfo
from . import history, questions
from .context import AgentContext
from .providers import make_provider
from .providers.base import (
    BlockDelta,
    BlockStart,
    BlockStop,
    Provider,
    ProviderError,
    StepEnd,
    StepRequest,
)
from .tools import Tools, mask_secrets

log = logging.getLogger("jupyter_sessions.agent")

ASK = questions.TOOL_NAME

SYSTEM_PROMPT = """\
You are a coding agent working in a session of jupyter-sessions. You have your own sandbox: a \
Linux environment whose working directory is /workspace, where the user's repositories are \
cloned under /workspace/repos. Use the tools to read, search, edit and run things there; paths \
outside /workspace are not reachable and the network may be disabled.

Work step by step. Read before you edit, keep changes focused, and check your work (run the \
code or the tests) before you say it is done. Keep your messages short: say what you are about \
to do and what you found. When a decision really belongs to the user (requirements, trade-offs, \
preferences), ask with the ask_user_question tool instead of guessing. The user may send you \
messages while you work; they appear after your tool results, and you should take them into \
account. Finish with a brief summary of what you did and anything left open."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


class RunFailure(Exception):
    """The run cannot continue; the message goes into RUN_ERROR."""

    def __init__(self, message: str, code: str = "provider_error"):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class _Resume:
    """How a run picks up a step that paused on a question."""

    pending: dict
    answers: list | None = None  # normalized answers; None = dismissed by a chat message
    ack: asyncio.Future | None = None


@dataclass
class _Step:
    content: list[dict]
    uses: list[dict]
    stop_reason: str
    usage: dict = field(default_factory=dict)


def display_name_from(text: str) -> str:
    """A session name from the first message: its first non-empty line, cleaned, at most 60 chars."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^[#>\-*\s]+", "", line)
    line = re.sub(r"[`*_]+", "", line)
    line = re.sub(r"\s+", " ", line).strip()
    if len(line) > 60:
        cut = line[:60].rsplit(" ", 1)[0] if " " in line[:60] else line[:59]
        line = cut.rstrip(" ,.;:") + "…"
    return line


class Agent:
    """One session's agent. The manager calls start, post_message, answer and shutdown."""

    def __init__(self, ctx: AgentContext):
        self.ctx = ctx
        self.sid = ctx.session_id
        self._secrets = ctx.providers.secrets()
        self._tools = Tools(ctx.sandbox, self._secrets)
        self._provider: Provider | None = None
        self._state = AgentState.idle
        self._messages: list[dict] = []
        self._queue: list[tuple[str, str]] = []  # (message_id, text), not yet given to the model
        self._task: asyncio.Task | None = None
        self._pending: dict | None = None  # {tool_call_id, questions, results}
        self._next_resume: _Resume | None = None  # an answer that came while the paused run wound down
        self._auto_name = False
        self._closed = False
        self._shutdown: asyncio.Task | None = None
        # the run in progress
        self._run_id: str | None = None
        self._run_open = False  # RUN_STARTED sent, RUN_FINISHED / RUN_ERROR not yet
        self._open: dict[int, tuple[str, str]] = {}  # stream block index -> (kind, event id)
        self._deltas: list[list] = []  # [kind, event id, text] waiting for the flusher
        self._flusher: asyncio.Task | None = None
        self._streamed_tools: list[str] = []  # tool calls of the step being streamed (not stored yet)
        self._last_stop = "end_turn"
        self._step_uses: list[dict] | None = None
        self._step_results: dict[str, dict] = {}
        self._tool_running = False
        self._cancel_reason: str | None = None
        self._usage = {"input_tokens": 0, "output_tokens": 0}
        # working-time budget (spec.timeout)
        self._worked = 0.0
        self._work_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timeout_task: asyncio.Task | None = None

    # -- public API -------------------------------------------------------------------------------
    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Restore from the store: history, a pending question, repairs; then report the state."""
        self._messages = await self.ctx.store.load_messages(self.sid)
        row = await self.ctx.store.get_session(self.sid)
        st = dict(row.state or {}) if row is not None else {}
        self._auto_name = bool(st.get("auto_name"))
        pending = st.get("pending_question")
        if pending and self._pending_matches(pending):
            self._pending = pending
        elif pending:
            await self._update_state(pending_question=None)
        await self._repair(skip=self._pending_skip())
        if self._pending is not None:
            self._state = AgentState.waiting_input
            if row is None or row.agent_state != AgentState.waiting_input.value:
                await self._emit("AGENT_STATE_CHANGED", {"state": "waiting_input"}, agent_state="waiting_input")
        else:
            self._state = AgentState.idle
            await self._emit("AGENT_STATE_CHANGED", {"state": "idle"}, agent_state="idle")

    def post_message(self, text: str, message_id: str) -> None:
        """Queue a user message (its USER_MESSAGE event exists); start a run unless one is going."""
        if self._closed:
            raise RuntimeError("the agent is shut down")
        self._queue.append((message_id, text))
        if self.busy:
            return  # delivered at the next tool boundary or as the next turn
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._start(_Resume(pending))  # the message is the user's reply to the question
        else:
            self._start(None)

    async def answer(self, tool_call_id: str, answers: list) -> None:
        """Answer the pending question; raises questions.AnswerError when the answers don't fit."""
        p = self._pending
        if self._closed or p is None:
            raise questions.AnswerError("the agent is not waiting for an answer")
        if tool_call_id != p["tool_call_id"]:
            raise questions.AnswerError(
                f"no pending question with tool call id {tool_call_id!r} (the pending one is {p['tool_call_id']!r})")
        norm = questions.validate_answers(p["questions"], answers)
        self._pending = None
        resume = _Resume(p, norm, asyncio.get_running_loop().create_future())
        if self.busy:  # the paused run is still writing its last events; it resumes with this
            self._next_resume = resume
        else:
            self._start(resume)
        await asyncio.shield(resume.ack)

    async def shutdown(self, reason: str) -> None:
        """Stop: cancel the run, kill sandbox processes, repair dangling tool calls. Idempotent.

        A pending question stays stored (and the session row stays `waiting_input`), so a Resume
        can still answer it.
        """
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._do_shutdown(reason))
        await asyncio.shield(self._shutdown)

    async def close(self) -> None:
        """Server exit: like shutdown; the next server start restores from the store."""
        await self.shutdown("the server is shutting down")

    # -- runs -------------------------------------------------------------------------------------
    def _start(self, resume: _Resume | None) -> None:
        self._cancel_reason = None
        self._task = asyncio.get_running_loop().create_task(self._run_loop(resume), name=f"agent-{self.sid}")

    async def _run_loop(self, resume: _Resume | None) -> None:
        try:
            while True:
                outcome = await self._one_run(resume)
                resume = None
                if outcome == "paused":
                    await self._set_state(AgentState.waiting_input)
                    if self._next_resume is not None:
                        resume, self._next_resume = self._next_resume, None
                        continue
                    if self._queue and self._pending is not None:  # spoke while we paused: that's a reply
                        pending, self._pending = self._pending, None
                        resume = _Resume(pending)
                        continue
                    return
                if self._queue:
                    continue  # messages that came while the model only wrote text: the next turn
                await self._set_state(AgentState.idle)
                if outcome == "done" and self.ctx.on_run_finished is not None:
                    try:
                        await self.ctx.on_run_finished()
                    except Exception:
                        log.exception("on_run_finished failed for %s", self.sid)
                if self._queue:
                    continue
                return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug, not a model or tool failure: keep the session usable
            log.exception("agent run crashed for %s", self.sid)
            try:
                await self._emit("RUN_ERROR", {"message": self._mask(f"internal error: {type(e).__name__}: {e}"),
                                               "runId": self._run_id, "code": "internal"})
                await self._set_state(AgentState.idle)
            except Exception:
                pass
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _one_run(self, resume: _Resume | None) -> str:
        """One AG-UI run; returns "done", "paused" or "error"."""
        self._run_id = run_id = new_id("run")
        self._usage = {"input_tokens": 0, "output_tokens": 0}
        try:
            if resume is not None:
                await self._emit("QUESTION_ANSWERED", {
                    "toolCallId": resume.pending["tool_call_id"],
                    "answers": resume.answers if resume.answers is not None else [],
                    **({"dismissed": True} if resume.answers is None else {})})
            await self._set_state(AgentState.working)
            await self._emit("RUN_STARTED", {"threadId": self.sid, "runId": run_id})
            self._run_open = True
            if resume is not None:
                paused = await self._resume_step(resume)
            else:
                paused = False
                if not await self._deliver_as_turn():
                    await self._finish_run("success")
                    return "done"
            while not paused:
                step = await self._model_step()
                if not step.uses:
                    break
                paused = await self._run_tools(step.uses, {})
            if paused:
                p = self._pending or {}
                await self._finish_run("interrupt", interrupts=[{
                    "id": p.get("tool_call_id", ""), "reason": ASK, "toolCallId": p.get("tool_call_id", ""),
                    "message": "; ".join(q["question"] for q in p.get("questions", []))}])
                return "paused"
            await self._finish_run("success", stop_reason=self._last_stop)
            return "done"
        except RunFailure as e:
            await self._close_open(broken=True)
            await self._close_step("Not run: the run failed before this tool call (" + e.message + ").")
            self._run_open = False
            await self._emit("RUN_ERROR", {"message": self._mask(e.message), "runId": run_id, "code": e.code})
            return "error"
        except asyncio.CancelledError:
            await self._after_cancel()
            raise
        finally:
            if resume is not None and resume.ack is not None and not resume.ack.done():
                resume.ack.set_result(None)

    async def _finish_run(self, outcome: str, stop_reason: str | None = None, **extra) -> None:
        data = {"threadId": self.sid, "runId": self._run_id, "outcome": {"type": outcome, **extra}}
        if stop_reason:
            data["result"] = {"stopReason": stop_reason}
        if any(self._usage.values()):
            data["usage"] = [{"provider": self.ctx.model.provider, "model": self.ctx.model.id,
                              "inputTokens": self._usage["input_tokens"],
                              "outputTokens": self._usage["output_tokens"]}]
        self._run_open = False
        await self._emit("RUN_FINISHED", data)

    async def _deliver_as_turn(self) -> bool:
        """Queued messages become the next user turn; False when there is nothing for the model."""
        if self._queue:
            await self._append_user([])
            return True
        return bool(self._messages) and self._messages[-1]["role"] == "user"

    # -- model steps ------------------------------------------------------------------------------
    def _system(self) -> str:
        parts = [SYSTEM_PROMPT]
        if self.ctx.spec.repos:
            lines = [f"- /workspace/repos/{r.folder()} ({strip_userinfo(r.url)}"
                     f"{', branch ' + r.branch if r.branch else ''})" for r in self.ctx.spec.repos]
            parts.append("Repositories in this session:\n" + "\n".join(lines))
        extra = self.ctx.system_prompt
        if extra:
            parts.append(extra)
        return "\n\n".join(parts)

    def _get_provider(self) -> Provider:
        if self._provider is None:
            try:
                self._provider = make_provider(self.ctx)
            except ProviderError as e:
                raise RunFailure(e.message, "configuration") from None
        return self._provider

    async def _model_step(self) -> _Step:
        await self._repair()
        provider = self._get_provider()
        req = StepRequest(self._system(), list(self._messages), self._tools.specs())
        p = self.ctx.providers
        attempt = 0
        while True:
            try:
                return await self._stream_step(provider, req)
            except ProviderError as e:
                await self._close_open(broken=True)
                if not e.retryable or attempt >= p.max_retries:
                    tail = f" (gave up after {attempt} retr{'y' if attempt == 1 else 'ies'})" if attempt else ""
                    raise RunFailure(e.message + tail) from None
                if e.retry_after is not None:
                    delay = min(e.retry_after, 60.0)
                else:
                    base = p.retry_base_delay
                    delay = min(base * 2 ** attempt, p.retry_max_delay) * random.uniform(0.75, 1.0)
                attempt += 1
                await self._emit("MODEL_RETRYING", {"runId": self._run_id, "attempt": attempt,
                                                    "maxRetries": p.max_retries, "delaySeconds": round(delay, 3),
                                                    "message": self._mask(e.message)})
                await asyncio.sleep(delay)

    async def _stream_step(self, provider: Provider, req: StepRequest) -> _Step:
        """Stream one response, mapping it to AG-UI events; store it once it is complete."""
        emit = self._emit
        opened = self._open
        blocks: dict[int, dict] = {}
        step_parent = new_id("msg")
        last_text: str | None = None
        end = StepEnd("end_turn")
        self._streamed_tools = streamed = []
        started = time.monotonic()
        first_token: float | None = None
        async for ev in provider.stream(req):
            kind = type(ev)
            if first_token is None and kind in (BlockStart, BlockDelta):
                first_token = time.monotonic()
            if kind is BlockDelta:
                o = opened.get(ev.index)
                if o is None or not ev.text:
                    continue
                self._delta(o[0], o[1], ev.text)
            elif kind is BlockStart:
                if ev.kind == "text":
                    last_text = eid = new_id("msg")
                    opened[ev.index] = ("text", eid)
                    await emit("TEXT_MESSAGE_START", {"messageId": eid, "role": "assistant"})
                elif ev.kind == "thinking":
                    eid = new_id("rsn")
                    opened[ev.index] = ("thinking", eid)
                    await emit("REASONING_START", {"messageId": eid})
                    await emit("REASONING_MESSAGE_START", {"messageId": eid, "role": "reasoning"})
                elif ev.kind == "tool_use":
                    opened[ev.index] = ("tool_use", ev.id)
                    streamed.append(ev.id)
                    await emit("TOOL_CALL_START", {"toolCallId": ev.id, "toolCallName": ev.name,
                                                   "parentMessageId": last_text or step_parent})
            elif kind is BlockStop:
                blocks[ev.index] = ev.block
                o = opened.pop(ev.index, None)
                if o is not None:
                    await self._end_block(o)
            elif kind is StepEnd:
                end = ev
        content = [blocks[i] for i in sorted(blocks)
                   if not (blocks[i]["type"] == "text" and not blocks[i].get("text") and not blocks[i].get("signature"))]
        for k in ("input_tokens", "output_tokens"):
            self._usage[k] += int(end.usage.get(k) or 0)
        if content:
            await self._atomic(self._append("assistant", content))
        # One event per model call: tracing turns it into a Langfuse generation with usage and latency.
        await self._emit("MODEL_CALL_FINISHED", {
            "runId": self._run_id, "model": self.ctx.model.id, "usage": dict(end.usage),
            "stopReason": end.stop_reason, "latencyMs": round((time.monotonic() - started) * 1000),
            "timeToFirstTokenMs": round((first_token - started) * 1000) if first_token else None})
        self._streamed_tools = []
        self._last_stop = end.stop_reason
        uses = [b for b in content if b["type"] == "tool_use"]
        return _Step(content, uses, end.stop_reason, end.usage)

    async def _end_block(self, o: tuple[str, str]) -> None:
        kind, eid = o
        if kind == "text":
            await self._emit("TEXT_MESSAGE_END", {"messageId": eid})
        elif kind == "thinking":
            await self._emit("REASONING_MESSAGE_END", {"messageId": eid})
            await self._emit("REASONING_END", {"messageId": eid})
        else:
            await self._emit("TOOL_CALL_END", {"toolCallId": eid})

    async def _close_open(self, broken: bool = False) -> None:
        """End every block a broken or cancelled stream left open, so no UI block stays 'live'."""
        opened, self._open = self._open, {}
        streamed, self._streamed_tools = self._streamed_tools, []
        for o in opened.values():
            await self._end_block(o)
        for tid in streamed:  # announced tool calls of a step that is thrown away
            await self._emit("TOOL_CALL_RESULT", {
                "toolCallId": tid, "messageId": f"{tid}-result", "role": "tool", "isError": True,
                "content": ("The model's response broke off before the step was complete; this call was not run."
                            if broken else "The run was stopped before the step was complete; this call was not run."),
                "summary": "not run"})

    # -- tools ------------------------------------------------------------------------------------
    async def _tool_result_event(self, block: dict, summary: str) -> None:
        await self._emit("TOOL_CALL_RESULT", {
            "toolCallId": block["tool_use_id"], "messageId": f"{block['tool_use_id']}-result", "role": "tool",
            "content": block["content"], "isError": block["is_error"], "summary": summary})

    async def _resume_step(self, r: _Resume) -> bool:
        p = r.pending
        qid = p["tool_call_id"]
        if r.answers is None:
            content, summary = questions.dismissed_text(), "dismissed: the user replied in the chat"
        else:
            content = questions.result_text(r.answers)
            summary = "; ".join(f"{a['header']}: {a['text']}" for a in r.answers)
        block = history.tool_result(qid, ASK, self._mask(content), False)
        uses = history.tool_uses(self._messages[-1]) if self._messages else []
        results = {b["tool_use_id"]: b for b in p.get("results") or []}
        results[qid] = block
        self._step_uses, self._step_results = uses, results  # a Stop from here on keeps the answer
        await self._tool_result_event(block, self._mask(summary)[:200])
        if r.ack is not None and not r.ack.done():
            r.ack.set_result(None)
        return await self._run_tools(uses, results, resumed=True)

    async def _run_tools(self, uses: list[dict], results: dict[str, dict], resumed: bool = False) -> bool:
        """Run the step's tool calls in order; True when paused on a question."""
        self._step_uses, self._step_results = uses, results
        for u in uses:
            if u["id"] in results:
                continue
            if u["name"] == ASK:
                try:
                    qs = questions.parse_questions(u.get("input"))
                except ValueError as e:
                    block = history.tool_result(u["id"], ASK, str(e), True)
                    results[u["id"]] = block
                    await self._tool_result_event(block, "invalid question")
                    continue
                if self._queue:  # the user already wrote something the model has not seen
                    block = history.tool_result(u["id"], ASK, questions.dismissed_text(), False)
                    results[u["id"]] = block
                    await self._tool_result_event(block, "dismissed: the user replied in the chat")
                    continue
                done = [results[x["id"]] for x in uses if x["id"] in results]
                self._pending = {"tool_call_id": u["id"], "questions": qs, "results": done}
                await self._atomic(self._update_state(pending_question=self._pending))
                await self._emit("QUESTION_ASKED", {"toolCallId": u["id"], "questions": qs})
                self._step_uses = None
                return True
            if "invalid_input" in u:
                content = ("Your tool call's input was not valid JSON (was the response cut off by max_tokens?): "
                           + str(u["invalid_input"])[:2000])
                block = history.tool_result(u["id"], u["name"], content, True)
                summary = "invalid input"
            else:
                self._tool_running = True  # stays set if cancelled: the cleanup kills what it started
                try:
                    out = await self._tools.run(u["name"], u.get("input") or {})
                except Exception as e:  # SandboxGone and bugs: the run cannot go on
                    self._tool_running = False
                    raise RunFailure(self._mask(f"the sandbox failed while running {u['name']}: {e}"), "sandbox") from e
                self._tool_running = False
                block = history.tool_result(u["id"], u["name"], out.content, out.is_error)
                summary = out.summary
            results[u["id"]] = block
            await self._tool_result_event(block, summary)
        ordered = [results[u["id"]] for u in uses]
        await self._atomic(self._append_user(ordered, clear_pending=resumed))
        self._step_uses = None
        return False

    # -- history ----------------------------------------------------------------------------------
    async def _append(self, role: str, content: list[dict]) -> None:
        await self.ctx.store.append_message(self.sid, role, content)
        self._messages.append({"role": role, "content": content})

    async def _append_user(self, blocks: list[dict], clear_pending: bool = False) -> None:
        """Store a user turn: `blocks` (tool_results) then every queued message as text; merge
        into a trailing user turn so roles keep alternating. Then report the messages delivered."""
        delivered, self._queue = self._queue, []
        content = list(blocks) + [history.text(t) for _, t in delivered]
        if not content:
            return
        if self._messages and self._messages[-1]["role"] == "user":
            idx = len(self._messages) - 1
            merged = history.order_user_content(self._messages[idx]["content"] + content)
            await self.ctx.store.replace_message(self.sid, idx, "user", merged)
            self._messages[idx] = {"role": "user", "content": merged}
        else:
            await self._append("user", content)
        if clear_pending:
            await self._update_state(pending_question=None)
        for message_id, _ in delivered:
            await self._emit("MESSAGE_DELIVERED", {"message_id": message_id})
        if delivered and self._auto_name:
            await self._auto_rename(delivered[0][1])

    async def _auto_rename(self, text: str) -> None:
        self._auto_name = False
        name = display_name_from(self._mask(text))
        row = await self.ctx.store.get_session(self.sid)
        st = {**(row.state or {}), "auto_name": False} if row is not None else {"auto_name": False}
        if not name or (row is not None and not (row.state or {}).get("auto_name")):
            await self.ctx.store.update_session(self.sid, state=st)
            return
        await self._emit("SESSION_RENAMED", {"display_name": name}, display_name=name, state=st)

    async def _repair(self, skip: set[str] = frozenset()) -> None:
        """Give every dangling tool_use an error result (a crash or Stop between call and result)."""
        plan = history.repair_plan(self._messages, skip=set(skip) | self._pending_skip())
        for idx, msg in plan:
            if idx is None:
                await self._append("user", msg["content"])
            else:
                await self.ctx.store.replace_message(self.sid, idx, "user", msg["content"])
                self._messages[idx] = msg
            for b in msg["content"]:
                if b.get("type") == "tool_result" and b.get("content") == history.INTERRUPTED:
                    await self._tool_result_event(b, "interrupted")

    def _pending_skip(self) -> set[str]:
        """Tool calls of the step a pending question belongs to (they are finished after the answer)."""
        if self._pending is None or not self._messages:
            return set()
        return {u["id"] for u in history.tool_uses(self._messages[-1])}

    def _pending_matches(self, pending: dict) -> bool:
        if not self._messages or self._messages[-1]["role"] != "assistant":
            return False
        return any(u["id"] == pending.get("tool_call_id") and u["name"] == ASK
                   for u in history.tool_uses(self._messages[-1]))

    async def _update_state(self, **changes) -> None:
        """Read-modify-write of the session row's `state` (None deletes a key)."""
        row = await self.ctx.store.get_session(self.sid)
        st = dict(row.state or {}) if row is not None else {}
        for k, v in changes.items():
            if v is None:
                st.pop(k, None)
            else:
                st[k] = v
        await self.ctx.store.update_session(self.sid, state=st)

    # -- stop, cancel, timeout --------------------------------------------------------------------
    async def _close_step(self, reason: str, not_started: str | None = None) -> None:
        """Finish a step whose tool calls were cut short: real results where they exist, an error
        for the others (`reason` for the one in flight, `not_started` for later ones), then the
        user turn. Queued messages stay queued."""
        if self._step_uses is None:
            return
        uses, results = self._step_uses, self._step_results
        self._step_uses = None
        in_flight = self._tool_running
        for u in uses:
            if u["id"] not in results:
                text = reason if in_flight or not_started is None else not_started
                block = history.tool_result(u["id"], u["name"], self._mask(text), True)
                results[u["id"]] = block
                await self._tool_result_event(block, "stopped" if in_flight else "not run")
                in_flight = False
        queued, self._queue = self._queue, []
        try:
            await self._append_user([results[u["id"]] for u in uses], clear_pending=True)
        finally:
            self._queue = queued + self._queue

    async def _after_cancel(self) -> None:
        """The run was cancelled (Stop or timeout): close blocks, repair the step, end the run."""
        try:
            await self._close_open()
            if self._tool_running:
                await self._kill()
            await self._close_step("Stopped: the session was stopped before this tool call finished; "
                                   "its outcome is unknown.",
                                   "Not run: the session was stopped before this tool call started.")
            self._tool_running = False
            if self._run_open:
                self._run_open = False
                if self._cancel_reason == "timeout":
                    limit = self.ctx.spec.timeout
                    await self._emit("RUN_ERROR", {
                        "runId": self._run_id, "code": "timeout",
                        "message": f"The session reached its time limit ({limit} s of agent working time); "
                                   "the run was cut off."})
                else:
                    await self._emit("RUN_FINISHED", {"threadId": self.sid, "runId": self._run_id,
                                                      "outcome": {"type": "cancelled"},
                                                      "result": {"reason": self._cancel_reason or "stopped"}})
            await self._set_state(AgentState.waiting_input if self._pending is not None else AgentState.idle)
        except Exception:
            log.exception("cleanup after a cancelled run failed for %s", self.sid)

    async def _kill(self) -> None:
        try:
            await self.ctx.sandbox.kill_processes()
        except Exception as e:
            log.warning("could not kill sandbox processes of %s: %s", self.sid, e)

    async def _cancel_run(self, reason: str) -> None:
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return
        if self._cancel_reason is None:  # cancel once: a second cancel would cut the cleanup short
            self._cancel_reason = reason
            task.cancel()
        await asyncio.wait([task])

    async def _do_shutdown(self, reason: str) -> None:
        self._closed = True
        self._stop_timer()
        await self._cancel_run(reason)
        await self._kill()
        try:
            await self._repair()
        except Exception:
            log.exception("repair at shutdown failed for %s", self.sid)
        if self._provider is not None:
            try:
                await self._provider.aclose()
            except Exception:
                pass

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _set_state(self, new: AgentState) -> None:
        old = self._state
        loop = asyncio.get_running_loop()
        if old == AgentState.working and new != AgentState.working and self._work_since is not None:
            self._worked += loop.time() - self._work_since
            self._work_since = None
            self._stop_timer()
        if new == AgentState.working and self._work_since is None:
            self._work_since = loop.time()
            limit = self.ctx.spec.timeout
            if limit and limit > 0:
                self._timer = loop.call_later(max(0.0, limit - self._worked), self._on_timeout)
        self._state = new
        if old != new:
            await self._emit("AGENT_STATE_CHANGED", {"state": new.value}, agent_state=new.value)

    def _on_timeout(self) -> None:
        self._timer = None
        if self._closed or not self.busy:
            return
        self._timeout_task = asyncio.ensure_future(self._cut_off())

    async def _cut_off(self) -> None:
        """The working-time budget is spent: cut the run off cleanly, then ask the manager to stop."""
        await self._cancel_run("timeout")
        await self._kill()
        if self.ctx.request_stop is not None:
            await self.ctx.request_stop("timeout")

    # -- helpers ----------------------------------------------------------------------------------
    def _mask(self, s: str) -> str:
        return mask_secrets(s, self._secrets)

    async def _emit(self, type_: str, data: dict, **row) -> None:
        """Append one event, after any streamed deltas still on their way (order is kept)."""
        if self._flusher is not None:
            await self._drain()
        await self.ctx.events.append(self.sid, type_, data, **row)

    # Streamed deltas are written by a flusher task so the stream is read while a commit is in
    # flight; deltas of the same block that pile up meanwhile become one event. With a quiet
    # store every delta is its own event, as soon as it arrives.
    _DELTA_EVENTS = {"text": ("TEXT_MESSAGE_CONTENT", "messageId"),
                     "thinking": ("REASONING_MESSAGE_CONTENT", "messageId"),
                     "tool_use": ("TOOL_CALL_ARGS", "toolCallId")}

    def _delta(self, kind: str, eid: str, text: str) -> None:
        buf = self._deltas
        if buf and buf[-1][1] == eid:
            buf[-1][2] += text
        else:
            buf.append([kind, eid, text])
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self._deltas:
                kind, eid, text = self._deltas.pop(0)
                type_, key = self._DELTA_EVENTS[kind]
                await self.ctx.events.append(self.sid, type_, {key: eid, "delta": text})
        finally:
            self._flusher = None

    async def _drain(self) -> None:
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

    @staticmethod
    async def _atomic(coro) -> None:
        """Finish a store write even if the run is cancelled meanwhile, so memory and store agree."""
        task = asyncio.ensure_future(coro)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise
