"""The REST API on a real Jupyter server: create, validate, list, rename, repos, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_sessions.openapi import all_operations
from jupyter_sessions.routes import all_routes


async def test_create_reaches_running_with_cloned_repo(api, bare_repo, jp_serverapp, sessions_config):
    s = await api.ok("POST", "sessions", body={"repos": [{"url": str(bare_repo), "branch": "feature"}]}, status=201)
    assert s["phase"] == "Pending"
    assert s["spec"]["model"] == "claude-sonnet-4-5" and s["spec"]["temperature"] == 0.7
    assert s["spec"]["max_tokens"] == 4000 and s["spec"]["timeout"] == 300
    assert s["display_name"].startswith("Session ")
    s = await api.wait_phase(s["id"], "Running", "Failed")
    assert s["phase"] == "Running", s
    assert s["sandbox"] == "local" and s["isolated"] is False
    ws = Path(sessions_config["data_dir"]) / "workspaces" / s["id"] / "repos" / "demo"
    assert (ws / "feature.txt").read_text() == "feature\n"
    assert "extraHeader" not in (ws / ".git" / "config").read_text()
    types = [e["type"] for e in await api.events(s["id"])]
    phases = [e["data"]["phase"] for e in await api.events(s["id"]) if e["type"] == "PHASE_CHANGED"]
    assert phases == ["Pending", "Creating", "Running"]
    assert "REPO_CLONED" in types and "SANDBOX_WARNING" in types  # local = no isolation, said out loud


async def test_clone_failure_is_an_event_and_session_still_runs(api, tmp_path):
    s = await api.ok("POST", "sessions", body={"repos": [{"url": str(tmp_path / "nope.git")}]})
    s = await api.wait_phase(s["id"], "Running", "Failed")
    assert s["phase"] == "Running"
    failed = [e for e in await api.events(s["id"]) if e["type"] == "REPO_CLONE_FAILED"]
    assert failed and "no such local repository" in failed[0]["data"]["error"]


async def test_attach_repo_while_running(api, bare_repo, sessions_config):
    s = await api.ok("POST", "sessions", body={"display_name": "attach"})
    await api.wait_phase(s["id"], "Running")
    s2 = await api.ok("POST", "sessions", s["id"], "repos", body={"url": str(bare_repo), "name": "later"}, status=202)
    assert [r["name"] for r in s2["spec"]["repos"]] == ["later"]
    ws = Path(sessions_config["data_dir"]) / "workspaces" / s["id"] / "repos" / "later"
    assert (ws / "README.md").exists()
    code, err = await api.call("POST", "sessions", s["id"], "repos", body={"url": str(bare_repo), "name": "later"})
    assert code == 409 and "already has a repo" in err["error"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 1.5}, "temperature"),  # Claude allows 0-1 only
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"timeout": -1}, "timeout"),
        ({"inactivity_timeout": -5}, "inactivity_timeout"),
        ({"model": "gpt-5"}, "model"),
        ({"display_name": "x" * 101}, "display_name"),
        ({"repos": [{"url": "--upload-pack=evil"}]}, "repos.0.url"),
        ({"repos": [{"url": "a", "branch": "../x"}]}, "repos.0.branch"),
        ({"repos": "not a list"}, "repos"),
        ({"thinking": {"budget_tokens": 2048}}, "temperature"),  # Claude thinking needs temperature 1
        ({"temperature": 1, "thinking": {"budget_tokens": 500}}, "thinking.budget_tokens"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(api, body, field):
    code, err = await api.call("POST", "sessions", body=body)
    assert code == 422, err
    assert field in err["error"] and err["detail"][0]["field"] == field
    assert (await api.ok("GET", "sessions"))["sessions"] == []  # nothing written


async def test_gated_model_is_403_and_hidden(api):
    code, err = await api.call("POST", "sessions", body={"model": "claude-opus-4-6"})
    assert code == 403 and "not enabled" in err["error"]
    models = await api.ok("GET", "models")
    ids = {m["id"] for m in models["models"]}
    assert {"claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5", "gemini-2.5-flash"} <= ids
    assert "claude-opus-4-6" not in ids and models["default_model"] == "claude-sonnet-4-5"


async def test_gemini_allows_temperature_up_to_2(api):
    s = await api.ok("POST", "sessions", body={"model": "gemini-2.5-flash", "temperature": 1.8}, status=201)
    assert s["spec"]["temperature"] == 1.8


async def test_bad_json_and_unknown_session(api):
    code, err = await api.call("POST", "sessions", body="{not json")
    assert code == 422 and err["error"]
    for method, path in [("GET", ("sessions", "s-000000000000")), ("DELETE", ("sessions", "nope")),
                         ("POST", ("sessions", "nope", "messages")), ("GET", ("sessions", "nope", "events"))]:
        code, err = await api.call(method, *path, body={"text": "hi"} if method == "POST" else None)
        assert code == 404 and "no session" in err["error"], (method, path, err)


async def test_unauthenticated_is_403(jp_fetch, api):
    for method, path in [("GET", ("sessions",)), ("POST", ("sessions",)), ("GET", ("models",)),
                         ("GET", ("openapi.json",))]:
        with pytest.raises(HTTPClientError) as exc:
            await jp_fetch("jupyter-sessions", "api", *path, method=method, headers={"Authorization": ""},
                           body=b"{}" if method == "POST" else None)
        assert exc.value.code == 403
    assert (await api.ok("GET", "sessions"))["sessions"] == []


async def test_rename_messages_and_events(api):
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    renamed = await api.ok("PATCH", "sessions", sid, body={"display_name": "My work"})
    assert renamed["display_name"] == "My work"
    code, err = await api.call("PATCH", "sessions", sid, body={"display_name": ""})
    assert code == 422 and "display_name" in err["error"]
    accepted = await api.ok("POST", "sessions", sid, "messages", body={"text": "hello"}, status=202)
    events = await api.events(sid)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    msgs = [e for e in events if e["type"] == "USER_MESSAGE"]
    assert msgs[-1]["data"]["message_id"] == accepted["message_id"] and msgs[-1]["data"]["text"] == "hello"
    tail = await api.events(sid, after=events[-2]["seq"])
    assert tail[0] == events[-1]  # replay from any seq: exactly what follows it
    code, err = await api.call("GET", "sessions", sid, "events", params={"after": "x"})
    assert code == 422 and "after" in err["error"]


async def test_list_sessions_and_delete(api, sessions_config):
    a = await api.ok("POST", "sessions", body={"display_name": "a"})
    b = await api.ok("POST", "sessions", body={"display_name": "b"})
    await api.wait_phase(a["id"], "Running")
    await api.wait_phase(b["id"], "Running")
    listed = await api.ok("GET", "sessions")
    assert {x["id"] for x in listed["sessions"]} == {a["id"], b["id"]}
    ws = Path(sessions_config["data_dir"]) / "workspaces" / a["id"]
    assert ws.exists()
    code, _ = await api.call("DELETE", "sessions", a["id"])
    assert code == 204
    assert not ws.exists()
    code, _ = await api.call("GET", "sessions", a["id"])
    assert code == 404
    code, _ = await api.call("DELETE", "sessions", a["id"])
    assert code == 404
    assert [x["id"] for x in (await api.ok("GET", "sessions"))["sessions"]] == [b["id"]]


async def test_stop_and_resume_basic(api):
    s = await api.ok("POST", "sessions", body={})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "stop", status=202)
    s = await api.wait_phase(sid, "Stopped")
    assert s["reason"] == "stopped by the user" and s["stopped"]
    code, err = await api.call("POST", "sessions", sid, "messages", body={"text": "hi"})
    assert code == 409 and "resume" in err["error"]
    await api.ok("POST", "sessions", sid, "resume", status=202)
    s = await api.wait_phase(sid, "Running")
    phases = [e["data"]["phase"] for e in await api.events(sid) if e["type"] == "PHASE_CHANGED"]
    assert phases == ["Pending", "Creating", "Running", "Stopping", "Stopped", "Pending", "Creating", "Running"]
    code, err = await api.call("POST", "sessions", sid, "resume")
    assert code == 409


async def test_openapi_document_matches_routes(api):
    doc = await api.ok("GET", "openapi.json")
    assert doc["openapi"].startswith("3.1")
    documented = {(m, p) for m, p, *_ in all_operations()}
    served = set()
    for pattern, handler in all_routes():
        path = pattern.replace("(?P<sid>[^/]+)", "{id}")
        for method in ("get", "post", "patch", "delete", "put"):
            if method in handler.__dict__:
                served.add((method, path))
    assert documented == served
    assert set(doc["paths"]) == {p for _, p in documented}
    spec = doc["components"]["schemas"]["SessionSpec"]["properties"]
    for field in ("display_name", "model", "temperature", "max_tokens", "timeout", "inactivity_timeout",
                  "repos", "workflow", "initial_prompt", "thinking"):
        assert field in spec
    assert spec["temperature"]["default"] == 0.7 and spec["max_tokens"]["default"] == 4000
    json.dumps(doc)


@pytest.mark.parametrize("sandbox_kind", ["docker"], indirect=True)
async def test_docker_session_runs_in_a_container_with_the_repo(api, bare_repo, sandbox_kind):
    import docker

    client = docker.from_env()
    s = await api.ok("POST", "sessions", body={"repos": [{"url": str(bare_repo)}]})
    s = await api.wait_phase(s["id"], "Running", "Failed")
    assert s["phase"] == "Running" and s["sandbox"] == "docker" and s["isolated"] is True, s
    container = client.containers.get(f"jupyter-session-{s['id']}")
    assert container.status == "running"
    assert container.attrs["HostConfig"]["NetworkMode"] == "none"
    code, out = container.exec_run(["cat", "/workspace/repos/demo/README.md"], user="1000")
    assert code == 0 and out.decode() == "# demo\n"
    code, out = container.exec_run(["git", "-C", "/workspace/repos/demo", "config", "--get", "remote.origin.url"],
                                   user="1000")
    assert out.decode().strip() == str(bare_repo)
    code, _ = await api.call("DELETE", "sessions", s["id"])
    assert code == 204
    assert not client.containers.list(all=True, filters={"label": f"jupyter-sessions.session={s['id']}"})


@pytest.fixture
def unreachable_docker(sessions_config):
    sessions_config["docker_url"] = "unix:///nonexistent/docker.sock"
    return sessions_config


@pytest.mark.parametrize("sandbox_kind", ["docker"], indirect=True)
async def test_docker_unreachable_is_a_clear_503(unreachable_docker, api, sandbox_kind):
    code, err = await api.call("POST", "sessions", body={})
    assert code == 503
    assert "apt-get install docker.io" in err["error"] and "sandbox = 'local'" in err["error"]
    assert (await api.ok("GET", "sessions"))["sessions"] == []


def test_readme_lists_every_config_option():
    from jupyter_sessions.app import SessionsApp

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    base = set(SessionsApp.__base__.class_traits(config=True))
    missing = [n for n in SessionsApp.class_traits(config=True) if n not in base and f"`{n}`" not in readme]
    assert not missing, f"document these options in README.md: {missing}"
