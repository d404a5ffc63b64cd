"""Stop, Resume, Clone, Delete, Completed, timeouts, Failed, and the operation x phase table."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import docker
import pytest

from jupyter_sessions.lifecycle import ALLOWED, markdown_table

ROOT = Path(__file__).resolve().parents[1]


def phases_of(events: list[dict]) -> list[str]:
    return [e["data"]["phase"] for e in events if e["type"] == "PHASE_CHANGED"]


@pytest.fixture
def fast_watch(sessions_config):
    sessions_config["watch_interval"] = 0.2
    return sessions_config


async def test_clone_copies_configuration_not_history(api, bare_repo, sessions_config):
    body = {"display_name": "orig", "temperature": 0.3, "max_tokens": 1234, "timeout": 60,
            "repos": [{"url": str(bare_repo), "branch": "feature"}]}
    s = await api.ok("POST", "sessions", body=body)
    await api.wait_phase(s["id"], "Running")
    await api.ok("POST", "sessions", s["id"], "messages", body={"text": "history that must not be copied"})
    (Path(sessions_config["data_dir"]) / "workspaces" / s["id"] / "scratch.txt").write_text("only in the original")
    c = await api.ok("POST", "sessions", s["id"], "clone", status=201)
    assert c["id"] != s["id"] and c["display_name"] == "orig (copy)"
    for key in ("temperature", "max_tokens", "timeout", "repos", "model", "workflow"):
        assert c["spec"][key] == s["spec"][key], key
    c = await api.wait_phase(c["id"], "Running")
    events = await api.events(c["id"])
    assert not [e for e in events if e["type"] == "USER_MESSAGE"]
    ws = Path(sessions_config["data_dir"]) / "workspaces" / c["id"]
    assert (ws / "repos" / "demo" / "feature.txt").exists() and not (ws / "scratch.txt").exists()
    code, _ = await api.call("POST", "sessions", "s-000000000000", "clone")
    assert code == 404


async def test_inactivity_timeout_stops_and_is_resumable(fast_watch, api):
    s = await api.ok("POST", "sessions", body={"inactivity_timeout": 1})
    await api.wait_phase(s["id"], "Running")
    s = await api.wait_phase(s["id"], "Stopped", timeout=30)
    assert s["reason"].startswith("inactivity")
    await api.ok("POST", "sessions", s["id"], "resume")
    await api.wait_phase(s["id"], "Running")


async def test_zero_inactivity_timeout_never_stops(fast_watch, api):
    s = await api.ok("POST", "sessions", body={"inactivity_timeout": 0})
    await api.wait_phase(s["id"], "Running")
    await asyncio.sleep(1.5)
    assert (await api.ok("GET", "sessions", s["id"]))["phase"] == "Running"


async def test_double_resume_and_stop_conflicts(api):
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "stop")
    await api.wait_phase(sid, "Stopped")
    code, err = await api.call("POST", "sessions", sid, "stop")
    assert code == 409 and "Stopped" in err["error"]
    results = await asyncio.gather(api.call("POST", "sessions", sid, "resume"),
                                   api.call("POST", "sessions", sid, "resume"))
    assert sorted(code for code, _ in results) == [202, 409]
    await api.wait_phase(sid, "Running")
    assert phases_of(await api.events(sid)).count("Running") == 2  # resumed once, not twice


async def test_stop_and_delete_while_creating(api, bare_repo):
    s = await api.ok("POST", "sessions", body={"repos": [{"url": str(bare_repo)}]})
    await api.ok("POST", "sessions", s["id"], "stop", status=202)
    s = await api.wait_phase(s["id"], "Stopped")
    assert "Running" not in phases_of(await api.events(s["id"]))[-2:]
    d = await api.ok("POST", "sessions", body={"repos": [{"url": str(bare_repo)}]})
    code, _ = await api.call("DELETE", "sessions", d["id"])
    assert code == 204
    await asyncio.sleep(0.5)
    code, _ = await api.call("GET", "sessions", d["id"])
    assert code == 404


@pytest.mark.parametrize("sandbox_kind", ["docker"], indirect=True)
async def test_killed_container_fails_session_then_resume_recovers(fast_watch, api, sandbox_kind, sessions_config):
    client = docker.from_env()
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    (Path(sessions_config["data_dir"]) / "workspaces" / sid / "kept.txt").write_text("still here")
    client.containers.get(f"jupyter-session-{sid}").remove(force=True)
    s = await api.wait_phase(sid, "Failed", timeout=30)
    assert "no longer exists" in s["reason"] or "not running" in s["reason"], s["reason"]
    failed = [e for e in await api.events(sid) if e["type"] == "PHASE_CHANGED"][-1]
    assert failed["data"]["phase"] == "Failed" and failed["data"]["reason"] == s["reason"]
    await api.ok("POST", "sessions", sid, "resume")
    await api.wait_phase(sid, "Running")
    code, out = client.containers.get(f"jupyter-session-{sid}").exec_run(["cat", "/workspace/kept.txt"])
    assert out.decode() == "still here"
    await api.call("DELETE", "sessions", sid)


@pytest.mark.parametrize("sandbox_kind", ["docker"], indirect=True)
async def test_stop_stops_the_container_and_resume_keeps_files(api, sandbox_kind, sessions_config):
    client = docker.from_env()
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    container = client.containers.get(f"jupyter-session-{sid}")
    container.exec_run(["bash", "-c", "echo kept > /workspace/note.txt"], user="1000")
    await api.ok("POST", "sessions", sid, "stop")
    await api.wait_phase(sid, "Stopped")
    container.reload()
    assert container.status == "exited"
    await api.ok("POST", "sessions", sid, "resume")
    await api.wait_phase(sid, "Running")
    code, out = client.containers.get(f"jupyter-session-{sid}").exec_run(["cat", "/workspace/note.txt"])
    assert out.decode().strip() == "kept"
    await api.call("DELETE", "sessions", sid)
    assert not client.containers.list(all=True, filters={"label": f"jupyter-sessions.session={sid}"})


async def test_operations_table_in_readme_matches_code(api):
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate with: python -m jupyter_sessions.lifecycle"
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "stop")
    await api.wait_phase(sid, "Stopped")
    # In Stopped, every operation the table forbids is a 409 with a message, and the rest work.
    checks = {
        "message": ("POST", ("messages",), {"text": "hi"}),
        "answer": ("POST", ("answers",), {"tool_call_id": "t", "answers": ["a"]}),
        "add_repo": ("POST", ("repos",), {"url": "/nonexistent"}),
        "stop": ("POST", ("stop",), None),
    }
    for op, (method, tail, body) in checks.items():
        code, err = await api.call(method, "sessions", sid, *tail, body=body)
        expected_ok = "Stopped" in {p.value for p in ALLOWED[op]}
        assert (code < 300) == expected_ok, (op, code, err)
        if not expected_ok:
            assert code == 409 and re.search(r"Stopped", err["error"]), (op, err)


@pytest.fixture
def one_sandbox_per_user(sessions_config):
    sessions_config["max_sandboxes_per_user"] = 1
    return sessions_config


async def test_capacity_queues_beyond_the_limit(one_sandbox_per_user, api):
    a = await api.ok("POST", "sessions", body={"display_name": "first"})
    await api.wait_phase(a["id"], "Running")
    b = await api.ok("POST", "sessions", body={"display_name": "second"})
    await asyncio.sleep(1)
    b = await api.ok("GET", "sessions", b["id"])
    assert b["phase"] == "Pending" and "waiting for capacity" in b["reason"]
    assert any(e["type"] == "CAPACITY_WAIT" for e in await api.events(b["id"]))
    await api.ok("POST", "sessions", a["id"], "stop")
    await api.wait_phase(b["id"], "Running")  # admitted once the first released its slot
    code, err = await api.call("POST", "sessions", a["id"], "resume")
    assert code == 202
    await asyncio.sleep(1)
    assert (await api.ok("GET", "sessions", a["id"]))["phase"] == "Pending"  # now the first one waits
    await api.call("DELETE", "sessions", b["id"])
    await api.wait_phase(a["id"], "Running")


@pytest.fixture
def swarm_mode():
    from jupyter_sessions.sandbox.swarm import single_node_swarm

    with single_node_swarm():
        yield


@pytest.mark.parametrize("sandbox_kind", ["swarm"], indirect=True)
async def test_swarm_session_lifecycle_through_the_api(swarm_mode, api, sandbox_kind, bare_repo, sessions_config):
    client = docker.from_env()
    s = await api.ok("POST", "sessions", body={"repos": [{"url": str(bare_repo)}]})
    sid = s["id"]
    s = await api.wait_phase(sid, "Running", "Failed")
    assert s["phase"] == "Running" and s["sandbox"] == "swarm", s
    service = client.services.get(f"jupyter-session-{sid}")
    assert service.attrs["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    await api.ok("POST", "sessions", sid, "stop")
    await api.wait_phase(sid, "Stopped")
    await api.ok("POST", "sessions", sid, "resume")
    await api.wait_phase(sid, "Running")
    assert (Path(sessions_config["data_dir"]) / "workspaces" / sid / "repos" / "demo" / "README.md").exists()
    code, _ = await api.call("DELETE", "sessions", sid)
    assert code == 204
    assert not client.services.list(filters={"label": f"jupyter-sessions.session={sid}"})
