"""Faults: SIGKILL of a real server in every phase and mid-tool, a crash mid-stop, a hanging model
stream. Each ends in a true phase with no lost event, no orphan and no dangling tool call."""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest

from fakes.anthropic_server import reply, text, tool_use
from server_process import Server

QUESTION = {"questions": [{"question": "Go on?", "header": "Confirm", "multiSelect": False,
                           "options": [{"label": "Yes", "description": "continue"},
                                       {"label": "No", "description": "stop here"}]}]}


@pytest.fixture
def hanging_git():
    """An 'http git server' that accepts and never answers: a clone keeps the session in Creating."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/repo.git"
    sock.close()


def events(srv: Server, sid: str) -> list[dict]:
    return srv.call("GET", "sessions", sid, "events")[1]["events"]


def dangling(evs: list[dict]) -> set[str]:
    started = {e["data"]["toolCallId"] for e in evs if e["type"] == "TOOL_CALL_START"}
    done = {e["data"]["toolCallId"] for e in evs if e["type"] == "TOOL_CALL_RESULT"}
    return started - done


def wait_for(pred, timeout=60, what="condition"):
    end = time.time() + timeout
    while not pred():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_sigkill_in_every_phase_and_mid_tool(tmp_path, model, hanging_git):
    srv = Server(tmp_path, sandbox="local", anthropic_base_url=model.fake.url, anthropic_api_key="sk-test",
                 max_sandboxes_per_user=3, clone_timeout=600)
    try:
        srv.start()
        # Running, mid-tool: the agent is inside a long bash call.
        model.push(reply(tool_use("bash", {"command": "sleep 600"}, id="long")))
        _, busy = srv.call("POST", "sessions", body={"display_name": "mid-tool"})
        srv.wait_phase(busy["id"], "Running")
        srv.call("POST", "sessions", busy["id"], "messages", body={"text": "run the long thing"})
        wait_for(lambda: any(e["type"] == "TOOL_CALL_START" for e in events(srv, busy["id"])), what="tool start")
        # Running, waiting for an answer.
        model.push(reply(tool_use("ask_user_question", QUESTION, id="ask")))
        _, asking = srv.call("POST", "sessions", body={"display_name": "asking"})
        srv.wait_phase(asking["id"], "Running")
        srv.call("POST", "sessions", asking["id"], "messages", body={"text": "ask me"})
        wait_for(lambda: srv.call("GET", "sessions", asking["id"])[1]["agent_state"] == "waiting_input",
                 what="question")
        # Creating: a clone that hangs.
        _, creating = srv.call("POST", "sessions", body={"display_name": "creating",
                                                         "repos": [{"url": hanging_git}]})
        srv.wait_phase(creating["id"], "Creating")
        # Pending: over the capacity limit (3).
        _, pending = srv.call("POST", "sessions", body={"display_name": "pending"})
        wait_for(lambda: "capacity" in (srv.call("GET", "sessions", pending["id"])[1]["reason"] or ""),
                 what="capacity wait")
        before = {sid: events(srv, sid) for sid in (busy["id"], asking["id"], creating["id"], pending["id"])}

        srv.kill()
        # The sleep the agent started is an orphan now (local sandbox: a host process group).
        srv.start()

        for sid, evs in before.items():
            assert events(srv, sid)[: len(evs)] == evs, f"{sid} lost or changed events"
        # The in-flight tool call ends with a visible interruption; the agent is idle, no dangling call.
        wait_for(lambda: srv.call("GET", "sessions", busy["id"])[1]["agent_state"] == "idle", what="idle")
        assert dangling(events(srv, busy["id"])) == set()
        result = [e for e in events(srv, busy["id"]) if e["type"] == "TOOL_CALL_RESULT"][-1]
        assert result["data"]["isError"]
        # The question survived and is still answerable.
        s = srv.call("GET", "sessions", asking["id"])[1]
        assert s["phase"] == "Running" and s["agent_state"] == "waiting_input"
        model.push(reply(text("Thanks.")))
        code, body = srv.call("POST", "sessions", asking["id"], "answers", body={"tool_call_id": "ask",
                                                                               "answers": ["Yes"]})
        assert code == 202, body
        wait_for(lambda: srv.call("GET", "sessions", asking["id"])[1]["agent_state"] == "idle", what="answered")
        # Creating goes on (and can be stopped); Pending stays Pending with its reason.
        assert srv.call("GET", "sessions", creating["id"])[1]["phase"] in ("Creating", "Running")
        srv.call("POST", "sessions", creating["id"], "stop")
        srv.wait_phase(creating["id"], "Stopped")
        srv.wait_phase(pending["id"], "Running")  # admitted once 'creating' released its slot
        # No sleep left behind by the killed server's agent.
        import subprocess
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert "sleep 600" not in ps
    finally:
        srv.stop()


def test_crash_mid_stop_finishes_the_stop(tmp_path):
    srv = Server(tmp_path, sandbox="local")
    try:
        srv.start()
        _, s = srv.call("POST", "sessions", body={})
        srv.wait_phase(s["id"], "Running")
        srv.kill()
        db = sqlite3.connect(tmp_path / "data" / "sessions.db")
        with db:  # what a crash between Stopping and Stopped leaves behind
            db.execute("UPDATE sessions SET phase = 'Stopping' WHERE id = ?", (s["id"],))
        db.close()
        srv.start()
        s = srv.wait_phase(s["id"], "Stopped")
        assert "server restart" in s["reason"]
        assert srv.call("POST", "sessions", s["id"], "resume")[0] == 202
        srv.wait_phase(s["id"], "Running")
    finally:
        srv.stop()


def test_hanging_model_stream_is_retried_then_reported(tmp_path, model):
    from fakes import SSE
    from fakes.anthropic_server import frame

    stall = SSE([frame("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}), 3600.0])
    model.push(stall, stall, stall, stall, stall, stall)
    srv = Server(tmp_path, sandbox="local", anthropic_base_url=model.fake.url, anthropic_api_key="sk-test",
                 model_stream_idle_timeout=0.5)
    try:
        srv.start()
        _, s = srv.call("POST", "sessions", body={})
        srv.wait_phase(s["id"], "Running")
        srv.call("POST", "sessions", s["id"], "messages", body={"text": "hello?"})
        wait_for(lambda: any(e["type"] == "RUN_ERROR" for e in events(srv, s["id"])), timeout=120, what="RUN_ERROR")
        err = [e for e in events(srv, s["id"]) if e["type"] == "RUN_ERROR"][-1]
        assert err["data"]["message"]
        retries = [e for e in events(srv, s["id"]) if e["type"] == "MODEL_RETRYING"]
        assert retries, "a stalled stream is retried before giving up"
        wait_for(lambda: srv.call("GET", "sessions", s["id"])[1]["agent_state"] == "idle", what="idle")
        assert srv.call("GET", "sessions", s["id"])[1]["phase"] == "Running"  # still usable
    finally:
        srv.stop()
