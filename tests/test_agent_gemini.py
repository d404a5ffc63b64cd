"""The agent loop with Gemini: the real `google-genai` client against a fake streamGenerateContent server."""

from __future__ import annotations

import base64
import re

import pytest

pytest.importorskip("google.genai")

from fakes import AgentHarness, make_sandbox  # noqa: E402
from fakes.gemini_server import (  # noqa: E402
    SSE,
    FakeGemini,
    HTTPError,
    call_reply,
    chunk,
    part_text,
    text_reply,
    thought,
)

from jupyter_sessions.agent.context import ProviderSettings  # noqa: E402
from jupyter_sessions.models import SessionSpec, ThinkingSpec  # noqa: E402
from jupyter_sessions.store import Store  # noqa: E402

KEY = "gemini-test-key-0123456789"


def camel(d: dict) -> dict:
    """The service reads proto JSON in either spelling; google-genai sends some nested keys snake_case."""
    return {re.sub(r"_(\w)", lambda m: m.group(1).upper(), k): v for k, v in d.items()}


@pytest.fixture
def fake(run):
    server = run(FakeGemini().start())
    yield server
    run(server.stop())


@pytest.fixture
def harness(tmp_path, run, fake):
    store = Store(f"sqlite:///{tmp_path}/sessions.sqlite")
    run(store.migrate())
    _, sb = run(make_sandbox("local", "s-gem", tmp_path / "ws"))

    def build(spec: SessionSpec | None = None, **kw) -> AgentHarness:
        kw.setdefault("retry_base_delay", 0.05)
        providers = ProviderSettings(gemini_api_key=KEY, gemini_base_url=fake.url, **kw)
        return AgentHarness(store, sb, spec=spec or SessionSpec(model="gemini-2.5-flash"), providers=providers,
                            sid="s-gem")

    yield build
    run(sb.remove())
    run(store.close())


async def test_text_reply_with_thoughts(harness, fake):
    fake.push(text_reply("Hello from Gemini, ready to help.", thoughts="Greeting the user."))
    h = harness()
    await h.create()
    await h.post("hi there")
    await h.settle()
    evs = await h.events_list()
    types = [e.type for e in evs]
    assert "".join(e.data["delta"] for e in evs if e.type == "TEXT_MESSAGE_CONTENT") == "Hello from Gemini, ready to help."
    assert "".join(e.data["delta"] for e in evs if e.type == "REASONING_MESSAGE_CONTENT") == "Greeting the user."
    assert types[-2] == "RUN_FINISHED" and types.count("TEXT_MESSAGE_START") == 1
    (req,) = fake.requests
    assert re.fullmatch(r"/v1(beta)?/models/gemini-2\.5-flash:streamGenerateContent\?alt=sse", req.path), req.path
    assert req.headers.get("X-Goog-Api-Key") == KEY
    body = req.body
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi there"}]}]
    gen = body["generationConfig"]
    assert gen["temperature"] == 0.7 and gen["maxOutputTokens"] == 4000
    # Gemini 2.5 thinks by default: the effective setting is sent
    assert camel(gen["thinkingConfig"]) == {"includeThoughts": True, "thinkingBudget": 2048}
    names = [d["name"] for d in body["tools"][0]["functionDeclarations"]]
    assert names == ["read_file", "write_file", "edit_file", "bash", "grep", "glob", "ask_user_question"]
    assert "workspace" in body["systemInstruction"]["parts"][0]["text"]


async def test_one_tool_call_round_trip(harness, fake):
    fake.push(call_reply("bash", {"command": "echo gemini-was-here > out.txt && cat out.txt"}, preface="Running it.",
                         signature=b"sig-bytes-1"),
              text_reply("The file says gemini-was-here."))
    h = harness(SessionSpec(model="gemini-2.5-flash", temperature=1.3, max_tokens=2000,
                            thinking=ThinkingSpec(enabled=False)))
    await h.create()
    await h.post("write a file")
    await h.settle()
    evs = await h.events_list()
    start = next(e for e in evs if e.type == "TOOL_CALL_START")
    assert start.data["toolCallName"] == "bash"
    res = next(e for e in evs if e.type == "TOOL_CALL_RESULT")
    assert not res.data["isError"] and "gemini-was-here" in res.data["content"]
    assert (h.sandbox.workspace / "out.txt").read_text() == "gemini-was-here\n"
    first, second = fake.bodies
    assert first["generationConfig"]["temperature"] == 1.3 and first["generationConfig"]["maxOutputTokens"] == 2000
    assert camel(first["generationConfig"]["thinkingConfig"]) == {"thinkingBudget": 0}  # turned off explicitly
    model_turn, tool_turn = second["contents"][1], second["contents"][2]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0] == {"text": "Running it."}
    call = model_turn["parts"][1]
    assert call["functionCall"] == {"name": "bash", "args": {"command": "echo gemini-was-here > out.txt && cat out.txt"}}
    assert base64.b64decode(call["thoughtSignature"]) == b"sig-bytes-1"  # sent back on the same part
    assert tool_turn["role"] == "user"
    (resp,) = tool_turn["parts"]
    assert resp["functionResponse"]["name"] == "bash"
    assert "gemini-was-here" in resp["functionResponse"]["response"]["output"]


async def test_rate_limit_then_success(harness, fake):
    fake.push(HTTPError(429, {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED",
                                        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                     "retryDelay": "0.2s"}]}}),
              text_reply("ok"))
    h = harness()
    await h.create()
    await h.post("hi")
    await h.settle()
    retry = await h.wait_for("MODEL_RETRYING")
    assert retry.data["delaySeconds"] == 0.2 and "429" in retry.data["message"]
    assert (await h.types())[-2] == "RUN_FINISHED" and len(fake.requests) == 2


async def test_mid_stream_error_is_retried(harness, fake):
    error = 'data: {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}\r\n\r\n'
    broken = SSE([chunk(part_text("partial ")), error])
    fake.push(broken, text_reply("complete answer"))
    h = harness()
    await h.create()
    await h.post("hi")
    await h.settle()
    assert (await h.types())[-2] == "RUN_FINISHED"
    msgs = await h.store.load_messages(h.sid)
    assert msgs[-1]["content"][0]["text"] == "complete answer"
    assert fake.bodies[0] == fake.bodies[1]


async def test_thought_signature_on_text_is_kept(harness, fake):
    fake.push(SSE([chunk(thought("thinking...", signature=b"t-sig")), chunk(part_text("Done."), finish="STOP")]),
              text_reply("again"))
    h = harness()
    await h.create()
    await h.post("one")
    await h.settle()
    await h.post("two")
    await h.settle()
    model_turn = fake.bodies[1]["contents"][1]
    assert model_turn["parts"][0]["thought"] is True
    assert base64.b64decode(model_turn["parts"][0]["thoughtSignature"]) == b"t-sig"
    assert model_turn["parts"][1] == {"text": "Done."}
