"""Export: transcript -> nbformat notebook -> nbconvert (Markdown, Chromium PDF, ipynb), raw JSON,
the REST endpoint on a real server, and the `jupyter-session` nbconvert exporter on the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from datetime import datetime, timezone
from importlib.metadata import entry_points

import nbformat
import pytest

from conftest import use_services

from jupyter_sessions.export import ExportConfig, content_disposition, safe_filename
from jupyter_sessions.export.exporters import BrowserNotFound, JupyterSessionExporter, find_chromium, render
from jupyter_sessions.export.notebook import (
    NotebookOptions,
    SessionFacts,
    build_notebook,
    mask_secrets,
    session_document,
)

SECRET = "sk-ant-api03-THIS-IS-SECRET"
HAS_CHROMIUM = shutil.which("chromium") is not None or os.path.exists("/usr/bin/chromium")
HAS_PDFTOTEXT = shutil.which("pdftotext") is not None
needs_pdf = pytest.mark.skipif(not (HAS_CHROMIUM and HAS_PDFTOTEXT), reason="needs chromium and pdftotext")


def transcript_events() -> list[dict]:
    """A small but complete session: two turns, thinking, tools (one failing, one long), a question."""
    evs: list[dict] = []

    def add(t: str, **d) -> None:
        evs.append({"seq": len(evs) + 1, "type": t, "ts": f"2025-03-04T10:{len(evs) // 60:02d}:{len(evs) % 60:02d}Z",
                    "data": d})

    add("PHASE_CHANGED", phase="Running", reason="sandbox ready")
    add("REPO_CLONED", url="https://example.invalid/demo.git", branch="main", commit="abc", path="/workspace/repos/demo")
    add("USER_MESSAGE", message_id="m-1", text=f"Fix the failing test please. My key is {SECRET}", status="queued")
    add("RUN_STARTED", threadId="s", runId="run-1")
    add("MESSAGE_DELIVERED", message_id="m-1")
    add("REASONING_START", messageId="rsn-1")
    add("REASONING_MESSAGE_START", messageId="rsn-1", role="reasoning")
    add("REASONING_MESSAGE_CONTENT", messageId="rsn-1", delta="The user wants the test fixed; look first.")
    add("REASONING_MESSAGE_END", messageId="rsn-1")
    add("TEXT_MESSAGE_START", messageId="msg-1", role="assistant")
    add("TEXT_MESSAGE_CONTENT", messageId="msg-1", delta="I'll run the **test suite** first.")
    add("TEXT_MESSAGE_END", messageId="msg-1")
    # a step streams all its tool calls, then the tools run in order
    add("TOOL_CALL_START", toolCallId="tc-1", toolCallName="bash", parentMessageId="msg-1")
    add("TOOL_CALL_ARGS", toolCallId="tc-1", delta='{"command": "pytest -q ```"}')
    add("TOOL_CALL_END", toolCallId="tc-1")
    add("TOOL_CALL_START", toolCallId="tc-2", toolCallName="read_file", parentMessageId="msg-1")
    add("TOOL_CALL_ARGS", toolCallId="tc-2", delta='{"path": "missing.py"}')
    add("TOOL_CALL_END", toolCallId="tc-2")
    add("TOOL_CALL_START", toolCallId="tc-q", toolCallName="ask_user_question", parentMessageId="msg-1")
    add("TOOL_CALL_END", toolCallId="tc-q")
    add("TOOL_CALL_RESULT", toolCallId="tc-1", messageId="x", content="line\n" * 5000, isError=False, summary="exit 1")
    add("TOOL_CALL_RESULT", toolCallId="tc-2", messageId="y", content="no such file: missing.py", isError=True)
    add("QUESTION_ASKED", toolCallId="tc-q", questions=[{"question": "Which test?", "header": "Test",
                                                          "options": [{"label": "unit", "description": "fast ones"}],
                                                          "multiSelect": False}])
    add("RUN_FINISHED", threadId="s", runId="run-1")
    add("QUESTION_ANSWERED", toolCallId="tc-q", answers=["unit"])
    add("RUN_STARTED", threadId="s", runId="run-2")
    add("TOOL_CALL_RESULT", toolCallId="tc-q", messageId="z", content="unit", isError=False)
    add("TEXT_MESSAGE_START", messageId="msg-2", role="assistant")
    add("TEXT_MESSAGE_CONTENT", messageId="msg-2", delta="Fixed: the unit test now passes.")
    add("TEXT_MESSAGE_END", messageId="msg-2")
    add("RUN_FINISHED", threadId="s", runId="run-2")
    add("USER_MESSAGE", message_id="m-2", text="Thanks! Anything else?", status="queued")
    add("RUN_STARTED", threadId="s", runId="run-3")
    add("RUN_ERROR", message="model overloaded (gave up after 4 retries)", runId="run-3")
    return evs


FACTS = dict(id="s-abc123", display_name="Résumé / bug: fix?", model="claude-sonnet-4-5", phase="Running",
             created=datetime(2025, 3, 4, 9, 59, tzinfo=timezone.utc), owner="alice", workflow="bugfix")


def markdown_of(events, **opts) -> str:
    nb = build_notebook(events, SessionFacts(**FACTS), NotebookOptions(secrets=[SECRET], **opts),
                        exported=datetime(2025, 3, 5, 8, 0, tzinfo=timezone.utc))
    body, mime, ext = render(nb, "markdown")
    assert mime.startswith("text/markdown") and ext == ".md"
    return body.decode()


# -- the notebook and its Markdown ----------------------------------------------------------------
def test_markdown_structure_and_content():
    md = markdown_of(transcript_events())
    lines = md.splitlines()
    assert lines[0] == "# Résumé / bug: fix?"
    for row in ("| **Session** | `s-abc123` |", "| **Model** | claude-sonnet-4-5 |", "| **Phase** | Running |",
                "| **Created** | 2025-03-04 09:59:00 UTC |", "| **Exported** | 2025-03-05 08:00:00 UTC |",
                "| **User** | alice |", "| **Workflow** | bugfix |"):
        assert row in lines, row
    # turns in order: user, assistant (text, tools, question), assistant again, user, error
    heads = [ln for ln in lines if ln.startswith("## ")]
    assert [h.split(" · ")[0] for h in heads] == ["## 👤 User", "## 🤖 Assistant", "## 👤 User"]
    assert md.index("Fix the failing test") < md.index("run the **test suite**") < md.index("Fixed: the unit test")
    assert "Fixed: the unit test now passes." in md
    # tool calls are collapsible blocks with arguments and results
    assert md.count("<details>") == md.count("</details>") == 3  # bash, read_file, ask_user_question
    assert "<summary>🔧 Tool: <code>bash</code> — exit 1</summary>" in md
    assert "<summary>❌ Tool: <code>read_file</code></summary>" in md
    assert '"command": "pytest -q ```"' in md and "````json" in md  # a fence the content can't close
    assert "**Error**" in md and "no such file: missing.py" in md
    # long output truncated with a note
    bash_block = md.split("<code>bash</code>")[1].split("</details>")[0]
    assert bash_block.count("line\n") == 200
    # the question and its answer, the error, the clone notice
    assert "**❓ The agent asked:**" in md and "**Test:** Which test?" in md and "**Answer:** unit" in md
    assert "> **⚠️ Error:** model overloaded (gave up after 4 retries)" in md
    assert "📦 Cloned https://example.invalid/demo.git (main)" in md
    # thinking only on request; secrets never
    assert "look first" not in md and "💭" not in md
    assert SECRET not in md and "My key is [secret masked]" in md


def test_truncation_note_is_exact():
    md = markdown_of(transcript_events())
    note = [ln for ln in md.splitlines() if ln.startswith("*… truncated")]
    assert note == ["*… truncated: showing 999 of 25,000 characters (200 of 5,001 lines).*"]


def test_thinking_included_on_request():
    md = markdown_of(transcript_events(), include_thinking=True)
    assert "<summary>💭 Thinking</summary>" in md and "> The user wants the test fixed; look first." in md


def test_empty_session_says_so():
    md = markdown_of([{"seq": 1, "type": "PHASE_CHANGED", "ts": "2025-01-01T00:00:00Z",
                       "data": {"phase": "Pending", "reason": "created"}}])
    assert "*No conversation content found.*" in md


def test_ipynb_is_a_valid_notebook_with_cell_metadata():
    nb = build_notebook(transcript_events(), SessionFacts(**FACTS), NotebookOptions(secrets=[SECRET]))
    body, mime, ext = render(nb, "ipynb")
    nb2 = nbformat.reads(body.decode(), as_version=4)
    nbformat.validate(nb2)
    kinds = [c.metadata["jupyter_sessions"]["kind"] for c in nb2.cells if "jupyter_sessions" in c.metadata]
    assert kinds[0] == "metadata" and "tool" in kinds and "user" in kinds
    assert nb2.metadata["jupyter_sessions"]["session"]["id"] == "s-abc123"
    assert SECRET not in body.decode()


def test_mask_secrets_walks_everything():
    doc = {"a": [f"x{SECRET}y", {"k": SECRET}], "n": 3, SECRET: "key"}
    masked = json.dumps(mask_secrets(doc, [SECRET, "", "abc"]))  # short/empty values are ignored
    assert SECRET not in masked and masked.count("[secret masked]") == 3 and "abc" not in masked.replace("abc", "")


def test_safe_names_and_content_disposition():
    assert safe_filename("Résumé / bug: fix?", ".md") == "Résumé - bug- fix.md"
    assert safe_filename("../../etc/passwd", ".pdf") == "etc-passwd.pdf"
    assert safe_filename("..", ".md", "s-1") == "s-1.md"
    assert safe_filename("a\x00b\nc", ".json") == "a-b-c.json"
    assert len(safe_filename("x" * 500, ".md")) == 123
    cd = content_disposition("Résumé - bug- fix.md")
    assert cd.startswith('attachment; filename="Resume - bug- fix.md"; ')
    assert cd.endswith("filename*=UTF-8''R%C3%A9sum%C3%A9%20-%20bug-%20fix.md")
    cd = content_disposition("日本語.pdf")
    assert 'filename="download.pdf"' in cd and "filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.pdf" in cd


# -- PDF ------------------------------------------------------------------------------------------
def pdf_text(data: bytes, tmp_path) -> str:
    assert data[:5] == b"%PDF-" and b"%%EOF" in data[-1024:]
    path = tmp_path / "out.pdf"
    path.write_bytes(data)
    res = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return res.stdout


@needs_pdf
def test_pdf_contains_messages_and_tool_names(tmp_path):
    nb = build_notebook(transcript_events(), SessionFacts(**FACTS), NotebookOptions(secrets=[SECRET], open_details=True))
    data, mime, ext = render(nb, "pdf")
    assert mime == "application/pdf" and ext == ".pdf"
    text = pdf_text(data, tmp_path)
    for needle in ("Résumé / bug: fix?", "Fix the failing test please", "test suite", "Fixed: the unit test now passes.",
                   "bash", "read_file", "ask_user_question", "no such file: missing.py", "claude-sonnet-4-5", "alice"):
        assert needle in text, needle
    assert SECRET not in text


def test_missing_browser_is_a_clear_error():
    with pytest.raises(BrowserNotFound) as exc:
        find_chromium("/nonexistent/chromium")
    assert "apt-get install chromium" in str(exc.value) and "chromium_path" in str(exc.value)
    nb = build_notebook(transcript_events(), SessionFacts(**FACTS))
    with pytest.raises(BrowserNotFound):
        render(nb, "pdf", chromium_path="/nonexistent/chromium")


@needs_pdf
async def test_pdf_from_inside_a_running_loop(tmp_path):
    """Called on the server's loop thread, playwright runs on a loop of its own."""
    nb = build_notebook(transcript_events()[:12], SessionFacts(**FACTS))
    data, _, _ = render(nb, "pdf")
    assert "test suite" in pdf_text(data, tmp_path)


