"""The agent loop on the wire: the real `anthropic` SDK against a fake Messages API server.

Each test scripts the model's replies, drives the Agent the way the manager does, and checks both
the events and the request bodies the fake server received (what the model was actually sent).
"""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest
from ag_ui.core import events as agui
from fakes import AgentHarness, make_sandbox
from fakes.anthropic_server import (
    SSE,
    HTTPError,
    frame,
    overloaded,
    rate_limited,
    reply,
    text,
    thinking,
    tool_use,
)

from jupyter_sessions.agent import questions
from jupyter_sessions.agent.context import ProviderSettings
from jupyter_sessions.models import SessionSpec, ThinkingSpec
from jupyter_sessions.store import Store

KEY = "sk-ant-test-key-0123456789abcdef"
AGUI_TYPES = {e.value for e in agui.EventType}


@pytest.fixture
def store(tmp_path, run):
    s = Store(f"sqlite:///{tmp_path}/sessions.sqlite")
    run(s.migrate())
    yield s
    run(s.close())


@pytest.fixture
def sandbox(tmp_path, run):
    _, sb = run(make_sandbox("local", "s-test", tmp_path / "ws"))
    yield sb
    run(sb.remove())


def settings(fake, **kw) -> ProviderSettings:
    kw.setdefault("retry_base_delay", 0.05)
    return ProviderSettings(anthropic_api_key=KEY, anthropic_base_url=fake.url, **kw)


@pytest.fixture
def make(store, sandbox, fake):
    """make(spec=..., **provider settings) -> AgentHarness (call `await h.create()`)."""

    def build(spec: SessionSpec | None = None, state: dict | None = None, **kw) -> AgentHarness:
        return AgentHarness(store, sandbox, spec=spec, providers=settings(fake, **kw), state=state)

    return build


def _agui_classes() -> dict:
    out = {}
    for c in vars(agui).values():
        if isinstance(c, type) and issubclass(c, agui.BaseEvent) and "type" in c.model_fields:
            default = c.model_fields["type"].default
            if isinstance(default, agui.EventType):
                out[default.value] = c
    return out


AGUI_CLASSES = _agui_classes()


def agui_valid(evs) -> None:
    """Every AG-UI-named event in the log parses as the ag_ui protocol's own model."""
    for e in evs:
        if e.type in AGUI_TYPES:
            AGUI_CLASSES[e.type].model_validate({"type": e.type, **e.data})


def squash(types: list[str]) -> list[str]:
    """Event types with runs of the same delta event collapsed (deltas may be coalesced)."""
    out: list[str] = []
    for t in types:
        if not (out and out[-1] == t and t.endswith(("_CONTENT", "_ARGS"))):
            out.append(t)
    return out


def no_secret_anywhere(evs, messages) -> None:
    blob = json.dumps([e.data for e in evs]) + json.dumps(messages)
    assert KEY not in blob


