"""Fake model servers for tests: real HTTP + SSE on 127.0.0.1 (ephemeral port), scripted replies,
every request body recorded.

A test pushes replies in the order the client will ask for them; each request pops one. A reply is
an `SSE` stream (raw frames, pauses, or a dropped connection) or an `HTTPError` (status, JSON body,
headers such as retry-after). A callable reply gets the request body and returns a reply, for
answers that depend on what the client sent. When the script runs dry the server answers 400, so a
test that expects fewer calls fails loudly instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from .local_http import LocalHTTP

CLOSE = object()  # in SSE frames: drop the connection here


@dataclass
class SSE:
    """A streamed 200 response: str frames are written and flushed, floats are pauses (seconds),
    callables are called at send time for the frame to write, CLOSE drops the connection."""

    frames: list = field(default_factory=list)


@dataclass
class HTTPError:
    status: int
    body: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)


Reply = Union[SSE, HTTPError, Callable[[dict], Any]]


@dataclass
class Request:
    path: str
    headers: dict
    body: dict
    at: float


class _Handler(RequestHandler):
    def initialize(self, server: "ScriptedServer") -> None:
        self.server = server

    def check_xsrf_cookie(self) -> None:
        pass

    async def post(self, *args) -> None:
        srv = self.server
        body = json.loads(self.request.body or b"{}")
        srv.requests.append(Request(self.request.uri, dict(self.request.headers), body, time.monotonic()))
        reply = srv.script.popleft() if srv.script else HTTPError(400, srv.exhausted_body())
        if callable(reply) and not isinstance(reply, (SSE, HTTPError)):
            reply = reply(body)
        if isinstance(reply, HTTPError):
            self.set_status(reply.status)
            self.set_header("Content-Type", "application/json")
            for k, v in reply.headers.items():
                self.set_header(k, str(v))
            self.finish(json.dumps(reply.body))
            return
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        try:
            for frame in reply.frames:
                if frame is CLOSE:
                    self.request.connection.stream.close()
                    return
                if isinstance(frame, (int, float)):
                    await asyncio.sleep(frame)
                    continue
                if callable(frame):  # made at send time (e.g. a timestamp for latency benchmarks)
                    frame = frame()
                self.write(frame)
                await self.flush()
            self.finish()
        except StreamClosedError:
            pass  # the client went away (a cancelled run)


class ScriptedServer(LocalHTTP):
    """Base for the fakes: subclasses give the route pattern and the 'script ran dry' body."""

    route = r"/(.*)"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: deque = deque()

    def push(self, *replies: Reply) -> "ScriptedServer":
        self.script.extend(replies)
        return self

    def exhausted_body(self) -> dict:
        return {"error": "fake server: no scripted reply left"}

    @property
    def bodies(self) -> list[dict]:
        return [r.body for r in self.requests]

    async def start(self) -> "ScriptedServer":
        self.serve([(self.route, _Handler, {"server": self})])
        return self


# -- an agent wired the way the manager wires it, for tests of the engine alone ------------------
class AgentHarness:
    """A session row in a temporary store, an event log, a sandbox and an `Agent` for it.

    Stands in for the session manager: records `request_stop` calls and can build a second agent
    for the same session (a server restart).
    """

    def __init__(self, store, sandbox, spec=None, providers=None, model_id: str | None = None,
                 state: dict | None = None, sid: str = "s-test"):
        from jupyter_sessions.catalogue import BUILTIN_MODELS, Catalogue
        from jupyter_sessions.events import EventLog
        from jupyter_sessions.models import ModelInfo, SessionSpec

        self.store = store
        self.sandbox = sandbox
        self.spec = spec or SessionSpec()
        self.providers = providers
        models = list(BUILTIN_MODELS) + [ModelInfo(id="replay", label="Replay", provider="replay",
                                                   max_temperature=2.0, max_output_tokens=1_000_000)]
        self.catalogue = Catalogue(models, "claude-sonnet-4-5")
        self.model = self.catalogue.get(model_id or self.spec.model)
        self.events = EventLog(store)
        self.sid = sid
        self.state = state if state is not None else {"auto_name": True}
        self.stop_requests: list[str] = []
        self.runs_finished = 0
        self.agent = None

    async def create(self):
        from jupyter_sessions.store import SessionRow, utcnow

        await self.store.insert_session(SessionRow(
            id=self.sid, owner="tester", display_name="New session", phase="Running", agent_state=None,
            spec=self.spec.model_dump(mode="json"), sandbox=self.sandbox.backend, isolated=int(self.sandbox.isolated),
            created=utcnow(), last_seq=0, state=dict(self.state)))
        return await self.new_agent()

    def context(self):
        from jupyter_sessions.agent.context import AgentContext

        async def request_stop(reason: str) -> None:
            self.stop_requests.append(reason)

        async def run_finished() -> None:
            self.runs_finished += 1

        return AgentContext(session_id=self.sid, spec=self.spec, model=self.model,
                            thinking=self.catalogue.effective_thinking(self.spec), sandbox=self.sandbox,
                            events=self.events, store=self.store, providers=self.providers,
                            request_stop=request_stop, on_run_finished=run_finished)

    async def new_agent(self):
        from jupyter_sessions.agent.loop import Agent

        self.agent = Agent(self.context())
        await self.agent.start()
        return self.agent

    _n = 0

    async def post(self, text: str) -> str:
        """What the manager does for a user message: a USER_MESSAGE event, then post_message."""
        AgentHarness._n += 1
        mid = f"m-{AgentHarness._n}"
        await self.events.append(self.sid, "USER_MESSAGE", {"message_id": mid, "text": text, "status": "queued"})
        self.agent.post_message(text, mid)
        return mid

    async def events_list(self) -> list:
        out, after = [], 0
        while batch := await self.store.events_after(self.sid, after):
            out += batch
            after = batch[-1].seq
        return out

    async def types(self) -> list[str]:
        return [e.type for e in await self.events_list()]

    async def wait(self, pred, timeout: float = 10.0, what: str = "condition"):
        """Poll the event log until pred(events) is truthy; return its value."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            evs = await self.events_list()
            got = pred(evs)
            if got:
                return got
            if loop.time() > end:
                raise AssertionError(f"timed out waiting for {what}; events: {[e.type for e in evs]}")
            await asyncio.sleep(0.02)

    async def wait_for(self, type_: str, n: int = 1, timeout: float = 10.0):
        """The n-th event of this type (1-based), once it exists."""
        def pred(evs):
            hits = [e for e in evs if e.type == type_]
            return hits[n - 1] if len(hits) >= n else None

        return await self.wait(pred, timeout, f"{n}x {type_}")

    async def wait_state(self, state: str, n: int = 1, timeout: float = 10.0):
        def pred(evs):
            hits = [e for e in evs if e.type == "AGENT_STATE_CHANGED" and e.data["state"] == state]
            return hits[n - 1] if len(hits) >= n else None

        return await self.wait(pred, timeout, f"{n}x state {state}")

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until no run is going (idle or waiting for an answer)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.agent.busy:
            if loop.time() > end:
                raise AssertionError(f"agent still busy; events: {await self.types()}")
            await asyncio.sleep(0.02)


async def make_sandbox(kind: str, session_id: str, workspace):
    """A started sandbox of `kind` ("local" or "docker") on `workspace`; pytest.skip when unavailable."""
    import pytest

    from jupyter_sessions.sandbox import SandboxUnavailable, make_backend

    backend = make_backend(kind)
    try:
        await backend.check()
    except SandboxUnavailable as e:
        pytest.skip(f"{kind} sandbox unavailable: {e}")
    workspace.mkdir(parents=True, exist_ok=True)
    sb = backend.sandbox(session_id, workspace, None)
    await sb.start()
    return backend, sb