# -- the nbconvert exporter ------------------------------------------------------------------------
@pytest.fixture
def session_file(tmp_path):
    doc = session_document(SessionFacts(**FACTS), transcript_events(), secrets=[SECRET])
    path = tmp_path / "my-session.json"
    path.write_text(json.dumps(doc))
    return path


def test_exporter_class_on_a_saved_session(session_file):
    body, resources = JupyterSessionExporter().from_filename(str(session_file))
    assert resources["output_extension"] == ".md"
    assert body.startswith("# Résumé / bug: fix?") and "<code>bash</code>" in body and SECRET not in body
    exp = JupyterSessionExporter(output_format="ipynb", include_thinking=True)
    body, resources = exp.from_filename(str(session_file))
    assert resources["output_extension"] == ".ipynb" and "look first" in body


def test_nbconvert_cli_with_the_exporter_class(session_file):
    res = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to",
                          "jupyter_sessions.export.exporters.JupyterSessionExporter", str(session_file)],
                         capture_output=True, text=True, cwd=session_file.parent, timeout=120)
    assert res.returncode == 0, res.stderr
    out = session_file.with_suffix(".md").read_text()
    assert out.startswith("# Résumé / bug: fix?") and "Fixed: the unit test now passes." in out


@needs_pdf
def test_nbconvert_cli_by_entry_point_name_to_pdf(session_file, tmp_path):
    names = {ep.name for ep in entry_points(group="nbconvert.exporters")}
    if "jupyter-session" not in names:
        pytest.skip("the jupyter-session entry point is not installed yet (pip install -e . after pyproject wiring)")
    res = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "jupyter-session",
                          "--JupyterSessionExporter.output_format=pdf", str(session_file)],
                         capture_output=True, text=True, cwd=session_file.parent, timeout=120)
    assert res.returncode == 0, res.stderr
    text = pdf_text(session_file.with_suffix(".pdf").read_bytes(), tmp_path)
    assert "Fixed: the unit test now passes." in text and "read_file" in text