# -- text, thinking ---------------------------------------------------------------------------------
async def test_text_reply_events_request_and_display_name(make, fake, store):
    fake.push(reply(text("Hello! I can help with that.")))
    h = make()
    agent = await h.create()
    await h.post("## Fix the *login* bug\nit returns 500 when the token expired")
    await h.settle()
    evs = await h.events_list()
    types = [e.type for e in evs]
    assert squash(types) == ["AGENT_STATE_CHANGED", "USER_MESSAGE", "AGENT_STATE_CHANGED", "RUN_STARTED",
                             "MESSAGE_DELIVERED", "SESSION_RENAMED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT",
                             "TEXT_MESSAGE_END", "MODEL_CALL_FINISHED", "RUN_FINISHED", "AGENT_STATE_CHANGED"]
    assert [e.data["state"] for e in evs if e.type == "AGENT_STATE_CHANGED"] == ["idle", "working", "idle"]
    assert "".join(e.data["delta"] for e in evs if e.type == "TEXT_MESSAGE_CONTENT") == "Hello! I can help with that."
    assert evs[-2].data["outcome"] == {"type": "success"} and evs[-2].data["threadId"] == h.sid
    call = next(e.data for e in evs if e.type == "MODEL_CALL_FINISHED")
    assert call["model"] == "claude-sonnet-4-5" and call["usage"]["output_tokens"] == 42
    assert call["stopReason"] == "end_turn" and call["latencyMs"] >= 0 and call["runId"] == evs[-2].data["runId"]
    agui_valid(evs)
    row = await store.get_session(h.sid)
    assert row.display_name == "Fix the login bug" and row.state["auto_name"] is False
    assert row.agent_state == "idle" and agent.state.value == "idle" and not agent.busy
    assert h.runs_finished == 1
    (body,) = fake.bodies
    assert body["model"] == "claude-sonnet-4-5" and body["stream"] is True
    assert body["temperature"] == 0.7 and body["max_tokens"] == 4000 and "thinking" not in body
    assert [t["name"] for t in body["tools"]] == ["read_file", "write_file", "edit_file", "bash", "grep", "glob",
                                                  "ask_user_question"]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "## Fix the *login* bug\nit returns 500 when the token expired"}]}]
    hdrs = fake.requests[0].headers
    assert hdrs.get("X-Api-Key") == KEY or hdrs.get("Authorization") == f"Bearer {KEY}"
    assert await store.load_messages(h.sid) == [
        {"role": "user", "content": [{"type": "text", "text": body["messages"][0]["content"][0]["text"]}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello! I can help with that."}]},
    ]


async def test_thinking_streams_and_is_sent_back_with_signature(make, fake, store):
    spec = SessionSpec(temperature=1, max_tokens=8000, thinking=ThinkingSpec(budget_tokens=2048))
    fake.push(reply(thinking("The user wants a plan. Keep it short.", signature="sig-XYZ"), text("Here is a plan.")),
              reply(text("Sure.")))
    h = make(spec, state={})
    await h.create()
    await h.post("plan it")
    await h.settle()
    await h.post("thanks")
    await h.settle()
    evs = await h.events_list()
    types = [e.type for e in evs]
    i = types.index("REASONING_START")
    assert types[i:i + 2] == ["REASONING_START", "REASONING_MESSAGE_START"]
    assert types.index("REASONING_MESSAGE_END") < types.index("REASONING_END") < types.index("TEXT_MESSAGE_START")
    assert "".join(e.data["delta"] for e in evs if e.type == "REASONING_MESSAGE_CONTENT") == \
        "The user wants a plan. Keep it short."
    assert "SESSION_RENAMED" not in types  # the name was not auto-generated
    agui_valid(evs)
    first, second = fake.bodies
    for body in (first, second):
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
        assert body["temperature"] == 1 and body["max_tokens"] == 8000
    assert second["messages"][1] == {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "The user wants a plan. Keep it short.", "signature": "sig-XYZ"},
        {"type": "text", "text": "Here is a plan."}]}
    assert second["messages"][2] == {"role": "user", "content": [{"type": "text", "text": "thanks"}]}


# -- every tool, in a real sandbox (local and docker) -------------------------------------------------
@pytest.mark.parametrize("kind", ["local", "docker"])
async def test_each_tool_runs_in_the_sandbox(kind, store, fake, tmp_path):
    ws = tmp_path / f"ws-{kind}"
    ws.mkdir()
    (ws / "app.py").write_text("def hello():\n    return 'hi'\n")
    backend, sb = await make_sandbox(kind, f"s-{secrets.token_hex(4)}", ws)
    try:
        calls = [
            tool_use("write_file", {"path": "notes/todo.md", "content": "- fix login\n"}, id="t1"),
            tool_use("read_file", {"path": "app.py"}, id="t2"),
            tool_use("edit_file", {"path": "app.py", "old_string": "'hi'", "new_string": "'hello'"}, id="t3"),
            tool_use("bash", {"command": "cat app.py && id -u"}, id="t4"),
            tool_use("grep", {"pattern": "hello", "path": "."}, id="t5"),
            tool_use("glob", {"pattern": "**/*.md"}, id="t6"),
        ]
        fake.push(reply(text("Working on it."), *calls), reply(text("Done.")))
        h = AgentHarness(store, sb, providers=settings(fake), sid=sb.session_id)
        await h.create()
        await h.post("do the things")
        await h.settle(timeout=30)
        evs = await h.events_list()
        results = {e.data["toolCallId"]: e.data for e in evs if e.type == "TOOL_CALL_RESULT"}
        assert [r["isError"] for r in results.values()] == [False] * 6, results
        assert results["t1"]["summary"] == "notes/todo.md" and results["t4"]["summary"] == "cat app.py && id -u"
        agui_valid(evs)
        assert (ws / "notes/todo.md").read_text() == "- fix login\n"
        assert "return 'hello'" in (ws / "app.py").read_text()
        body = fake.bodies[1]
        turn = body["messages"][-1]
        assert turn["role"] == "user"
        assert [b["tool_use_id"] for b in turn["content"]] == ["t1", "t2", "t3", "t4", "t5", "t6"]
        by_id = {b["tool_use_id"]: b for b in turn["content"]}
        assert "Wrote 12 bytes to notes/todo.md" in by_id["t1"]["content"]
        assert "     1\tdef hello():" in by_id["t2"]["content"]
        assert "Replaced 1 occurrence(s) in app.py" in by_id["t3"]["content"]
        assert "return 'hello'" in by_id["t4"]["content"] and "[exit code 0]" in by_id["t4"]["content"]
        if kind == "docker":
            assert "\n1000\n" in by_id["t4"]["content"]  # the non-root sandbox user
        assert "app.py:2:" in by_id["t5"]["content"]
        assert by_id["t6"]["content"] == "notes/todo.md"
        assert all(b["is_error"] is False for b in turn["content"])
    finally:
        await sb.remove()
        await backend.close()


