"""Sessions with a real agent, end to end through the API: a fake Anthropic server behind the SDK's
base URL, a real Jupyter server, real sandboxes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import docker
import pytest

from fakes.anthropic_server import reply, text, tool_use

SECRET = "sk-ant-test-0123456789-secret"

THREE = {"questions": [
    {"question": "Which database?", "header": "Database", "multiSelect": False,
     "options": [{"label": "Postgres", "description": "server"}, {"label": "SQLite", "description": "file"}]},
    {"question": "Which features?", "header": "Features", "multiSelect": True,
     "options": [{"label": "Auth", "description": "login"}, {"label": "Search", "description": "full text"}]},
    {"question": "Anything else?", "header": "Notes", "options": [], "multiSelect": False},
]}


@pytest.fixture
def with_fake(fake, sessions_config):
    sessions_config.update(anthropic_base_url=fake.url, anthropic_api_key=SECRET, watch_interval=0.5)
    return sessions_config


async def wait_event(api, sid, type_, timeout=30, where=lambda e: True):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        found = [e for e in await api.events(sid) if e["type"] == type_ and where(e)]
        if found:
            return found[-1]
        assert loop.time() < end, f"no {type_} in {[e['type'] for e in await api.events(sid)]}"
        await asyncio.sleep(0.1)


async def wait_state(api, sid, state, timeout=30):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (s := await api.ok("GET", "sessions", sid))["agent_state"] != state:
        assert loop.time() < end, s
        await asyncio.sleep(0.1)
    return s


async def test_three_tab_question_answered_through_the_api(with_fake, fake, api):
    fake.push(reply(text("Some questions first."), tool_use("ask_user_question", THREE, id="q1")),
              reply(text("Thanks, SQLite it is.")))
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "messages", body={"text": "build me an app"})
    s = await wait_state(api, sid, "waiting_input")
    asked = await wait_event(api, sid, "QUESTION_ASKED")
    assert [q["header"] for q in asked["data"]["questions"]] == ["Database", "Features", "Notes"]
    code, err = await api.call("POST", "sessions", sid, "answers",
                               body={"tool_call_id": "q1", "answers": ["SQLite", ["Auth", "Billing"], "x"]})
    assert code == 422 and "not one of its options" in err["error"]
    code, err = await api.call("POST", "sessions", sid, "answers", body={"tool_call_id": "q1", "answers": ["SQLite"]})
    assert code == 422 and "expected 3" in err["error"]
    await api.ok("POST", "sessions", sid, "answers",
                 body={"tool_call_id": "q1", "answers": ["SQLite", ["Auth", "Search"], "keep it small"]}, status=202)
    await wait_event(api, sid, "TEXT_MESSAGE_END", where=lambda e: True)
    await wait_state(api, sid, "idle")
    result = fake.bodies[1]["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "q1"
    assert '"Which database?" = "SQLite"' in result["content"]
    assert fake.bodies[0]["temperature"] == 0.7 and fake.bodies[0]["max_tokens"] == 4000
    assert s["display_name"] == "build me an app"  # named from the first message


@pytest.mark.parametrize("sandbox_kind", ["docker"], indirect=True)
async def test_stop_mid_tool_kills_it_and_resume_continues_with_history(with_fake, fake, api, sandbox_kind,
                                                                        sessions_config):
    client = docker.from_env()
    fake.push(reply(tool_use("write_file", {"path": "notes.txt", "content": "written by the agent\n"}, id="w1")),
              reply(tool_use("bash", {"command": "sleep 300"}, id="b1")))
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "messages", body={"text": "write notes then wait"})
    await wait_event(api, sid, "TOOL_CALL_START", where=lambda e: e["data"]["toolCallId"] == "b1")
    container = client.containers.get(f"jupyter-session-{sid}")
    for _ in range(50):
        if "sleep 300" in container.exec_run(["ps", "-eo", "args"]).output.decode():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the tool's process never started")
    await api.ok("POST", "sessions", sid, "stop")
    s = await api.wait_phase(sid, "Stopped")
    container.reload()
    assert container.status == "exited"  # the sandbox is stopped, its processes with it
    events = await api.events(sid)
    stopped = [e for e in events if e["type"] == "TOOL_CALL_RESULT" and e["data"]["toolCallId"] == "b1"]
    assert stopped and stopped[-1]["data"]["isError"]  # the dangling call was repaired
    fake.push(reply(text("Resumed where we left off.")))
    await api.ok("POST", "sessions", sid, "resume")
    await api.wait_phase(sid, "Running")
    assert "sleep 300" not in client.containers.get(f"jupyter-session-{sid}").exec_run(
        ["ps", "-eo", "args"]).output.decode()
    out = client.containers.get(f"jupyter-session-{sid}").exec_run(["cat", "/workspace/notes.txt"]).output
    assert out.decode() == "written by the agent\n"
    await api.ok("POST", "sessions", sid, "messages", body={"text": "carry on"})
    await wait_event(api, sid, "TEXT_MESSAGE_END")
    await wait_state(api, sid, "idle")
    history = fake.bodies[-1]["messages"]
    assert history[0]["content"][0]["text"] == "write notes then wait"
    ids = [b.get("tool_use_id") for m in history for b in m["content"] if isinstance(b, dict)]
    assert "w1" in ids and "b1" in ids  # the whole conversation went back to the model
    assert history[-1]["content"][-1]["text"] == "carry on"
    await api.call("DELETE", "sessions", sid)


async def test_one_shot_session_completes(with_fake, fake, api):
    fake.push(reply(text("Done: nothing to change.")))
    s = await api.ok("POST", "sessions", body={"initial_prompt": "check the repo", "complete_when_done": True})
    s = await api.wait_phase(s["id"], "Completed", timeout=60)
    assert s["reason"] == "the agent finished its work" and s["display_name"] == "check the repo"
    code, _ = await api.call("POST", "sessions", s["id"], "resume")
    assert code == 202


async def test_working_time_timeout_stops_the_session(with_fake, fake, api):
    fake.push(reply(tool_use("bash", {"command": "sleep 30"}, id="slow")))
    s = await api.ok("POST", "sessions", body={"timeout": 2})
    await api.wait_phase(s["id"], "Running")
    await api.ok("POST", "sessions", s["id"], "messages", body={"text": "take your time"})
    s = await api.wait_phase(s["id"], "Stopped", timeout=60)
    assert "timeout" in s["reason"]


async def test_api_key_never_leaves_the_server(with_fake, fake, api, sessions_config, jp_serverapp):
    fake.push(reply(tool_use("bash", {"command": "env; cat /proc/self/environ | tr '\\0' '\\n'"}, id="e1")),
              reply(text("ok")))
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "messages", body={"text": "print your environment"})
    await wait_event(api, sid, "TOOL_CALL_RESULT")
    await wait_state(api, sid, "idle")
    sent = json.dumps(fake.requests[0].headers)
    assert SECRET in sent  # the key did reach the model API...
    everything = json.dumps(await api.events(sid)) + json.dumps(await api.ok("GET", "sessions", sid))
    everything += json.dumps(await api.ok("GET", "models"))
    assert SECRET not in everything  # ...and nothing else
    workspace = Path(sessions_config["data_dir"]) / "workspaces" / sid
    for f in workspace.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace")


async def test_pending_question_survives_stop_and_resume(with_fake, fake, api):
    fake.push(reply(tool_use("ask_user_question", THREE, id="q9")), reply(text("Thanks, going on.")))
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "messages", body={"text": "ask first"})
    await wait_state(api, sid, "waiting_input")
    await api.ok("POST", "sessions", sid, "stop")
    await api.wait_phase(sid, "Stopped")
    await api.ok("POST", "sessions", sid, "resume")
    await api.wait_phase(sid, "Running")
    await wait_state(api, sid, "waiting_input")  # the question is still there, never expired
    await api.ok("POST", "sessions", sid, "answers",
                 body={"tool_call_id": "q9", "answers": ["Postgres", ["Search"], "none"]}, status=202)
    await wait_event(api, sid, "TEXT_MESSAGE_END")
    await wait_state(api, sid, "idle")
    assert fake.bodies[-1]["messages"][-1]["content"][0]["tool_use_id"] == "q9"
