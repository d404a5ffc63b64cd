"""Langfuse tracing from the event log, with the real `langfuse` SDK against a local fake Langfuse
(OTLP/HTTP protobuf on 127.0.0.1): a trace per run, a generation per model call, a span per tool."""

from __future__ import annotations

import asyncio
import json

import pytest
from jupyter_server.utils import url_path_join

from jupyter_sessions.export import ExportConfig, setup
from jupyter_sessions.export.routes import ROUTES
from jupyter_sessions.tracing import (
    LangfuseSettings,
    SessionTracer,
    TraceInfo,
    Tracing,
    make_client,
    trace_id_for_run,
)
from test_export import SECRET, transcript_events


@pytest.fixture
def client(langfuse, run):
    c = make_client(langfuse[1])
    yield c
    run(asyncio.to_thread(c.shutdown))


def attrs(span) -> dict:
    return span["attributes"]


def by_type(spans, kind):
    return [s for s in spans if attrs(s).get("langfuse.observation.type") == kind]


async def test_runs_become_traces_with_generations_and_tool_spans(langfuse, client):
    server, _ = langfuse
    tracer = SessionTracer(client, TraceInfo("s-abc", "alice", "claude-sonnet-4-5", "bugfix"), secrets=[SECRET])
    for ev in transcript_events():
        tracer.apply(ev)
    assert tracer.finished == [trace_id_for_run("s-abc", r) for r in ("run-1", "run-2", "run-3")]
    await asyncio.to_thread(client.flush)
    traces = server.traces()
    assert set(traces) == set(tracer.finished)

    run1 = traces[trace_id_for_run("s-abc", "run-1")]
    (root,) = by_type(run1, "agent")
    assert root["name"] == "agent-run"
    for span in run1:  # trace attributes on every observation: Langfuse filters by them
        assert attrs(span)["session.id"] == "s-abc" and attrs(span)["user.id"] == "alice"
        assert json.loads(attrs(span)["langfuse.trace.metadata.workflow"]) == "bugfix"
        assert json.loads(attrs(span)["langfuse.trace.metadata.model"]) == "claude-sonnet-4-5"
        assert span["start_ns"] <= span["end_ns"]
    children = [s for s in run1 if s is not root]
    assert all(s["parent_span_id"] == root["span_id"] for s in children)

    gens = by_type(run1, "generation")
    assert len(gens) == 1  # one model call in run-1 (then the question paused it)
    gen = gens[0]
    assert attrs(gen)["langfuse.observation.model.name"] == "claude-sonnet-4-5"
    gen_in = json.loads(attrs(gen)["langfuse.observation.input"])
    assert gen_in == [{"role": "user", "content": "Fix the failing test please. My key is [secret masked]"}]
    gen_out = json.loads(attrs(gen)["langfuse.observation.output"])
    assert gen_out["text"] == "I'll run the **test suite** first."
    assert "look first" in gen_out["thinking"]
    assert [c["name"] for c in gen_out["tool_calls"]] == ["bash", "read_file", "ask_user_question"]

    tools = {s["name"]: s for s in by_type(run1, "tool")}
    assert set(tools) == {"bash", "read_file", "ask_user_question"}
    assert json.loads(attrs(tools["bash"])["langfuse.observation.input"]) == {"command": "pytest -q ```"}
    assert attrs(tools["read_file"])["langfuse.observation.level"] == "ERROR"
    assert "no such file" in attrs(tools["read_file"])["langfuse.observation.output"]
    assert attrs(tools["ask_user_question"])["langfuse.observation.level"] == "WARNING"  # paused, no result yet
    assert "My key is [secret masked]" in attrs(root)["langfuse.observation.input"]

    run2 = traces[trace_id_for_run("s-abc", "run-2")]
    (gen2,) = by_type(run2, "generation")
    assert json.loads(attrs(gen2)["langfuse.observation.output"])["text"] == "Fixed: the unit test now passes."
    gen2_in = json.loads(attrs(gen2)["langfuse.observation.input"])
    assert {"role": "user", "content": '["unit"]'} in gen2_in  # the answer the run resumed with
    (root2,) = by_type(run2, "agent")
    assert attrs(root2)["langfuse.observation.output"] == "Fixed: the unit test now passes."

    run3 = traces[trace_id_for_run("s-abc", "run-3")]
    (root3,) = by_type(run3, "agent")
    assert attrs(root3)["langfuse.observation.level"] == "ERROR"
    assert "overloaded" in attrs(root3)["langfuse.observation.status_message"]
    (gen3,) = by_type(run3, "generation")  # the failed model call is visible too
    assert attrs(gen3)["langfuse.observation.level"] == "ERROR"

    everything = json.dumps(server.spans)
    assert SECRET not in everything and server.secret_key not in everything