# -- the REST endpoint on a real server ------------------------------------------------------------
@pytest.fixture
def export_config() -> ExportConfig:
    return ExportConfig()


@pytest.fixture
def services(jp_serverapp, jp_asyncio_loop, export_config):
    svcs = use_services(jp_serverapp, jp_asyncio_loop, export_config)
    yield svcs
    jp_asyncio_loop.run_until_complete(svcs.close())


async def make_session(api, jp_serverapp, name="Résumé / bug: fix?", events=None) -> str:
    s = await api.ok("POST", "sessions", body={"display_name": name, "model": "replay", "workflow": "bugfix"})
    await api.wait_phase(s["id"], "Running")
    log = jp_serverapp.web_app.settings["jupyter_sessions_manager"].events
    for e in events if events is not None else transcript_events()[2:]:
        await log.append(s["id"], e["type"], e["data"])
    return s["id"]


async def fetch(jp_fetch, sid, **params):
    return await jp_fetch("jupyter-sessions", "api", "sessions", sid, "export", params=params, raise_error=False)


async def test_export_endpoint_markdown_ipynb_json(api, jp_fetch, jp_serverapp, services):
    manager = jp_serverapp.web_app.settings["jupyter_sessions_manager"]
    manager.providers.anthropic_api_key = SECRET  # a configured key must never reach an export
    sid = await make_session(api, jp_serverapp)
    r = await fetch(jp_fetch, sid, format="markdown")
    assert r.code == 200 and r.headers["Content-Type"] == "text/markdown; charset=utf-8", r.body
    cd = r.headers["Content-Disposition"]
    assert cd == ("attachment; filename=\"Resume - bug- fix.md\"; "
                  "filename*=UTF-8''" + urllib.parse.quote("Résumé - bug- fix.md", safe=""))
    md = r.body.decode()
    assert md.startswith("# Résumé / bug: fix?") and f"`{sid}`" in md and "| **Model** | replay |" in md
    assert "| **Workflow** | bugfix |" in md and "<code>read_file</code>" in md and "💭" not in md
    assert SECRET not in md
    r = await fetch(jp_fetch, sid, format="markdown", include_thinking="true")
    assert "💭 Thinking" in r.body.decode()

    r = await fetch(jp_fetch, sid, format="ipynb")
    assert r.code == 200 and r.headers["Content-Type"] == "application/x-ipynb+json"
    assert r.headers["Content-Disposition"].endswith(".ipynb")
    nbformat.validate(nbformat.reads(r.body.decode(), as_version=4))

    r = await fetch(jp_fetch, sid, format="json")
    doc = json.loads(r.body)
    assert r.headers["Content-Type"] == "application/json" and doc["session"]["id"] == sid
    types = [e["type"] for e in doc["events"]]
    assert types[:3] == ["PHASE_CHANGED", "PHASE_CHANGED", "SANDBOX_WARNING"] and "TOOL_CALL_RESULT" in types
    assert [e["seq"] for e in doc["events"]] == list(range(1, len(types) + 1))
    assert SECRET not in r.body.decode()


