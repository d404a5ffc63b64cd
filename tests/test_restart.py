"""A real `jupyter server` process, SIGKILLed and started again: nothing is lost."""

from __future__ import annotations

import time

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


def test_docker_restart_reattaches_and_removes_orphans(tmp_path):
    import sqlite3

    import docker

    client = docker.from_env()
    server = Server(tmp_path, sandbox="docker")
    try:
        server.start()
        _, keep = server.call("POST", "sessions", body={"display_name": "keep"})
        _, lost = server.call("POST", "sessions", body={"display_name": "lost"})
        server.wait_phase(keep["id"], "Running")
        server.wait_phase(lost["id"], "Running")
        kept = client.containers.get(f"jupyter-session-{keep['id']}")
        kept.exec_run(["bash", "-c", "echo alive > /workspace/proof.txt"], user="1000")
        server.kill()
        # A crash between deleting the row and removing the sandbox leaves an orphan behind.
        db = sqlite3.connect(tmp_path / "data" / "sessions.db")
        with db:
            db.execute("DELETE FROM events WHERE session_id = ?", (lost["id"],))
            db.execute("DELETE FROM sessions WHERE id = ?", (lost["id"],))
        db.close()
        server.start()
        again = server.wait_phase(keep["id"], "Running")
        assert again["display_name"] == "keep"
        kept.reload()
        assert kept.status == "running"  # the same container, re-attached
        assert kept.exec_run(["cat", "/workspace/proof.txt"]).output.decode().strip() == "alive"
        deadline = 30
        while client.containers.list(all=True, filters={"label": f"jupyter-sessions.session={lost['id']}"}) and deadline:
            time.sleep(0.5)
            deadline -= 1
        assert not client.containers.list(all=True, filters={"label": f"jupyter-sessions.session={lost['id']}"})
        assert not (tmp_path / "data" / "workspaces" / lost["id"]).exists()
        _, events = server.call("GET", "sessions", keep["id"], "events")
        assert any("re-attaching" in e["data"].get("message", "") for e in events["events"])
        server.call("DELETE", "sessions", keep["id"])
    finally:
        server.stop()