async def test_per_call_events_give_each_generation_its_usage(langfuse, client):
    server, _ = langfuse
    tracer = SessionTracer(client, TraceInfo("s-u", "bob", "claude-sonnet-4-5"))
    evs = [
        ("RUN_STARTED", {"runId": "r1"}),
        ("TEXT_MESSAGE_START", {"messageId": "a"}), ("TEXT_MESSAGE_CONTENT", {"messageId": "a", "delta": "Looking"}),
        ("TOOL_CALL_START", {"toolCallId": "t", "toolCallName": "glob"}), ("TOOL_CALL_END", {"toolCallId": "t"}),
        ("MODEL_CALL_FINISHED", {"runId": "r1", "model": "claude-sonnet-4-5-20250929", "stopReason": "tool_use",
                                 "usage": {"input_tokens": 100, "output_tokens": 20}, "latencyMs": 900}),
        ("TOOL_CALL_RESULT", {"toolCallId": "t", "content": "a.py"}),
        ("TEXT_MESSAGE_START", {"messageId": "b"}), ("TEXT_MESSAGE_CONTENT", {"messageId": "b", "delta": "Done"}),
        ("MODEL_CALL_FINISHED", {"runId": "r1", "model": "claude-sonnet-4-5-20250929", "stopReason": "end_turn",
                                 "usage": {"input_tokens": 130, "output_tokens": 5}}),
        ("RUN_FINISHED", {"runId": "r1", "usage": [{"inputTokens": 230, "outputTokens": 25}]}),
    ]
    for i, (t, d) in enumerate(evs):
        tracer.apply({"seq": i + 1, "type": t, "ts": f"2025-01-01T00:00:{i:02d}Z", "data": d})
    await asyncio.to_thread(client.flush)
    gens = sorted(by_type(server.spans, "generation"), key=lambda s: s["start_ns"])
    usage = [json.loads(attrs(g)["langfuse.observation.usage_details"]) for g in gens]
    assert usage == [{"input": 100, "output": 20}, {"input": 130, "output": 5}]
    assert {attrs(g)["langfuse.observation.model.name"] for g in gens} == {"claude-sonnet-4-5-20250929"}
    (tool,) = by_type(server.spans, "tool")
    assert tool["name"] == "glob" and attrs(tool)["langfuse.observation.output"] == "a.py"


async def test_single_call_run_gets_the_run_usage(langfuse, client):
    server, _ = langfuse
    tracer = SessionTracer(client, TraceInfo("s-1", "bob", "gemini-2.5-flash"))
    for i, (t, d) in enumerate([("RUN_STARTED", {"runId": "r"}), ("TEXT_MESSAGE_START", {"messageId": "a"}),
                                ("TEXT_MESSAGE_CONTENT", {"messageId": "a", "delta": "hi"}),
                                ("RUN_FINISHED", {"runId": "r", "usage": [{"inputTokens": 7, "outputTokens": 3}]})]):
        tracer.apply({"seq": i + 1, "type": t, "ts": "2025-01-01T00:00:00Z", "data": d})
    await asyncio.to_thread(client.flush)
    (gen,) = by_type(server.spans, "generation")
    assert json.loads(attrs(gen)["langfuse.observation.usage_details"]) == {"input": 7, "output": 3}


def test_without_keys_nothing_is_built_or_sent():
    assert make_client(LangfuseSettings()) is None
    assert make_client(LangfuseSettings(public_key="pk-only")) is None
    tracing = Tracing(LangfuseSettings(), events=None, info=None)
    assert not tracing.enabled and tracing.watch("s-1") is None
    tracing.flush()


# -- on a real server: the replay agent's run traced from the live event stream -------------------
@pytest.fixture
def traced_services(jp_serverapp, jp_base_url, jp_asyncio_loop, langfuse):
    settings = jp_serverapp.web_app.settings
    manager = settings["jupyter_sessions_manager"]
    svcs = setup(settings, manager, ExportConfig(langfuse=langfuse[1]))
    jp_serverapp.web_app.add_handlers(".*$", [
        (url_path_join(jp_base_url, "jupyter-sessions/api" + path) + "/?", handler, {"name": "jupyter_sessions"})
        for path, handler in ROUTES])
    jp_asyncio_loop.run_until_complete(manager.ensure_started())
    yield svcs
    jp_asyncio_loop.run_until_complete(svcs.close())


async def test_live_session_run_is_traced(api, jp_serverapp, langfuse, traced_services):
    server, _ = langfuse
    s = await api.ok("POST", "sessions", body={"model": "replay", "display_name": "traced"})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    traced_services.tracing.watch(sid)  # what the manager does when the agent starts
    await asyncio.sleep(0.05)
    await api.ok("POST", "sessions", sid, "messages", body={"text": "show me the workspace"})
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while not any(e["type"] == "RUN_FINISHED" for e in await api.events(sid)):
        assert loop.time() < end, [e["type"] for e in await api.events(sid)]
        await asyncio.sleep(0.1)
    run_id = next(e["data"]["runId"] for e in await api.events(sid) if e["type"] == "RUN_STARTED")
    trace_id = trace_id_for_run(sid, run_id)
    end = loop.time() + 30
    while not by_type(server.traces().get(trace_id, []), "agent"):  # the watcher ends the run, then export
        assert loop.time() < end, "the run's trace never arrived"
        await asyncio.to_thread(traced_services.tracing.flush)
        await asyncio.sleep(0.1)
    spans = server.traces()[trace_id]
    (root,) = by_type(spans, "agent")
    assert attrs(root)["session.id"] == sid and attrs(root)["user.id"] == s["owner"]
    assert json.loads(attrs(root)["langfuse.trace.metadata.model"]) == "replay"
    assert "show me the workspace" in attrs(root)["langfuse.observation.input"]
    assert [t["name"] for t in sorted(by_type(spans, "tool"), key=lambda x: x["start_ns"])] == [
        "bash", "write_file", "read_file"]
    assert len(by_type(spans, "generation")) == 4  # the demo's four model steps
