"""The event stream: replay from any seq, follow live, reconnect without gaps or duplicates."""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import HTTPClientError


async def read_events(ws, n: int, timeout: float = 10) -> list[dict]:
    out = []
    for _ in range(n):
        msg = await asyncio.wait_for(ws.read_message(), timeout)
        assert msg is not None, "stream closed early"
        out.append(json.loads(msg))
    return out


async def running_session(api) -> str:
    s = await api.ok("POST", "sessions", body={"display_name": "stream"})
    await api.wait_phase(s["id"], "Running")
    return s["id"]


async def read_until(ws, done, timeout: float = 20) -> list[dict]:
    """Read messages until `done(messages)` is true (the agent may interleave its own events)."""
    got: list[dict] = []
    while not done(got):
        msg = await asyncio.wait_for(ws.read_message(), timeout)
        assert msg is not None, "stream closed early"
        got.append(json.loads(msg))
    return got


def texts(events: list[dict]) -> list[str]:
    return [e["data"]["text"] for e in events if e["type"] == "USER_MESSAGE"]


def contiguous(events: list[dict], start: int) -> bool:
    return [e["seq"] for e in events] == list(range(start + 1, start + len(events) + 1))


async def test_reconnect_gets_exactly_the_missed_events(api, jp_ws_fetch):
    sid = await running_session(api)
    base = len(await api.events(sid))
    ws = await jp_ws_fetch("jupyter-sessions", "api", "sessions", sid, "stream", params={"after": "0"})
    first = await read_events(ws, base)
    assert [e["seq"] for e in first] == list(range(1, base + 1))
    await api.ok("POST", "sessions", sid, "messages", body={"text": "one"})
    live = await read_until(ws, lambda got: "one" in texts(got))
    assert contiguous(live, base)
    last_seen = live[-1]["seq"]
    ws.close()
    # While nobody listens, more happens.
    for text in ("two", "three", "four"):
        await api.ok("POST", "sessions", sid, "messages", body={"text": text})
    ws2 = await jp_ws_fetch("jupyter-sessions", "api", "sessions", sid, "stream", params={"after": str(last_seen)})
    missed = await read_until(ws2, lambda got: len(texts(got)) == 3)
    assert texts(missed) == ["two", "three", "four"]
    assert contiguous(missed, last_seen)  # no gap, no duplicate of what was seen before
    stored = await api.events(sid, after=last_seen)
    assert stored[: len(missed)] == missed  # the same events the REST replay gives
    await api.ok("POST", "sessions", sid, "messages", body={"text": "five"})
    more = await read_until(ws2, lambda got: "five" in texts(got))
    assert contiguous(missed + more, last_seen)
    ws2.close()


async def test_many_subscribers_and_concurrent_writers(api, jp_ws_fetch):
    sid = await running_session(api)
    start = len(await api.events(sid))
    socks = [await jp_ws_fetch("jupyter-sessions", "api", "sessions", sid, "stream",
                               params={"after": str(start)}) for _ in range(5)]
    n = 40
    await asyncio.gather(*(api.ok("POST", "sessions", sid, "messages", body={"text": f"m{i}"}) for i in range(n)))
    seen = []
    for ws in socks:
        got = await read_until(ws, lambda got: len(texts(got)) == n)
        assert contiguous(got, start)
        assert sorted(texts(got)) == sorted(f"m{i}" for i in range(n))
        seen.append(got)
        ws.close()
    shortest = min(len(g) for g in seen)
    assert all(g[:shortest] == seen[0][:shortest] for g in seen)  # every subscriber saw the same order


async def test_stream_closes_when_session_deleted(api, jp_ws_fetch):
    sid = await running_session(api)
    ws = await jp_ws_fetch("jupyter-sessions", "api", "sessions", sid, "stream", params={"after": "1000"})
    await api.call("DELETE", "sessions", sid)
    msg = await asyncio.wait_for(ws.read_message(), 10)
    assert msg is None  # closed by the server


async def test_stream_requires_auth_and_known_session(api, jp_ws_fetch):
    sid = await running_session(api)
    with pytest.raises(HTTPClientError) as exc:
        await jp_ws_fetch("jupyter-sessions", "api", "sessions", sid, "stream", headers={"Authorization": "token nope"})
    assert exc.value.code == 403
    with pytest.raises(HTTPClientError) as exc:
        await jp_ws_fetch("jupyter-sessions", "api", "sessions", "s-ffffffffffff", "stream")
    assert exc.value.code == 404


def phases_of(changes: list[dict], sid: str) -> list[str]:
    return [c["session"]["phase"] for c in changes if c["type"] == "changed" and c["session"]["id"] == sid]


async def test_watch_sends_the_list_then_every_change(api, jp_ws_fetch):
    """The side panel's live list: a snapshot, then created, renamed, stopped and deleted sessions."""
    old = await running_session(api)
    ws = await jp_ws_fetch("jupyter-sessions", "api", "sessions", "watch")
    snapshot = json.loads(await asyncio.wait_for(ws.read_message(), 10))
    assert snapshot["type"] == "snapshot" and [s["id"] for s in snapshot["sessions"]] == [old]
    assert snapshot["sessions"][0] == await api.ok("GET", "sessions", old) | {"last_seq": snapshot["sessions"][0]["last_seq"]}

    new = (await api.ok("POST", "sessions", body={"display_name": "watched"}))["id"]
    got = await read_until(ws, lambda g: "Running" in phases_of(g, new))
    assert phases_of(got, new)[0] in ("Pending", "Creating")  # seen from the start, not only at the end
    assert all(c["type"] == "changed" and set(c) == {"type", "session"} for c in got)

    await api.ok("PATCH", "sessions", new, body={"display_name": "renamed"})
    got = await read_until(ws, lambda g: any(c["type"] == "changed" and c["session"]["display_name"] == "renamed"
                                               for c in g))
    await api.ok("POST", "sessions", old, "stop")
    got = await read_until(ws, lambda g: "Stopped" in phases_of(g, old))
    assert phases_of(got, old)[-1] == "Stopped" and got[-1]["session"]["reason"]

    await api.call("DELETE", "sessions", new)
    got = await read_until(ws, lambda g: {"type": "deleted", "id": new} in g)
    ws.close()


async def test_watch_requires_auth(api, jp_ws_fetch):
    with pytest.raises(HTTPClientError) as exc:
        await jp_ws_fetch("jupyter-sessions", "api", "sessions", "watch", headers={"Authorization": "token nope"})
    assert exc.value.code == 403
