"""Feedback: ratings stored locally and on the session, Langfuse scores on the rated message's
trace (real SDK, local fake Langfuse), an outbox that survives Langfuse outages and restarts, and
no duplicate scores."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from conftest import until, use_services

from jupyter_sessions.events import EventLog
from jupyter_sessions.export import ExportConfig
from jupyter_sessions.feedback import FeedbackIn, FeedbackService, score_id
from jupyter_sessions.store import SessionRow, Store, utcnow
from jupyter_sessions.tracing import make_client, trace_id_for_run
from test_export import transcript_events


@pytest.fixture
def export_config(langfuse) -> ExportConfig:
    return ExportConfig(langfuse=langfuse[1], feedback_retry_base=0.2, feedback_retry_max=0.5)


@pytest.fixture
def services(jp_serverapp, jp_asyncio_loop, export_config):
    svcs = use_services(jp_serverapp, jp_asyncio_loop, export_config)
    yield svcs
    jp_asyncio_loop.run_until_complete(svcs.close())


async def session_with_transcript(api, jp_serverapp) -> dict:
    s = await api.ok("POST", "sessions", body={"model": "replay", "workflow": "bugfix", "display_name": "rated"})
    await api.wait_phase(s["id"], "Running")
    log = jp_serverapp.web_app.settings["jupyter_sessions_manager"].events
    for e in transcript_events()[2:]:
        await log.append(s["id"], e["type"], e["data"])
    return s


async def test_rating_is_stored_evented_and_scored_on_the_messages_trace(api, jp_serverapp, langfuse, services):
    server, _ = langfuse
    s = await session_with_transcript(api, jp_serverapp)
    sid, owner = s["id"], s["owner"]
    fb = await api.ok("POST", "sessions", sid, "feedback",
                      body={"message_id": "msg-2", "rating": "up", "comment": "nice fix"}, status=201)
    assert fb["rating"] == "up" and fb["run_id"] == "run-2" and fb["user"] == owner
    assert fb["trace_id"] == trace_id_for_run(sid, "run-2") and fb["delivery"] == "pending"
    # every view sees it: an event on the session
    (ev,) = [e for e in await api.events(sid) if e["type"] == "FEEDBACK_RECORDED"]
    assert ev["data"] == {"message_id": "msg-2", "rating": "up", "comment": "nice fix", "user": owner,
                          "run_id": "run-2", "trace_id": fb["trace_id"], "score_id": fb["score_id"], "updated": False}
    # the score reaches Langfuse on the trace of the run that produced msg-2 (not the last run: run-3)
    score = await until(lambda: server.scores.get(fb["score_id"]), what="the score")
    assert score["traceId"] == trace_id_for_run(sid, "run-2") != trace_id_for_run(sid, "run-3")
    assert score["name"] == "user-feedback" and score["value"] == 1 and score["dataType"] == "BOOLEAN"
    assert score["comment"] == "nice fix"
    assert score["metadata"] == {"session_id": sid, "message_id": "msg-2", "user_id": owner, "run_id": "run-2",
                                 "workflow": "bugfix", "model": "replay", "rating": "up", "source": "jupyter-sessions"}
    post = server.score_posts[0]
    assert post["headers"]["X-Langfuse-Public-Key"] == server.public_key
    for _ in range(100):  # the worker marks it sent once Langfuse has answered
        listed = (await api.ok("GET", "sessions", sid, "feedback"))["feedback"]
        if listed[0]["delivery"] == "sent":
            break
        await asyncio.sleep(0.05)
    assert [(f["message_id"], f["delivery"]) for f in listed] == [("msg-2", "sent")]


async def test_changing_a_rating_updates_it_and_the_same_score(api, jp_serverapp, langfuse, services):
    server, _ = langfuse
    s = await session_with_transcript(api, jp_serverapp)
    sid = s["id"]
    first = await api.ok("POST", "sessions", sid, "feedback", body={"message_id": "msg-1", "rating": "up"}, status=201)
    await until(lambda: server.scores.get(first["score_id"]), what="first score")
    second = await api.ok("POST", "sessions", sid, "feedback",
                          body={"message_id": "msg-1", "rating": "down", "comment": "wrong file"}, status=200)
    assert second["score_id"] == first["score_id"] and second["created"] == first["created"]
    await until(lambda: server.scores[first["score_id"]]["value"] == 0, what="the updated score")
    listed = (await api.ok("GET", "sessions", sid, "feedback"))["feedback"]
    assert len(listed) == 1 and listed[0]["rating"] == "down" and listed[0]["comment"] == "wrong file"
    assert len(server.scores) == 1  # one score, updated in place (same id)
    assert [x["value"] for x in server.scores_received] == [1, 0]  # each version sent once
    assert server.scores[first["score_id"]]["traceId"] == trace_id_for_run(sid, "run-1")
    evs = [e["data"] for e in await api.events(sid) if e["type"] == "FEEDBACK_RECORDED"]
    assert [(e["rating"], e["updated"]) for e in evs] == [("up", False), ("down", True)]
    await asyncio.sleep(0.6)  # longer than the retry schedule: still nothing sent twice
    assert len(server.scores_received) == 2


async def test_invalid_feedback_is_422(api, jp_serverapp, services):
    s = await session_with_transcript(api, jp_serverapp)
    for body, field in [({"message_id": "msg-nope", "rating": "up"}, "message_id"),
                        ({"message_id": "m-1", "rating": "up"}, "message_id"),  # a user message
                        ({"message_id": "msg-1", "rating": "meh"}, "rating"),
                        ({"message_id": "msg-1", "rating": "up", "stars": 5}, "stars")]:
        code, err = await api.call("POST", "sessions", s["id"], "feedback", body=body)
        assert code == 422 and err["detail"][0]["field"] == field, (body, err)
    code, _ = await api.call("POST", "sessions", "s-unknown", "feedback", body={"message_id": "x", "rating": "up"})
    assert code == 404


@pytest.mark.parametrize("export_config", [ExportConfig()])  # no Langfuse keys
async def test_without_langfuse_feedback_is_still_stored(api, jp_serverapp, services, export_config):
    s = await session_with_transcript(api, jp_serverapp)
    fb = await api.ok("POST", "sessions", s["id"], "feedback", body={"message_id": "msg-2", "rating": "down"})
    assert fb["delivery"] == "disabled" and not services.feedback.enabled
    assert (await api.ok("GET", "sessions", s["id"], "feedback"))["feedback"][0]["rating"] == "down"
    assert await services.feedback.deliver_due() == 0


# -- the outbox across an outage and a restart (two services on one database) ---------------------
@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/sessions.sqlite"


async def seeded_store(db_url: str) -> tuple[Store, EventLog, SessionRow]:
    store = Store(db_url)
    await store.migrate()
    row = SessionRow(id="s-out", owner="carol", display_name="outbox", phase="Running", agent_state="idle",
                     spec={"model": "claude-sonnet-4-5", "workflow": "triage"}, sandbox="local", isolated=0,
                     created=utcnow(), last_seq=0, state={})
    await store.insert_session(row)
    events = EventLog(store)
    for e in transcript_events():
        await events.append("s-out", e["type"], e["data"])
    return store, events, await store.get_session("s-out")


async def test_langfuse_down_then_back_across_a_restart(db_url, langfuse):
    server, settings = langfuse
    store, events, row = await seeded_store(db_url)
    client = make_client(settings)
    svc = FeedbackService(store, events, client, base_delay=0.2, max_delay=0.4)
    await server.stop()  # Langfuse is down
    fb = await svc.record(row, FeedbackIn(message_id="msg-1", rating="up"), "carol")
    assert fb.delivery == "pending"
    assert await svc.deliver_due() == 0
    item = await svc.db.outbox_item(fb.score_id)
    assert item["status"] == "pending" and item["attempts"] == 1 and "ConnectError" in item["last_error"]
    assert item["next_attempt"] > datetime.now(timezone.utc)  # backoff is scheduled in the database
    assert await svc.deliver_due() == 0  # not due yet: no attempt
    assert (await svc.db.outbox_item(fb.score_id))["attempts"] == 1
    await store.close()  # the server goes away with the score undelivered

    server.start()  # Langfuse is back (same address)
    store2 = Store(db_url)  # a new server process on the same database
    await store2.migrate()
    svc2 = FeedbackService(store2, EventLog(store2), client, base_delay=0.2, max_delay=0.4)
    svc2.start()
    try:
        score = await until(lambda: server.scores.get(score_id("s-out", "msg-1", "carol")), what="delivery")
        assert score["traceId"] == trace_id_for_run("s-out", "run-1") and score["value"] == 1
        for _ in range(40):
            item = await svc2.db.outbox_item(fb.score_id)
            if item["status"] == "sent":
                break
            await asyncio.sleep(0.05)
        assert item["status"] == "sent" and item["attempts"] == 2
        await asyncio.sleep(0.5)
        assert await svc2.deliver_due() == 0
        assert len(server.scores_received) == 1  # delivered exactly once
    finally:
        await svc2.stop()
        await store2.close()
        await asyncio.to_thread(client.shutdown)


async def test_server_errors_retry_and_bad_requests_give_up(db_url, langfuse):
    server, settings = langfuse
    store, events, row = await seeded_store(db_url)
    client = make_client(settings)
    svc = FeedbackService(store, events, client, base_delay=0.05, max_delay=0.05)
    try:
        server.fail_scores = 503
        fb = await svc.record(row, FeedbackIn(message_id="msg-2", rating="down"), "carol")
        assert await svc.deliver_due() == 0
        assert (await svc.db.outbox_item(fb.score_id))["status"] == "pending"
        server.fail_scores = 0
        await asyncio.sleep(0.1)
        assert await svc.deliver_due() == 1
        assert (await svc.db.outbox_item(fb.score_id))["status"] == "sent"

        server.fail_scores = 400
        fb2 = await svc.record(row, FeedbackIn(message_id="msg-1", rating="up"), "dave")
        assert await svc.deliver_due() == 0
        item = await svc.db.outbox_item(fb2.score_id)
        assert item["status"] == "failed" and "400" in item["last_error"]
        await asyncio.sleep(0.1)
        posts = len(server.score_posts)
        assert await svc.deliver_due() == 0 and len(server.score_posts) == posts  # not retried
        assert fb2.score_id != fb.score_id  # one score per user and message
    finally:
        await store.close()
        await asyncio.to_thread(client.shutdown)
