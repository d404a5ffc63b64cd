"""The kernel-side client: discovery, the REST wrapper and the reconnecting stream follower.

The server runs on pytest-jupyter's loop in this thread, so blocking client calls run in
`asyncio.to_thread` (as they would run in a kernel: another process, never the server's loop).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from conftest import until

from jupyter_sessions import client as cl
from jupyter_sessions.client import (
    RouteNotAvailable,
    ServerNotFound,
    SessionNotFound,
    SessionsClient,
    SessionsError,
    compact_into,
    parse_repo,
)
from jupyter_sessions.transcript import fold

ENV = ("JUPYTER_SESSIONS_SERVER_URL", "JUPYTER_SESSIONS_TOKEN", "JUPYTERHUB_API_TOKEN")


@pytest.fixture
def server_url(jp_serverapp, http_server_client, jp_http_port, jp_base_url):
    return f"http://localhost:{jp_http_port}{jp_base_url}"


@pytest.fixture
def client(jp_serverapp, server_url):
    return SessionsClient(server_url, jp_serverapp.identity_provider.token)


# --- discovery -------------------------------------------------------------------------------

def test_discovery_from_the_environment(monkeypatch):
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("JUPYTER_SESSIONS_SERVER_URL", "http://127.0.0.1:9999/user/alice")
    monkeypatch.setenv("JUPYTER_SESSIONS_TOKEN", "tok")
    c = SessionsClient()
    assert c.url == "http://127.0.0.1:9999/user/alice/"
    assert c.api_url == "http://127.0.0.1:9999/user/alice/jupyter-sessions/api/"
    assert c.token == "tok"
    assert c.ws_url("s-1", 7) == "ws://127.0.0.1:9999/user/alice/jupyter-sessions/api/sessions/s-1/stream?after=7"
    # explicit arguments win; a hub token is the fallback when the server has no token of its own
    assert SessionsClient("https://h:1/x/", "t2").url == "https://h:1/x/"
    monkeypatch.delenv("JUPYTER_SESSIONS_TOKEN")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hubtok")
    assert SessionsClient().token == "hubtok"


def test_discovery_from_the_runtime_dir_prefers_the_parent_server(monkeypatch, tmp_path):
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(ServerNotFound, match="JUPYTER_SESSIONS_SERVER_URL"):
        SessionsClient()
    # two live servers: this process (not a parent) and the parent of this process
    for pid, port in ((os.getpid(), 1111), (os.getppid(), 2222)):
        (tmp_path / f"jpserver-{pid}.json").write_text(json.dumps({
            "pid": pid, "url": f"http://127.0.0.1:{port}/base/", "token": f"t{port}", "port": port,
            "base_url": "/base/", "root_dir": "/nowhere", "hostname": "127.0.0.1", "secure": False,
            "password": False, "sock": "", "version": "2"}))
    c = SessionsClient()
    assert (c.url, c.token) == ("http://127.0.0.1:2222/base/", "t2222")


def test_parse_repo_keeps_at_signs_that_belong_to_the_url():
    assert parse_repo("https://github.com/o/r.git@main") == {"url": "https://github.com/o/r.git", "branch": "main"}
    assert parse_repo("https://h/o/r@feature/x") == {"url": "https://h/o/r", "branch": "feature/x"}
    assert parse_repo("git@github.com:o/r.git") == {"url": "git@github.com:o/r.git"}
    assert parse_repo("git@github.com:o/r.git@dev") == {"url": "git@github.com:o/r.git", "branch": "dev"}
    assert parse_repo("ssh://git@host/o/r") == {"url": "ssh://git@host/o/r"}
    assert parse_repo("/srv/repos/demo.git@main") == {"url": "/srv/repos/demo.git", "branch": "main"}


def test_compaction_reads_like_the_original_log():
    events = [
        {"seq": 1, "type": "TEXT_MESSAGE_START", "data": {"messageId": "m", "role": "assistant"}},
        *[{"seq": 2 + i, "type": "TEXT_MESSAGE_CONTENT", "data": {"messageId": "m", "delta": w}}
          for i, w in enumerate(["Hel", "lo ", "there"])],
        {"seq": 5, "type": "TOOL_CALL_START", "data": {"toolCallId": "t", "toolCallName": "bash"}},
        {"seq": 6, "type": "TOOL_CALL_ARGS", "data": {"toolCallId": "t", "delta": '{"command": '}},
        {"seq": 7, "type": "TOOL_CALL_ARGS", "data": {"toolCallId": "t", "delta": '"ls"}'}},
        {"seq": 8, "type": "TEXT_MESSAGE_CONTENT", "data": {"messageId": "m", "delta": "!"}},
    ]
    log: list[dict] = []
    for e in events:
        compact_into(log, e)
    assert [e["seq"] for e in log] == [1, 4, 5, 7, 8]
    assert log[1]["seq0"] == 2 and log[1]["data"]["delta"] == "Hello there"
    assert log[3]["data"]["delta"] == '{"command": "ls"}'
    assert fold(log).items == fold(events).items


# --- REST against a real server ----------------------------------------------------------------

async def test_rest_round_trip_and_errors(client, jp_serverapp, server_url):
    def scenario():
        models = client.models()
        assert "replay" in {m["id"] for m in models["models"]}
        s = client.create({"model": "replay", "display_name": "client test"})
        sid = s["id"]
        assert client.session(sid)["display_name"] == "client test"
        assert sid in {x["id"] for x in client.sessions()}
        assert client.resolve(sid[:6])["id"] == sid  # a unique prefix
        assert client.resolve("client test")["id"] == sid  # the display name
        assert client.rename(sid, "renamed")["display_name"] == "renamed"
        accepted = client.send(sid, "hello")
        assert accepted["message_id"].startswith("m-")
        evs = client.events(sid)
        assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
        assert any(e["type"] == "USER_MESSAGE" and e["data"]["text"] == "hello" for e in evs)
        errors = {}
        for name, call in {
            "temperature": lambda: client.create({"model": "claude-sonnet-4-5", "temperature": 1.5}),
            "unknown": lambda: client.session("s-ffffffffffff"),
            "route": lambda: client.request("GET", f"sessions/{sid}/no-such-route"),
            "badjson": lambda: client.create({"nonsense": 1}),
        }.items():
            with pytest.raises(SessionsError) as exc:
                call()
            errors[name] = exc.value
        client.delete(sid)
        with pytest.raises(SessionNotFound):
            client.session(sid)
        return errors

    errors = await asyncio.to_thread(scenario)
    for e in errors.values():
        assert "\n" not in str(e) and str(e)
    assert errors["temperature"].status == 422 and "temperature" in str(errors["temperature"])
    assert isinstance(errors["unknown"], SessionNotFound) and "s-ffffffffffff" in str(errors["unknown"])
    assert isinstance(errors["route"], RouteNotAvailable) and "not available on this server" in str(errors["route"])
    assert errors["badjson"].status == 422 and "nonsense" in str(errors["badjson"])

    bad = SessionsClient(server_url, "wrong-token")
    with pytest.raises(SessionsError, match="authentication required|not authorized") as exc:
        await asyncio.to_thread(bad.sessions)
    assert exc.value.status in (401, 403)
    dead = SessionsClient("http://127.0.0.1:9/", "x")
    with pytest.raises(SessionsError, match="cannot reach"):
        await asyncio.to_thread(dead.sessions)


async def test_follower_gets_every_event_once_across_reconnects(client, manager):
    s = await asyncio.to_thread(client.create, {"display_name": "follow"})
    sid = s["id"]
    got: list[dict] = []
    statuses: list[str] = []
    follower = client.follower(sid)
    assert client.follower(sid) is follower  # one per session per client
    history = await asyncio.to_thread(follower.subscribe, got.extend, statuses.append)
    assert history and history[0]["type"] == "PHASE_CHANGED"
    await until(lambda: follower.status == "live", what="live stream")
    for i in range(5):
        await manager.events.append(sid, "TEXT_MESSAGE_CONTENT", {"messageId": "m1", "delta": f"a{i} "})
    await until(lambda: any(e["data"].get("delta") == "a4 " for e in got), what="live events")

    follower.drop_connection()
    await until(lambda: any(s.startswith("reconnecting") for s in statuses), what="reconnecting status")
    for i in range(5):  # while (possibly) disconnected
        await manager.events.append(sid, "TEXT_MESSAGE_CONTENT", {"messageId": "m1", "delta": f"b{i} "})
    await until(lambda: any(e["data"].get("delta") == "b4 " for e in got), what="events after reconnect")
    await until(lambda: follower.status == "live", what="live again")
    seqs = [e["seq"] for e in history] + [e["seq"] for e in got]
    assert seqs == sorted(set(seqs)), "duplicates or disorder"
    stored = await manager.events.replay(sid, 0)
    assert seqs == [e.seq for e in stored], "gaps"
    # the follower's own compacted history reads like the full log
    assert fold(follower.history).items == fold([e.model_dump(mode="json") for e in stored]).items

    await asyncio.to_thread(client.delete, sid)
    await until(lambda: follower.finished, what="follower to end after delete")


async def test_stream_iterator_ends_when_the_session_is_deleted(client, manager):
    s = await asyncio.to_thread(client.create, {"display_name": "iter"})
    sid = s["id"]

    def read_all():
        return list(client.stream(sid, after=0, timeout=30))

    reader = asyncio.ensure_future(asyncio.to_thread(read_all))
    await asyncio.sleep(0.5)
    await manager.events.append(sid, "SESSION_RENAMED", {"display_name": "x"})
    await asyncio.sleep(0.3)
    await asyncio.to_thread(client.delete, sid)
    events = await asyncio.wait_for(reader, 30)
    assert any(e["type"] == "SESSION_RENAMED" for e in events)
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})


def test_one_line_errors_are_short():
    assert cl._one_line("a\n b   c", 4) == "a b…"