# -- questions --------------------------------------------------------------------------------------
THREE_QUESTIONS = {"questions": [
    {"question": "Which database should the app use?", "header": "Database", "multiSelect": False,
     "options": [{"label": "Postgres", "description": "A server, for production"},
                 {"label": "SQLite", "description": "A file, for small installs"}]},
    {"question": "Which features are in scope?", "header": "Features", "multiSelect": True,
     "options": [{"label": "Auth", "description": "Login and tokens"}, {"label": "Search", "description": "Full text"},
                 {"label": "Export", "description": "CSV and PDF"}]},
    {"question": "Anything else I should know?", "header": "Notes", "options": [], "multiSelect": False},
]}


async def test_ask_user_question_three_tabs(make, fake, store):
    fake.push(reply(text("A few questions first."), tool_use("ask_user_question", THREE_QUESTIONS, id="q1")),
              reply(text("Thanks, building it with SQLite.")))
    h = make()
    agent = await h.create()
    await h.post("build me an app")
    await h.wait_state("waiting_input")
    await h.settle()
    asked = await h.wait_for("QUESTION_ASKED")
    assert asked.data["toolCallId"] == "q1" and [q["header"] for q in asked.data["questions"]] == \
        ["Database", "Features", "Notes"]
    row = await store.get_session(h.sid)
    assert row.agent_state == "waiting_input" and row.state["pending_question"]["tool_call_id"] == "q1"
    finished = await h.wait_for("RUN_FINISHED")
    assert finished.data["outcome"]["type"] == "interrupt"
    assert finished.data["outcome"]["interrupts"][0]["toolCallId"] == "q1"
    assert h.runs_finished == 0  # a paused run is not a finished one
    assert len(fake.requests) == 1
    for tcid, answers, msg in [
        ("nope", ["SQLite", ["Auth"], "x"], "no pending question"),
        ("q1", ["SQLite", ["Auth"]], "expected 3"),
        ("q1", ["SQLite", ["Auth", "Billing"], "x"], "not one of its options"),
        ("q1", ["SQLite", ["Auth"], "   "], "has no answer"),
    ]:
        with pytest.raises(questions.AnswerError, match=msg):
            await agent.answer(tcid, answers)
    assert agent.state.value == "waiting_input" and "QUESTION_ANSWERED" not in await h.types()
    await agent.answer("q1", ["SQLite", ["Auth", "Export"], "Keep it small"])
    types = await h.types()
    assert "QUESTION_ANSWERED" in types and "TOOL_CALL_RESULT" in types  # committed before answer() returned
    await h.settle()
    evs = await h.events_list()
    ans = next(e for e in evs if e.type == "QUESTION_ANSWERED")
    assert [a["text"] for a in ans.data["answers"]] == ["SQLite", "Auth, Export", "Keep it small"]
    res = next(e for e in evs if e.type == "TOOL_CALL_RESULT")
    assert res.data["toolCallId"] == "q1" and not res.data["isError"]
    agui_valid(evs)
    body = fake.bodies[1]
    (result,) = body["messages"][-1]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "q1"
    assert '"Which database should the app use?" = "SQLite"' in result["content"]
    assert '"Which features are in scope?" = "Auth, Export"' in result["content"]
    assert '"Anything else I should know?" = "Keep it small"' in result["content"]
    row = await store.get_session(h.sid)
    assert "pending_question" not in row.state and row.agent_state == "idle"


