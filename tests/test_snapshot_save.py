"""Saving a notebook refreshes its chat widgets' Markdown snapshots from the event log."""

from __future__ import annotations

import json


async def test_save_rewrites_snapshot_with_turns_finished_after_the_cell(api, jp_fetch, jp_serverapp):
    s = await api.ok("POST", "sessions", body={"model": "replay"})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    log = jp_serverapp.web_app.settings["jupyter_sessions_manager"].events
    await log.append(sid, "USER_MESSAGE", {"message_id": "m-1", "text": "what is in the repo?", "status": "queued"})
    await log.append(sid, "TEXT_MESSAGE_START", {"messageId": "a-1", "role": "assistant"})
    await log.append(sid, "TEXT_MESSAGE_CONTENT", {"messageId": "a-1", "delta": "A README and a late answer."})
    await log.append(sid, "TEXT_MESSAGE_END", {"messageId": "a-1"})
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "cell_type": "code", "id": "c1", "execution_count": 1, "metadata": {}, "source": "%%agent\nwhat is in the repo?",
        "outputs": [{"output_type": "display_data", "metadata": {"jupyter_sessions": {"session_id": sid, "start_seq": 0}},
                     "data": {"text/plain": "ChatWidget", "text/markdown": "(stale: saved before the reply)"}}]}]}
    await jp_fetch("api", "contents", "chat.ipynb", method="PUT",
                   body=json.dumps({"type": "notebook", "format": "json", "content": nb}))
    saved = json.loads((await jp_fetch("api", "contents", "chat.ipynb")).body)["content"]
    md = saved["cells"][0]["outputs"][0]["data"]["text/markdown"]
    assert "stale" not in md and "A README and a late answer." in md and "what is in the repo?" in md