async def test_export_endpoint_errors(api, jp_fetch, jp_serverapp, services):
    sid = await make_session(api, jp_serverapp, name="x", events=[])
    r = await fetch(jp_fetch, sid, format="docx")
    assert r.code == 422 and json.loads(r.body)["detail"][0]["field"] == "format"
    r = await fetch(jp_fetch, sid, format="markdown", include_thinking="maybe")
    assert r.code == 422
    r = await fetch(jp_fetch, "s-nope", format="markdown")
    assert r.code == 404
    r = await jp_fetch("jupyter-sessions", "api", "sessions", sid, "export", params={"format": "json"},
                       headers={"Authorization": ""}, raise_error=False)
    assert r.code == 403


@needs_pdf
async def test_export_endpoint_pdf(api, jp_fetch, jp_serverapp, services, tmp_path):
    sid = await make_session(api, jp_serverapp, name="PDF session")
    r = await fetch(jp_fetch, sid, format="pdf")
    assert r.code == 200 and r.headers["Content-Type"] == "application/pdf"
    assert r.headers["Content-Disposition"] == 'attachment; filename="PDF session.pdf"; filename*=UTF-8\'\'PDF%20session.pdf'
    text = pdf_text(r.body, tmp_path)
    assert "Fix the failing test please" in text and "bash" in text and "read_file" in text


@pytest.mark.parametrize("export_config", [ExportConfig(chromium_path="/nonexistent/chromium")])
async def test_export_endpoint_pdf_without_browser_is_503(api, jp_fetch, jp_serverapp, services, export_config):
    sid = await make_session(api, jp_serverapp, name="x", events=[])
    r = await fetch(jp_fetch, sid, format="pdf")
    err = json.loads(r.body)
    assert r.code == 503 and "apt-get install chromium" in err["error"]
    assert err["detail"]["setting"] == "c.SessionsApp.chromium_path"