async def test_an_answer_right_after_the_question_event_is_taken(make, fake):
    """A client may answer as soon as it sees QUESTION_ASKED, before the run has wound down."""
    fake.push(reply(tool_use("ask_user_question", THREE_QUESTIONS, id="q1")), reply(text("Thanks.")))
    h = make()
    agent = await h.create()
    sub = h.events.subscribe(h.sid)
    await h.post("go")
    while (await asyncio.wait_for(sub.queue.get(), 5)).type != "QUESTION_ASKED":
        pass
    h.events.unsubscribe(h.sid, sub)
    assert agent.busy  # the run is still finishing (RUN_FINISHED, state change)
    await agent.answer("q1", ["Postgres", ["Auth"], "none"])
    await h.settle()
    types = await h.types()
    assert squash(types)[-2:] == ["RUN_FINISHED", "AGENT_STATE_CHANGED"] and types.count("RUN_STARTED") == 2
    assert fake.bodies[1]["messages"][-1]["content"][0]["tool_use_id"] == "q1"


async def test_a_chat_message_answers_a_pending_question(make, fake):
    fake.push(reply(tool_use("ask_user_question", THREE_QUESTIONS, id="q1")), reply(text("OK, Postgres it is.")))
    h = make()
    await h.create()
    await h.post("build me an app")
    await h.wait_state("waiting_input")
    await h.settle()
    await h.post("just use postgres and stop asking")
    await h.settle()
    evs = await h.events_list()
    assert next(e for e in evs if e.type == "QUESTION_ANSWERED").data["dismissed"] is True
    content = fake.bodies[1]["messages"][-1]["content"]
    assert [b["type"] for b in content] == ["tool_result", "text"]
    assert "did not answer" in content[0]["content"] and content[1]["text"] == "just use postgres and stop asking"


async def test_invalid_question_input_is_a_tool_error(make, fake):
    bad = {"questions": [{"question": "Which?", "header": "far too long a header", "options": []}]}
    fake.push(reply(tool_use("ask_user_question", bad, id="q1")), reply(text("Let me ask properly.")))
    h = make()
    await h.create()
    await h.post("go")
    await h.settle()
    (res,) = fake.bodies[1]["messages"][-1]["content"]
    assert res["is_error"] and "header" in res["content"]
    assert "QUESTION_ASKED" not in await h.types()


