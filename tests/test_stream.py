"""The event stream: replay from any seq, follow live, reconnect without gaps or duplicates."""

from __future__ import annotations

import asyncio
import json

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketClosedError


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


async def test_reconnect_gets_exactly_the_missed_events(api, jp_ws_fetch):
    sid = await running_session(api)
    base = len(await api.events(sid))
    ws = await jp_ws_fetch("jupyter-sessions", "api", "sessions", sid, "stream", params={"after": "0"})
    first = await read_events(ws, base)
    assert [e["seq"] for e in first] == list(range(1, base + 1))
    await api.ok("POST", "sessions", sid, "messages", body={"text": "one"})
    live = await read_events(ws, 1)
    assert live[0]["seq"] == base + 1 and live[0]["data"]["text"] == "one"
    last_seen = live[0]["seq"]
    ws.close()
    # While nobody listens, more happens.
    for text in ("two", "three", "four"):
        await api.ok("POST", "sessions", sid, "messages", body={"text": text})
    ws2 = await jp_ws_fetch("jupyter-sessions", "api", "sessions", sid, "stream", params={"after": str(last_seen)})
    missed = await read_events(ws2, 3)
    assert [e["data"]["text"] for e in missed] == ["two", "three", "four"]
    assert [e["seq"] for e in missed] == [last_seen + 1, last_seen + 2, last_seen + 3]
    await api.ok("POST", "sessions", sid, "messages", body={"text": "five"})
    (after,) = await read_events(ws2, 1)
    assert after["seq"] == last_seen + 4 and after["data"]["text"] == "five"
    with pytest.raises(asyncio.TimeoutError):  # and nothing duplicated after it
        await asyncio.wait_for(ws2.read_message(), 0.5)
    ws2.close()


async def test_many_subscribers_and_concurrent_writers(api, jp_ws_fetch):
    sid = await running_session(api)
    start = len(await api.events(sid))
    socks = [await jp_ws_fetch("jupyter-sessions", "api", "sessions", sid, "stream",
                               params={"after": str(start)}) for _ in range(5)]
    n = 40
    await asyncio.gather(*(api.ok("POST", "sessions", sid, "messages", body={"text": f"m{i}"}) for i in range(n)))
    for ws in socks:
        got = await read_events(ws, n)
        assert [e["seq"] for e in got] == list(range(start + 1, start + n + 1))
        assert sorted(e["data"]["text"] for e in got) == sorted(f"m{i}" for i in range(n))
        ws.close()


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
