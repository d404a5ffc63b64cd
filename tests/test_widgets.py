"""The chat widget: synced traits (segments + tail), live updates, actions, the Markdown snapshot,
and the JS reducer reading the log exactly like transcript.py (run under node)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import until

from jupyter_sessions.client import SessionsClient
from jupyter_sessions.transcript import fold
from jupyter_sessions.widgets import ChatWidget, EventSegment
from jupyter_sessions.widgets.snapshot import METADATA_KEY, markdown_snapshot, refresh_notebook, seq_fold

CHAT_JS = Path(__file__).resolve().parent.parent / "jupyter_sessions" / "static" / "chat.js"


@pytest.fixture
def client(jp_serverapp, http_server_client, jp_http_port, jp_base_url):
    return SessionsClient(f"http://localhost:{jp_http_port}{jp_base_url}", jp_serverapp.identity_provider.token)


QUESTIONS = [
    {"question": "Which language?", "header": "Language", "multiSelect": False,
     "options": [{"label": "Python", "description": "snakes"}, {"label": "Go", "description": "gophers"}]},
    {"question": "Which extras?", "header": "Extras", "multiSelect": True,
     "options": [{"label": "Tests", "description": ""}, {"label": "Docs", "description": ""}]},
    {"question": "Project name?", "header": "Name", "multiSelect": False, "options": []},
]


async def scripted_turn(manager, sid: str, *, text_words: int = 6) -> None:
    """What a run looks like in the log (as the agent writes it), appended directly."""
    a = manager.events.append
    await a(sid, "USER_MESSAGE", {"message_id": "m-1", "text": "please <b>look</b>", "status": "queued"})
    await a(sid, "AGENT_STATE_CHANGED", {"state": "working"})
    await a(sid, "RUN_STARTED", {"runId": "r1"})
    await a(sid, "MESSAGE_DELIVERED", {"message_id": "m-1"})
    await a(sid, "REASONING_START", {"messageId": "th1"})
    await a(sid, "REASONING_MESSAGE_START", {"messageId": "th1", "role": "reasoning"})
    for w in ("I ", "should ", "list ", "files."):
        await a(sid, "REASONING_MESSAGE_CONTENT", {"messageId": "th1", "delta": w})
    await a(sid, "REASONING_MESSAGE_END", {"messageId": "th1"})
    await a(sid, "REASONING_END", {"messageId": "th1"})
    await a(sid, "TEXT_MESSAGE_START", {"messageId": "a1", "role": "assistant"})
    for i in range(text_words):
        await a(sid, "TEXT_MESSAGE_CONTENT", {"messageId": "a1", "delta": f"word{i} "})
    await a(sid, "TEXT_MESSAGE_END", {"messageId": "a1"})
    await a(sid, "TOOL_CALL_START", {"toolCallId": "t1", "toolCallName": "bash", "parentMessageId": "a1"})
    await a(sid, "TOOL_CALL_ARGS", {"toolCallId": "t1", "delta": '{"command": "ls '})
    await a(sid, "TOOL_CALL_ARGS", {"toolCallId": "t1", "delta": '-la"}'})
    await a(sid, "TOOL_CALL_END", {"toolCallId": "t1"})
    await a(sid, "TOOL_CALL_RESULT", {"toolCallId": "t1", "messageId": "t1-r", "content": "total 0\n```\n<script>x</script>",
                                      "isError": False, "summary": "ls -la"})
    await a(sid, "TOOL_CALL_START", {"toolCallId": "t2", "toolCallName": "read_file", "parentMessageId": "a1"})
    await a(sid, "TOOL_CALL_ARGS", {"toolCallId": "t2", "delta": '{"path": "missing.txt"}'})
    await a(sid, "TOOL_CALL_RESULT", {"toolCallId": "t2", "messageId": "t2-r", "content": "no such file",
                                      "isError": True, "summary": "missing.txt"})
    await a(sid, "TOOL_CALL_START", {"toolCallId": "q1", "toolCallName": "ask_user_question"})
    await a(sid, "QUESTION_ASKED", {"toolCallId": "q1", "questions": QUESTIONS})
    await a(sid, "AGENT_STATE_CHANGED", {"state": "waiting_input"})


async def new_session(client, manager, **spec) -> str:
    s = await asyncio.to_thread(client.create, {"display_name": "widget test", **spec})
    for _ in range(200):
        row = await manager.get(s["id"])
        if row.phase == "Running" and row.agent_state:
            return s["id"]
        await asyncio.sleep(0.05)
    raise AssertionError("session did not start")


async def test_widget_history_live_updates_and_snapshot(client, manager):
    sid = await new_session(client, manager)
    await scripted_turn(manager, sid)
    w = await asyncio.to_thread(ChatWidget, sid, client)
    try:
        assert w.session_id == sid and w.session["display_name"] == "widget test"
        stored = [e.model_dump(mode="json") for e in await manager.events.replay(sid, 0)]
        # the synced log is the compacted log: deltas merged, nothing lost, in seq order
        synced = [e for seg in w.segments for e in seg.events] + list(w.tail)
        assert synced == w.events
        assert len(synced) < len(stored)
        assert [e["seq"] for e in synced] == sorted(e["seq"] for e in synced)
        assert fold(synced).items == fold(stored).items
        assert all(isinstance(s, EventSegment) for s in w.segments)
        assert w.session["agent_state"] == "waiting_input" and w.session["phase"] == "Running"
        assert w.transcript.pending_question["tool_call_id"] == "q1"
        await until(lambda: w.status == "live", what="live status")

        # live: the question is answered elsewhere (the API, the side panel), the agent goes on
        await manager.events.append(sid, "QUESTION_ANSWERED", {"toolCallId": "q1", "answers": ["Go", ["Tests"], "demo"]})
        await manager.events.append(sid, "AGENT_STATE_CHANGED", {"state": "working"})
        await manager.events.append(sid, "TEXT_MESSAGE_START", {"messageId": "a2", "role": "assistant"})
        for word in ("Thanks, ", "continuing."):
            await manager.events.append(sid, "TEXT_MESSAGE_CONTENT", {"messageId": "a2", "delta": word})
        await manager.events.append(sid, "TEXT_MESSAGE_END", {"messageId": "a2"})
        await manager.events.append(sid, "RUN_FINISHED", {"runId": "r1"})
        await manager.events.append(sid, "AGENT_STATE_CHANGED", {"state": "idle"})
        await manager.events.append(sid, "SESSION_RENAMED", {"display_name": "renamed live"})
        last = (await manager.events.replay(sid, 0))[-1].seq
        await until(lambda: w.last_seq == last, what="live events in the widget")
        assert w.transcript.pending_question is None
        assert w.session["agent_state"] == "idle" and w.session["display_name"] == "renamed live"
        assert w.settled() is True
        stored = [e.model_dump(mode="json") for e in await manager.events.replay(sid, 0)]
        assert fold(w.events).items == fold(stored).items

        md = w.markdown()
        assert "**Agent session: renamed live**" in md
        assert "&lt;b&gt;look&lt;/b&gt;" in md and "<b>" not in md  # user text: no raw HTML
        assert "<details><summary>Thinking</summary>" in md and "I should list files." in md
        assert "word0 word1" in md and "Thanks, continuing." in md
        assert "Tool: bash · <code>ls -la</code>" in md
        assert "````\ntotal 0\n```\n<script>x</script>\n````" in md  # results fenced, longer fence than inside
        assert "Tool: read_file · <code>missing.txt</code> · error" in md and "Error:" in md
        assert "**Language**: Which language? (one of: Python, Go) → *Go*" in md
        assert "**Extras**: Which extras? (several of: Tests, Docs) → *Tests*" in md
        assert "→ *demo*" in md

        data, metadata = w._repr_mimebundle_()
        assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
        assert data["text/markdown"] == md
        assert sid in data["text/plain"]
        assert metadata[METADATA_KEY] == {"session_id": sid, "start_seq": 0}
    finally:
        await asyncio.to_thread(w.close)


async def test_start_seq_hides_earlier_items_but_never_a_pending_question(client, manager):
    sid = await new_session(client, manager)
    await scripted_turn(manager, sid)
    start = (await manager.events.replay(sid, 0))[-1].seq
    await manager.events.append(sid, "USER_MESSAGE", {"message_id": "m-2", "text": "second", "status": "queued"})
    w = await asyncio.to_thread(lambda: ChatWidget(sid, client, start_seq=start))
    try:
        md = w.markdown()
        assert "second" in md and "*(queued)*" in md
        assert "word0" not in md and "earlier item(s) not shown" in md
        assert w._repr_mimebundle_()[1][METADATA_KEY]["start_seq"] == start
    finally:
        await asyncio.to_thread(w.close)


async def test_long_logs_are_sealed_into_immutable_segments(client, manager):
    sid = await new_session(client, manager)
    for i in range(450):  # distinct items: nothing to merge
        await manager.events.append(sid, "TOOL_CALL_START", {"toolCallId": f"t{i}", "toolCallName": "bash"})
    w = await asyncio.to_thread(ChatWidget, sid, client)
    try:
        assert len(w.segments) >= 2 and len(w.tail) < 200
        sizes = [len(s.events) for s in w.segments]
        assert max(sizes) <= 200
        first_segment = w.segments[0]
        before = list(first_segment.events)
        await until(lambda: w.status == "live", what="live")
        for i in range(300):
            await manager.events.append(sid, "TOOL_CALL_START", {"toolCallId": f"u{i}", "toolCallName": "glob"})
        last = (await manager.events.replay(sid, 0, limit=1000))[-1].seq
        await until(lambda: w.last_seq == last, what="live events")
        assert w.segments[0] is first_segment and first_segment.events == before  # never re-sent
        seqs = [e["seq"] for e in w.events]
        assert seqs == list(range(1, last + 1))
    finally:
        await asyncio.to_thread(w.close)


async def test_front_end_actions_through_the_kernel(client, manager):
    sid = await new_session(client, manager)
    await scripted_turn(manager, sid)
    w = await asyncio.to_thread(ChatWidget, sid, client)
    replies: list[dict] = []
    w.send = lambda content, buffers=None: replies.append(content)  # what goes back to the browser

    async def act(content):
        n = len(replies)
        await asyncio.to_thread(w._on_front_end_msg, w, content, [])
        assert len(replies) == n + 1
        return replies[-1]

    try:
        r = await act({"id": "1", "action": "send", "text": "from the widget"})
        assert r["ok"] and r["reply"] == "1" and r["result"]["message_id"].startswith("m-")
        evs = await manager.events.replay(sid, 0)
        assert any(e.type == "USER_MESSAGE" and e.data["text"] == "from the widget" for e in evs)

        r = await act({"id": "2", "action": "answer", "tool_call_id": "nope", "answers": ["x"]})
        assert not r["ok"] and r["error"] and "\n" not in r["error"]

        r = await act({"id": "3", "action": "feedback", "message_id": "a1", "rating": "up", "comment": "nice"})
        if not r["ok"]:  # the feedback route arrives with the export/feedback work
            assert "not available on this server" in r["error"]

        r = await act({"id": "4", "action": "bogus"})
        assert not r["ok"] and "unknown action" in r["error"]

        r = await act({"id": "5", "action": "stop"})
        assert r["ok"]
        for _ in range(200):
            if (await manager.get(sid)).phase == "Stopped":
                break
            await asyncio.sleep(0.05)
        await until(lambda: w.session.get("phase") == "Stopped", what="Stopped in the widget")
        assert w.settled()
        r = await act({"id": "6", "action": "resume"})
        assert r["ok"]
    finally:
        await asyncio.to_thread(w.close)


def test_refresh_notebook_rewrites_chat_outputs_only():
    events = [
        {"seq": 1, "type": "PHASE_CHANGED", "data": {"phase": "Running", "reason": "ready"}},
        {"seq": 2, "type": "USER_MESSAGE", "data": {"message_id": "m", "text": "hi", "status": "queued"}},
        {"seq": 3, "type": "TEXT_MESSAGE_START", "data": {"messageId": "a", "role": "assistant"}},
        {"seq": 4, "type": "TEXT_MESSAGE_CONTENT", "data": {"messageId": "a", "delta": "hello [x](javascript:alert(1))"}},
    ]
    nb = {"cells": [
        {"cell_type": "code", "source": "%%agent", "outputs": [
            {"output_type": "display_data", "data": {"text/plain": "w", "text/markdown": "old"},
             "metadata": {METADATA_KEY: {"session_id": "s-1", "start_seq": 1}}},
            {"output_type": "display_data", "data": {"text/markdown": "other"}, "metadata": {}}]},
        {"cell_type": "markdown", "source": "x"},
        {"cell_type": "code", "source": "", "outputs": [
            {"output_type": "display_data", "data": {"text/markdown": "gone"},
             "metadata": {METADATA_KEY: {"session_id": "s-gone"}}}]},
    ]}
    n = refresh_notebook(nb, lambda sid: events if sid == "s-1" else None)
    assert n == 1
    md = nb["cells"][0]["outputs"][0]["data"]["text/markdown"]
    assert "hello" in md and "](javascript-blocked:" in md and "Phase: Running" not in md
    assert nb["cells"][0]["outputs"][1]["data"]["text/markdown"] == "other"
    assert nb["cells"][2]["outputs"][0]["data"]["text/markdown"] == "gone"
    assert markdown_snapshot(seq_fold(events)).count("Phase: Running") == 1


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_reducer_matches_transcript_fold(tmp_path):
    """chat.js's reducer (what every browser view shows) folds a log exactly like transcript.py."""
    qs = QUESTIONS
    events = []

    def ev(t, **data):
        events.append({"seq": len(events) + 1, "type": t, "ts": "2026-01-01T00:00:00Z", "data": data})

    ev("PHASE_CHANGED", phase="Running", reason="ready")
    ev("USER_MESSAGE", message_id="m1", text="hi", status="queued")
    ev("USER_MESSAGE", message_id="m2", text="still queued", status="queued")
    ev("MESSAGE_DELIVERED", message_id="m1")
    ev("REASONING_MESSAGE_START", messageId="r1", role="reasoning")
    ev("REASONING_MESSAGE_CONTENT", messageId="r1", delta="hmm ")
    ev("REASONING_MESSAGE_CONTENT", messageId="r1", delta="ok")
    ev("TEXT_MESSAGE_START", messageId="a1", role="assistant")
    for w in ("Hel", "lo"):
        ev("TEXT_MESSAGE_CONTENT", messageId="a1", delta=w)
    ev("TOOL_CALL_START", toolCallId="t1", toolCallName="bash")
    ev("TOOL_CALL_ARGS", toolCallId="t1", delta='{"command": ')
    ev("TOOL_CALL_ARGS", toolCallId="t1", delta='"ls"}')
    ev("TOOL_CALL_RESULT", toolCallId="t1", content="out", isError=False, summary="ls")
    ev("TOOL_CALL_START", toolCallId="t2", toolCallName="grep")
    ev("TOOL_CALL_ARGS", toolCallId="t2", delta='{"pattern": "x"')  # never completed: stays raw
    ev("QUESTION_ASKED", toolCallId="q1", questions=qs)
    ev("QUESTION_ANSWERED", toolCallId="q1", answers=["Go", ["Tests"], "n"])
    ev("RUN_ERROR", message="boom")
    ev("REPO_CLONE_FAILED", url="u", error="nope")
    ev("SESSION_RENAMED", display_name="named")
    ev("AGENT_STATE_CHANGED", state="idle")
    script = (
        "import {fold, Feed} from " + json.dumps(CHAT_JS.as_uri()) + ";\n"
        "const events = JSON.parse(require_stdin());\n"
        "const st = fold(events.full);\n"
        "const feed = new Feed(); feed.push(events.compact.slice(0, 5)); feed.push(events.grown);"
        " feed.push(events.compact);\n"
        "const pick = (s) => ({items: s.items.map(({key, seq, v, streaming, feedback, ...rest}) => rest),"
        " phase: s.phase, agentState: s.agentState, displayName: s.displayName});\n"
        "process.stdout.write(JSON.stringify({full: pick(st), feed: pick(feed.state)}));\n"
        "function require_stdin() { return require('fs').readFileSync(0, 'utf8'); }\n"
    ).replace("require('fs')", "fs")
    script = "import fs from 'node:fs';\n" + script
    from jupyter_sessions.client import compact_into

    compact: list[dict] = []
    for e in events:
        compact_into(compact, e)
    # the log as seen mid-stream: the reasoning deltas not merged yet (the feed then applies only
    # the new part of the merged event)
    assert compact[5]["seq0"] == 6 and compact[5]["data"]["delta"] == "hmm ok"
    grown = [dict(e) for e in compact[:5]] + [events[5]]
    payload = json.dumps({"full": events, "compact": compact, "grown": grown})
    (tmp_path / "run.mjs").write_text(script)
    out = subprocess.run(["node", str(tmp_path / "run.mjs")], input=payload, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    js = json.loads(out.stdout)
    tr = fold(events)
    py_items = [{k: v for k, v in it.items()} for it in tr.items]
    for got in (js["full"], js["feed"]):
        assert got["phase"] == tr.phase and got["agentState"] == tr.agent_state and got["displayName"] == tr.display_name
        assert len(got["items"]) == len(py_items)
        for j, p in zip(got["items"], py_items, strict=False):
            for key, value in p.items():
                if key == "ts":
                    continue
                assert j.get(key) == value, (key, j, p)