async def test_tool_call_cut_off_by_max_tokens_gets_an_error_result(make, fake):
    start = {"type": "message_start", "message": {
        "id": "m", "type": "message", "role": "assistant", "content": [], "model": "x", "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}
    cut = SSE([frame("message_start", start),
               frame("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                   "type": "tool_use", "id": "t1", "name": "write_file", "input": {}}}),
               frame("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                   "type": "input_json_delta", "partial_json": '{"path": "a.txt", "content": "very lo'}}),
               frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
               frame("message_delta", {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                                       "usage": {"output_tokens": 4000}}),
               frame("message_stop", {"type": "message_stop"})])
    fake.push(cut, reply(text("I'll write it in smaller pieces.")))
    h = make()
    await h.create()
    await h.post("write a long file")
    await h.settle()
    (res,) = fake.bodies[1]["messages"][-1]["content"]
    assert res["tool_use_id"] == "t1" and res["is_error"] and "not valid JSON" in res["content"]
    assert fake.bodies[1]["messages"][1]["content"][0]["input"] == {}


# -- failures and retries ---------------------------------------------------------------------------
async def test_mid_stream_overloaded_error_is_retried_from_the_last_complete_step(make, fake, store):
    fake.push(reply(tool_use("bash", {"command": "echo one"}, id="t1")),
              overloaded(text("I will now write a long answ")),
              reply(text("The output was one.")))
    h = make()
    await h.create()
    await h.post("run it")
    await h.settle()
    evs = await h.events_list()
    types = [e.type for e in evs]
    assert types.count("TEXT_MESSAGE_START") == 2 and types.count("TEXT_MESSAGE_END") == 2
    retry = next(e for e in evs if e.type == "MODEL_RETRYING")
    assert retry.data["attempt"] == 1 and "overloaded_error" in retry.data["message"]
    assert types[-2] == "RUN_FINISHED" and "RUN_ERROR" not in types
    assert len(fake.requests) == 3
    assert fake.bodies[1] == fake.bodies[2]  # the broken step is asked again, unchanged
    msgs = await store.load_messages(h.sid)
    assert msgs[-1] == {"role": "assistant", "content": [{"type": "text", "text": "The output was one."}]}
    assert all("long answ" not in json.dumps(m) for m in msgs)


async def test_429_with_retry_after_is_honoured(make, fake):
    fake.push(rate_limited(retry_after=1), reply(text("Hi.")))
    h = make()
    await h.create()
    await h.post("hello")
    await h.settle()
    first, second = fake.requests
    assert second.at - first.at >= 0.95
    retry = await h.wait_for("MODEL_RETRYING")
    assert retry.data["delaySeconds"] == 1 and "429" in retry.data["message"]
    assert (await h.types())[-2] == "RUN_FINISHED"


async def test_giving_up_ends_with_run_error_and_the_session_stays_usable(make, fake, store):
    fake.push(HTTPError(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
              overloaded(), HTTPError(500, {"type": "error", "error": {"type": "api_error", "message": "boom"}}))
    h = make(max_retries=2)
    agent = await h.create()
    await h.post("hello")
    await h.settle()
    err = await h.wait_for("RUN_ERROR")
    assert "HTTP 500" in err.data["message"] and "gave up after 2 retries" in err.data["message"]
    assert agent.state.value == "idle" and (await store.get_session(h.sid)).agent_state == "idle"
    assert h.runs_finished == 0
    fake.push(reply(text("Back again.")))
    await h.post("are you there?")
    await h.settle()
    body = fake.bodies[-1]
    # the failed turn's message and the new one are one user turn (roles keep alternating)
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"},
                                                             {"type": "text", "text": "are you there?"}]}]
    assert (await h.types())[-2] == "RUN_FINISHED"


async def test_non_retryable_error_is_not_retried(make, fake):
    fake.push(HTTPError(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}))
    h = make()
    await h.create()
    await h.post("hello")
    await h.settle()
    err = await h.wait_for("RUN_ERROR")
    assert "rejected the API key" in err.data["message"] and len(fake.requests) == 1
    no_secret_anywhere(await h.events_list(), [])


# -- mid-run messages -------------------------------------------------------------------------------
async def test_message_during_slow_stream_is_delivered_after_the_tool_results(make, fake, store):
    fake.push(reply(text("Let me run the slow command first."), tool_use("bash", {"command": "sleep 1; echo slept"}, id="t1"),
                    pause=0.05),
              reply(text("Noted, using the second approach.")))
    h = make()
    await h.create()
    await h.post("start")
    await h.wait_for("TEXT_MESSAGE_CONTENT")  # mid-stream
    mid = await h.post("actually, use the second approach")
    await h.settle()
    evs = await h.events_list()
    types = [e.type for e in evs]
    delivered = [e for e in evs if e.type == "MESSAGE_DELIVERED" and e.data["message_id"] == mid]
    assert delivered and types.index("TOOL_CALL_RESULT") < evs.index(delivered[0])
    assert types.count("RUN_STARTED") == 1  # delivered inside the same run
    content = fake.bodies[1]["messages"][-1]["content"]
    assert [b["type"] for b in content] == ["tool_result", "text"]
    assert content[0]["tool_use_id"] == "t1" and "slept" in content[0]["content"]
    assert content[1] == {"type": "text", "text": "actually, use the second approach"}


async def test_message_during_text_only_reply_becomes_the_next_turn(make, fake):
    fake.push(reply(text("This is a long explanation with many words in it " * 3), pause=0.03),
              reply(text("Answering the follow-up.")))
    h = make()
    await h.create()
    await h.post("explain")
    await h.wait_for("TEXT_MESSAGE_CONTENT")
    await h.post("and a follow-up")
    await h.settle()
    types = await h.types()
    assert types.count("RUN_STARTED") == 2 and types.count("RUN_FINISHED") == 2
    # no idle in between: the queued message starts the next run at once
    states = [e.data["state"] for e in await h.events_list() if e.type == "AGENT_STATE_CHANGED"]
    assert states == ["idle", "working", "idle"]
    msgs = fake.bodies[1]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[2]["content"] == [{"type": "text", "text": "and a follow-up"}]


# -- stop, restart, timeout -------------------------------------------------------------------------
async def test_shutdown_during_a_slow_stream(make, fake, store):
    fake.push(reply(text("word " * 200), pause=0.05))
    h = make()
    agent = await h.create()
    await h.post("talk")
    await h.wait_for("TEXT_MESSAGE_CONTENT", n=2)
    await asyncio.wait_for(agent.shutdown("stopped by the user"), 5)
    await agent.shutdown("again")  # idempotent
    evs = await h.events_list()
    types = [e.type for e in evs]
    assert types[-3:] == ["TEXT_MESSAGE_END", "RUN_FINISHED", "AGENT_STATE_CHANGED"]
    assert evs[-2].data["outcome"] == {"type": "cancelled"} and evs[-2].data["result"]["reason"] == "stopped by the user"
    assert [m["role"] for m in await store.load_messages(h.sid)] == ["user"]  # the partial reply is not history
    with pytest.raises(RuntimeError):
        agent.post_message("late", "m-late")


async def test_shutdown_during_a_tool_call_kills_it_and_repairs_the_history(make, fake, store, sandbox):
    fake.push(reply(tool_use("bash", {"command": "sleep 30; touch finished"}, id="t1"),
                    tool_use("read_file", {"path": "x"}, id="t2")))
    h = make()
    agent = await h.create()
    await h.post("go")
    await h.wait_for("TOOL_CALL_END", n=2)
    await asyncio.sleep(0.3)
    t0 = asyncio.get_running_loop().time()
    await agent.shutdown("stopped by the user")
    assert asyncio.get_running_loop().time() - t0 < 3
    msgs = await store.load_messages(h.sid)
    assert msgs[-1]["role"] == "user"
    assert [(b["tool_use_id"], b["is_error"]) for b in msgs[-1]["content"]] == [("t1", True), ("t2", True)]
    assert msgs[-1]["content"][0]["content"].startswith("Stopped:")
    assert msgs[-1]["content"][1]["content"].startswith("Not run:")
    results = [e for e in await h.events_list() if e.type == "TOOL_CALL_RESULT"]
    assert {r.data["toolCallId"] for r in results} == {"t1", "t2"}
    await asyncio.sleep(0.2)
    assert not (sandbox.workspace / "finished").exists()


async def test_shutdown_while_waiting_input_keeps_the_question_for_resume(make, fake, store):
    fake.push(reply(tool_use("bash", {"command": "echo before"}, id="t0"),
                    tool_use("ask_user_question", THREE_QUESTIONS, id="q1"),
                    tool_use("bash", {"command": "echo after"}, id="t2")),
              reply(text("Great.")))
    h = make()
    agent = await h.create()
    await h.post("go")
    await h.wait_state("waiting_input")
    await h.settle()
    await agent.shutdown("stopped by the user")
    row = await store.get_session(h.sid)
    assert row.state["pending_question"]["tool_call_id"] == "q1" and row.agent_state == "waiting_input"
    assert (await store.load_messages(h.sid))[-1]["role"] == "assistant"  # not "repaired" away
    # Resume: a new agent for the same session (a server restart looks the same)
    agent2 = await h.new_agent()
    assert agent2.state.value == "waiting_input"
    await agent2.answer("q1", ["Postgres", ["Search"], "no"])
    await h.settle()
    content = fake.bodies[1]["messages"][-1]["content"]
    assert [b["tool_use_id"] for b in content] == ["t0", "q1", "t2"]
    assert "before" in content[0]["content"] and "after" in content[2]["content"]
    assert '"Postgres"' in content[1]["content"]


async def test_restart_repairs_a_dangling_tool_call(make, fake, store):
    h = make()
    await h.create()
    await store.append_message(h.sid, "user", [{"type": "text", "text": "go"}])
    await store.append_message(h.sid, "assistant", [{"type": "tool_use", "id": "t9", "name": "bash",
                                                      "input": {"command": "make"}}])
    await h.new_agent()  # as after a crash
    fake.push(reply(text("Let me retry that.")))
    await h.post("what happened?")
    await h.settle()
    content = fake.bodies[0]["messages"][-1]["content"]
    assert content[0]["type"] == "tool_result" and content[0]["tool_use_id"] == "t9" and content[0]["is_error"]
    assert content[1] == {"type": "text", "text": "what happened?"}


async def test_timeout_cuts_the_run_off_and_asks_to_stop(make, fake, store, sandbox):
    fake.push(reply(tool_use("bash", {"command": "sleep 20; touch late"}, id="t1")))
    h = make(SessionSpec(timeout=1))
    agent = await h.create()
    await h.post("long job")
    err = await h.wait_for("RUN_ERROR", timeout=5)
    assert err.data["code"] == "timeout" and "time limit" in err.data["message"]
    await h.wait(lambda evs: h.stop_requests, timeout=3, what="request_stop")
    assert h.stop_requests == ["timeout"]
    await agent.shutdown("timeout")
    msgs = await store.load_messages(h.sid)
    assert msgs[-1]["content"][0]["tool_use_id"] == "t1" and msgs[-1]["content"][0]["is_error"]
    await asyncio.sleep(0.2)
    assert not (sandbox.workspace / "late").exists()


async def test_secrets_never_reach_events_or_history(make, fake, store, sandbox):
    (sandbox.workspace / "config.env").write_text(f"ANTHROPIC_API_KEY={KEY}\n")
    fake.push(reply(tool_use("read_file", {"path": "config.env"}, id="t1"), tool_use("bash", {"command": "env"}, id="t2")),
              reply(text("Found a key file.")))
    h = make()
    await h.create()
    await h.post("look around")
    await h.settle()
    evs = await h.events_list()
    no_secret_anywhere(evs, await store.load_messages(h.sid))
    assert "[secret masked]" in next(e for e in evs if e.type == "TOOL_CALL_RESULT").data["content"]
    assert KEY not in json.dumps(fake.bodies[1])


async def test_replay_provider_plays_the_demo_with_real_tools(store, sandbox):
    h = AgentHarness(store, sandbox, spec=SessionSpec(model="replay"), providers=ProviderSettings(), model_id="replay")
    await h.create()
    await h.post("show me a demo")
    await h.settle()
    types = await h.types()
    assert types.count("TOOL_CALL_RESULT") == 3 and types[-2] == "RUN_FINISHED"
    assert "REASONING_MESSAGE_CONTENT" in types and "TEXT_MESSAGE_CONTENT" in types
    assert (sandbox.workspace / "NOTES.md").read_text().startswith("# Notes")
    agui_valid(await h.events_list())


async def test_replay_provider_reads_a_transcript_from_replay_dir(store, sandbox, tmp_path):
    folder = tmp_path / "replays"
    folder.mkdir()
    (folder / "demo.json").write_text(json.dumps([[{"type": "text", "text": "Recorded hello."}]]))
    h = AgentHarness(store, sandbox, spec=SessionSpec(model="replay"),
                     providers=ProviderSettings(replay_dir=str(folder)), model_id="replay")
    await h.create()
    await h.post("hi")
    await h.settle()
    evs = await h.events_list()
    assert "".join(e.data["delta"] for e in evs if e.type == "TEXT_MESSAGE_CONTENT") == "Recorded hello."


async def test_a_silent_stream_counts_as_broken_and_is_retried(make, fake):
    """A stream that stalls longer than stream_idle_timeout counts as broken and is retried."""
    stall = SSE([frame("message_start", {"type": "message_start", "message": {
        "id": "m", "type": "message", "role": "assistant", "content": [], "model": "x", "stop_reason": None,
        "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}), 3.0])
    fake.push(stall, reply(text("Recovered.")))
    h = make(stream_idle_timeout=0.5)
    await h.create()
    await h.post("hello")
    await h.settle()
    assert "timed out" in (await h.wait_for("MODEL_RETRYING")).data["message"]
    assert (await h.types())[-2] == "RUN_FINISHED"
