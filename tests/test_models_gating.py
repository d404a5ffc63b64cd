"""The model catalogue and per-workspace gates: what `GET /models` shows, what creation accepts, and
what admins configure (extra, hidden and re-pointed models; workspace defaults; hub groups), with
keys that never leave the server.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes.anthropic_server import reply, text

from jupyter_sessions.catalogue import BUILTIN_MODELS

GLOBAL_KEY = "sk-ant-global-SECRET-0123456789"
MODEL_KEY = "sk-ant-proxy-SECRET-9876543210"
OPUS46 = "claude-opus-4-6"


def test_the_seven_models_of_the_spec():
    table = {(m.id, m.label, m.provider, m.gated) for m in BUILTIN_MODELS}
    assert table == {
        ("claude-sonnet-4-5", "Claude Sonnet 4.5", "anthropic", False),
        ("claude-opus-4-5", "Claude Opus 4.5", "anthropic", False),
        ("claude-haiku-4-5", "Claude Haiku 4.5", "anthropic", False),
        ("gemini-2.5-flash", "Gemini 2.5 Flash", "gemini", False),
        ("claude-opus-4-6", "Claude Opus 4.6", "anthropic", True),
        ("claude-sonnet-4-6", "Claude Sonnet 4.6", "anthropic", True),
        ("gemini-2.5-pro", "Gemini 2.5 Pro", "gemini", True),
    }
    assert [m.id for m in BUILTIN_MODELS if m.default] == ["claude-sonnet-4-5"]


@pytest.fixture
def gated_workspaces(sessions_config):
    sessions_config["workspaces"] = {
        "default": {},
        "research": {"features": [f"model.{OPUS46}", "model.gemini-2.5-pro"], "default_model": OPUS46},
    }
    return sessions_config


async def test_gated_model_hidden_and_refused_without_the_flag(gated_workspaces, api):
    ids = {m["id"] for m in (await api.ok("GET", "models"))["models"]}
    assert OPUS46 not in ids and "gemini-2.5-pro" not in ids and "claude-sonnet-4-6" not in ids
    assert {"claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5", "gemini-2.5-flash"} <= ids
    code, err = await api.call("POST", "sessions", body={"model": OPUS46})
    assert code == 403 and err["error"] == "model: Claude Opus 4.6 is not enabled for workspace 'default'"
    assert err["detail"] == [{"field": "model", "message": "Claude Opus 4.6 is not enabled for workspace 'default'"}]
    code, err = await api.call("POST", "sessions", body={"model": OPUS46, "workspace": "default"})
    assert code == 403
    assert (await api.ok("GET", "sessions"))["sessions"] == []


async def test_gated_model_available_where_the_workspace_enables_it(gated_workspaces, api):
    listing = await api.ok("GET", "models", params={"workspace": "research"})
    by_id = {m["id"]: m for m in listing["models"]}
    assert OPUS46 in by_id and "gemini-2.5-pro" in by_id and "claude-sonnet-4-6" not in by_id
    assert listing["default_model"] == OPUS46 and by_id[OPUS46]["default"] is True and by_id[OPUS46]["gated"] is True
    s = await api.ok("POST", "sessions", body={"model": OPUS46, "workspace": "research", "temperature": 0.5},
                     status=201)
    assert s["spec"]["model"] == OPUS46 and s["spec"]["workspace"] == "research"
    # no model named: the workspace's default model
    s = await api.ok("POST", "sessions", body={"workspace": "research"}, status=201)
    assert s["spec"]["model"] == OPUS46
    code, err = await api.call("GET", "models", params={"workspace": "nope"})
    assert code == 404 and "unknown workspace 'nope'" in err["error"]
    code, err = await api.call("POST", "sessions", body={"workspace": "nope"})
    assert code == 422 and err["detail"][0]["field"] == "workspace"
    spaces = await api.ok("GET", "workspaces")
    assert spaces["primary"] == "default"  # a plain server: every workspace is open, `default` first
    assert {w["name"] for w in spaces["workspaces"]} == {"default", "research"}


@pytest.fixture
def admin_models(sessions_config, fake, monkeypatch):
    monkeypatch.setenv("PROXY_KEY_FOR_TEST", MODEL_KEY)
    sessions_config.update(
        anthropic_api_key=GLOBAL_KEY,
        anthropic_base_url="http://127.0.0.1:9/unreachable",  # only the per-model URL can answer
        default_model="claude-haiku-4-5",
        hidden_models=["claude-opus-4-5"],
        models=[
            {"id": "team-claude", "label": "Team Claude (proxy)", "provider": "anthropic", "max_temperature": 1.0,
             "max_output_tokens": 8000, "base_url": fake.url, "api_key_env": "PROXY_KEY_FOR_TEST"},
            {"id": "claude-haiku-4-5", "base_url": fake.url, "api_key": MODEL_KEY},  # re-point a built-in
        ],
        watch_interval=0.2,
    )
    return sessions_config


async def test_admin_models_are_added_hidden_and_re_pointed(admin_models, fake, api):
    listing = await api.ok("GET", "models")
    by_id = {m["id"]: m for m in listing["models"]}
    assert "claude-opus-4-5" not in by_id  # hidden by the admin
    assert by_id["team-claude"]["label"] == "Team Claude (proxy)"
    assert by_id["claude-haiku-4-5"]["label"] == "Claude Haiku 4.5"  # override keeps the built-in fields
    assert listing["default_model"] == "claude-haiku-4-5" and by_id["claude-haiku-4-5"]["default"] is True
    for entry in listing["models"]:
        assert set(entry) == {"id", "label", "provider", "default", "gated", "max_temperature",
                              "max_output_tokens", "thinking_default"}
    code, err = await api.call("POST", "sessions", body={"model": "claude-opus-4-5"})
    assert code == 422 and "unknown model 'claude-opus-4-5'" in err["error"]

    # the per-model base URL and key reach the provider (the global URL is unreachable)
    fake.push(reply(text("via the proxy")), reply(text("haiku via the proxy")))
    s = await api.ok("POST", "sessions", body={"model": "team-claude", "initial_prompt": "hi"}, status=201)
    await _until(lambda: len(fake.requests) >= 1)
    s2 = await api.ok("POST", "sessions", body={"initial_prompt": "hello"}, status=201)
    assert s2["spec"]["model"] == "claude-haiku-4-5"  # the admin's default_model
    await _until(lambda: len(fake.requests) >= 2)
    assert [r.body["model"] for r in fake.requests] == ["team-claude", "claude-haiku-4-5"]
    for r in fake.requests:
        assert MODEL_KEY in (r.headers.get("X-Api-Key"), r.headers.get("Authorization", "").removeprefix("Bearer "))
    for sid in (s["id"], s2["id"]):
        await _until_idle(api, sid)

    # no key (nor the proxy URL) in any API answer, event or catalogue entry
    seen = [await api.ok("GET", "models"), await api.ok("GET", "workspaces"), await api.ok("GET", "workflows"),
            await api.ok("GET", "sessions"), await api.ok("GET", "openapi.json")]
    for sid in (s["id"], s2["id"]):
        seen += [await api.ok("GET", "sessions", sid), await api.events(sid)]
    blob = json.dumps(seen)
    assert "via the proxy" in blob  # the events are really in there
    for secret in (GLOBAL_KEY, MODEL_KEY, fake.url, "PROXY_KEY_FOR_TEST"):
        assert secret not in blob, secret


async def _until(cond, timeout=30.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)


async def _until_idle(api, sid, timeout=30.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        events = await api.events(sid)
        if any(e["type"] == "RUN_FINISHED" for e in events) and (await api.ok("GET", "sessions", sid))[
                "agent_state"] == "idle":
            return
        assert loop.time() < end, events
        await asyncio.sleep(0.05)


@pytest.fixture
def hub_groups(sessions_config, monkeypatch):
    """A server whose owner is in the hub group `research` (as the admin's spawner environment says)."""
    monkeypatch.setenv("JUPYTER_SESSIONS_GROUPS", "research,students")
    sessions_config["workspaces"] = {
        "ops": {"groups": ["ops"], "features": [f"model.{OPUS46}"]},
        "research": {"groups": ["research"], "features": [f"model.{OPUS46}"], "inactivity_timeout": 3600},
    }
    return sessions_config


async def test_workspaces_follow_hub_groups(hub_groups, api):
    spaces = await api.ok("GET", "workspaces")
    assert spaces["primary"] == "research"
    assert [(w["name"], w["primary"]) for w in spaces["workspaces"]] == [("research", True), ("default", False)]
    # no workspace named: the group's workspace, with its gated model
    ids = {m["id"] for m in (await api.ok("GET", "models"))["models"]}
    assert OPUS46 in ids
    s = await api.ok("POST", "sessions", body={"model": OPUS46}, status=201)
    assert s["spec"]["workspace"] == "research"
    # the baseline stays available by name, without the gated model
    ids = {m["id"] for m in (await api.ok("GET", "models", params={"workspace": "default"}))["models"]}
    assert OPUS46 not in ids
    code, err = await api.call("POST", "sessions", body={"model": OPUS46, "workspace": "default"})
    assert code == 403
    # another group's workspace is refused
    code, err = await api.call("GET", "models", params={"workspace": "ops"})
    assert code == 403 and "only for members of the hub group(s) ops" in err["error"]
    code, err = await api.call("POST", "sessions", body={"workspace": "ops"})
    assert code == 403 and err["detail"][0]["field"] == "workspace"


@pytest.fixture
def github_only(sessions_config):
    sessions_config["workspaces"] = {"default": {"allowed_repo_hosts": ["github.com"]}}
    return sessions_config


async def test_workspace_allowed_repo_hosts(github_only, api, bare_repo):
    code, err = await api.call("POST", "sessions", body={"repos": [{"url": str(bare_repo)}]})
    assert code == 403 and "only from: github.com" in err["error"] and err["detail"][0]["field"] == "repos.0.url"
    assert (await api.ok("GET", "sessions"))["sessions"] == []
    s = await api.ok("POST", "sessions", body={})
    await api.wait_phase(s["id"], "Running")
    code, err = await api.call("POST", "sessions", s["id"], "repos", body={"url": "https://gitlab.com/a/b.git"})
    assert code == 403 and "gitlab.com" in err["error"]
