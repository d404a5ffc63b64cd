"""A real `jupyter server` process, SIGKILLed and started again: nothing is lost."""

from __future__ import annotations

import pytest

from server_process import Server


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    yield srv
    srv.stop()


def test_sigkill_loses_no_session_or_event(server):
    server.start()
    code, s = server.call("POST", "sessions", body={"display_name": "survivor"})
    assert code == 201
    sid = s["id"]
    server.wait_phase(sid, "Running")
    for i in range(3):
        assert server.call("POST", "sessions", sid, "messages", body={"text": f"m{i}"})[0] == 202
    code, stopped = server.call("POST", "sessions", body={"display_name": "resting"})
    server.wait_phase(stopped["id"], "Running")
    server.call("POST", "sessions", stopped["id"], "stop")
    server.wait_phase(stopped["id"], "Stopped")
    _, before = server.call("GET", "sessions", sid, "events")

    server.kill()
    server.start()

    _, listed = server.call("GET", "sessions")
    assert {x["id"] for x in listed["sessions"]} == {sid, stopped["id"]}
    _, after = server.call("GET", "sessions", sid, "events")
    assert after["events"][: len(before["events"])] == before["events"]  # every event kept, unchanged
    again = server.wait_phase(sid, "Running")
    assert again["display_name"] == "survivor"
    _, resting = server.call("GET", "sessions", stopped["id"])
    assert resting["phase"] == "Stopped"  # a stopped session stays stopped
    assert server.call("POST", "sessions", sid, "messages", body={"text": "after"})[0] == 202
    _, final = server.call("GET", "sessions", sid, "events")
    seqs = [e["seq"] for e in final["events"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["data"]["text"] for e in final["events"] if e["type"] == "USER_MESSAGE"] == ["m0", "m1", "m2", "after"]
