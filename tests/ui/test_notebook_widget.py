"""Browser test: the chat widget in a real `jupyter lab`, driven by Playwright with Debian's Chromium.

One consolidated scenario (a lab start is the expensive part): a `%%agent` cell streams text from a
recorded agent (the `replay` provider playing `ui.json`), shows a thinking block and a tool block
that expands to its result, then a three-tab question form that survives a page reload and is
answered by clicking (auto-advance, a revisit); the agent continues. Then thumbs-up feedback, the
Markdown renderer's safety, a kernel restart with `%session use ID`, and screenshots of the widget
in the light and dark themes (written to $JUPYTER_SESSIONS_UI_ARTIFACTS or the test's tmp dir).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
from lab_harness import (
    CHROMIUM,
    KERNEL_IDLE,
    QUESTIONS,
    REPO,
    Lab,
    command,
    launch,
    open_notebook,
    set_theme,
    write_notebook,
)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

CHAT_JS = REPO / "jupyter_sessions" / "static" / "chat.js"
LONG_TEXT = ("I'll start by looking around the workspace so that I understand what is already there. "
             "Then I will ask you a few short questions, because the choice of language, the extras and "
             "the project name are yours to make, and guessing them would only waste your time. "
             "Here is what I know so far: **nothing yet**, which is why the first step is a listing.")
REPLAY = {
    "delay": 0.04,
    "steps": [
        [{"type": "thinking", "thinking": "The user wants me to look around first; a quick listing will do."},
         {"type": "text", "text": LONG_TEXT},
         {"type": "tool_use", "name": "bash", "input": {"command": "sleep 2; echo hello-from-tool"}}],
        [{"type": "text", "text": "I have a few questions before I build anything."},
         {"type": "tool_use", "name": "ask_user_question", "input": {"questions": QUESTIONS}}],
        [{"type": "text", "text": "Thanks! Continuing with your answers:\n\n- scaffold the project\n- add the extras\n\n"
                                  "```python\nprint('hello')\n```"}],
    ],
}
NOTEBOOK = "ui.ipynb"
CELLS = ('%load_ext jupyter_sessions\n%session new --model replay:ui --name "UI demo" --no-widget',
         "%%agent\nPlease look around, then ask me what to build.",
         # the kernel stays busy until the agent asks its question: the chat streams meanwhile
         "import time\nfrom jupyter_sessions.client import SessionsClient\n"
         "c, t0 = SessionsClient(), time.time()\nsid = c.sessions()[0]['id']\n"
         "while c.session(sid)['agent_state'] != 'waiting_input' and time.time() - t0 < 90:\n"
         "    time.sleep(0.2)")


# The input prompts of the notebook's cells, e.g. "[1]:|[2]:|[*]:" ("*": running or queued). The
# kernel's status is no signal here: with widget traffic flowing it read "idle" while a cell ran.
CELL_STATES = "() => [...document.querySelectorAll('.jp-Notebook .jp-InputArea-prompt')].map(n => n.textContent).join('|')"


@pytest.fixture
def lab(tmp_path):
    """Lab with the replay model playing REPLAY as `replay:ui`, and the scenario's notebook."""
    (tmp_path / "replays").mkdir()
    (tmp_path / "replays" / "ui.json").write_text(json.dumps(REPLAY))
    lab = Lab(tmp_path, {"sandbox": "local", "enable_replay": True, "replay_dir": str(tmp_path / "replays")})
    write_notebook(lab.root / NOTEBOOK, *CELLS)
    lab.start()
    yield lab
    lab.stop()


def test_agent_cell_streams_tools_thinking_and_a_tabbed_question(lab, artifacts):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1300})
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        try:
            run_scenario(page, lab, artifacts)
        except Exception:
            page.screenshot(path=str(artifacts / "failure.png"), full_page=True)
            print("console:\n" + "\n".join(console[-40:]))
            print("lab log:\n" + lab.logtext())
            raise
        finally:
            browser.close()
    print(f"screenshots in {artifacts}")


def run_scenario(page, lab: Lab, artifacts: Path) -> None:
    from playwright.sync_api import expect

    open_notebook(page, lab, NOTEBOOK)
    command(page, "notebook:run-all-cells", wait=False)
    chat = page.locator(".jps-chat").first
    expect(chat).to_be_visible(timeout=60_000)
    sid = lab.api("GET", "sessions")["sessions"][0]["id"]

    # streamed text: the first agent message grows while it is marked as streaming
    first_msg = chat.locator(".jps-assistant").first
    expect(first_msg).to_be_visible(timeout=30_000)
    lengths, statuses = [], []
    box = chat.locator("textarea.jps-input")
    end = time.time() + 20
    while time.time() < end:
        info = first_msg.evaluate("n => [n.classList.contains('jps-streaming'), n.querySelector('.jps-md').textContent.length]")
        if not info[0]:
            break
        # another cell runs meanwhile: the widget streams from the kernel's follower thread
        statuses.append(page.evaluate(CELL_STATES))
        lengths.append(info[1])
        page.wait_for_timeout(60)
    assert len(set(lengths)) >= 3, f"no visible streaming: {lengths}"
    busy_lengths = {n for n, st in zip(lengths, statuses) if "*" in st}
    assert len(busy_lengths) >= 2, f"the text did not grow while a cell ran: {list(zip(lengths, statuses))}"
    # the message box works while the agent works (its tool runs for 2 s): the message waits, queued
    box.fill("Keep it short, please.")
    box.press("Enter")
    queued = chat.locator(".jps-user", has_text="Keep it short, please.")
    expect(queued.locator(".jps-queued")).to_have_text("queued")
    expect(box).to_have_value("")
    expect(queued.locator(".jps-queued")).to_have_count(0, timeout=30_000)  # delivered after the tool call
    expect(first_msg).to_contain_text("which is why the first step is a listing")
    expect(first_msg.locator("strong")).to_have_text("nothing yet")  # Markdown rendered

    # thinking block: collapsed, opens on click
    thinking = chat.locator(".jps-thinking").first
    expect(thinking).to_be_visible()
    expect(thinking.locator(".jps-thinking-text")).to_be_hidden()
    thinking.locator("summary").click()
    expect(thinking.locator(".jps-thinking-text")).to_contain_text("a quick listing will do")

    # tool block: name + one-line summary; expands to its arguments and result
    tool = chat.locator(".jps-tool", has_text="bash").first
    expect(tool.locator(".jps-tool-summary")).to_have_text("sleep 2; echo hello-from-tool", timeout=30_000)
    expect(tool).to_have_class("jps-tool jps-tool-ok", timeout=30_000)
    expect(tool.locator(".jps-result")).to_be_hidden()
    tool.locator("summary").click()
    expect(tool.locator(".jps-result")).to_contain_text("hello-from-tool")
    expect(tool.locator(".jps-pre").first).to_contain_text('"command": "sleep 2; echo hello-from-tool"')
    chat.locator(".jps-log").evaluate("(n) => { n.style.maxHeight = 'none'; }")  # whole log in the picture
    chat.screenshot(path=str(artifacts / "blocks-open-light.png"))
    chat.locator(".jps-log").evaluate("(n) => { n.style.maxHeight = ''; }")

    # the question form: three tabs, a counter, Submit disabled
    form = chat.locator(".jps-question.jps-pending")
    expect(form).to_be_visible(timeout=30_000)
    expect(chat.locator(".jps-agent-state")).to_have_text("waiting input")

    # it survives a page reload (the notebook is saved, the kernel keeps the widget)
    command(page, "docmanager:save")
    page.wait_for_timeout(500)
    page.reload()
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)
    chat = page.locator(".jps-chat").first
    form = chat.locator(".jps-question.jps-pending")
    expect(form).to_be_visible(timeout=60_000)

    tabs = form.locator(".jps-q-tab")
    expect(tabs).to_have_count(3)
    assert [t.strip("✓ ") for t in tabs.all_inner_texts()] == ["Language", "Features", "Name"]
    counter = form.locator(".jps-q-counter")
    submit = form.locator(".jps-q-submit")
    expect(counter).to_have_text("0 of 3 answered")
    expect(submit).to_be_disabled()
    current = form.locator(".jps-q-tab.jps-current")
    expect(current).to_contain_text("Language")
    expect(form.locator(".jps-q-text")).to_have_text("Which language should the project use?")
    expect(form.locator(".jps-q-desc", has_text="one static binary")).to_be_visible()

    # single-select: choosing auto-advances to the next tab
    form.locator("label.jps-q-option", has_text="Go").click()
    expect(current).to_contain_text("Features")
    expect(counter).to_have_text("1 of 3 answered")
    # multi-select: checkboxes, no auto-advance
    form.locator("label.jps-q-option", has_text="Tests").click()
    form.locator("label.jps-q-option", has_text="CI").click()
    expect(counter).to_have_text("2 of 3 answered")
    expect(current).to_contain_text("Features")
    form.get_by_role("button", name="Next").click()
    expect(current).to_contain_text("Name")
    form.locator("textarea.jps-q-free").fill("Ada")
    expect(counter).to_have_text("3 of 3 answered")
    expect(submit).to_be_enabled()

    # revisit the first tab: the choice is still there; change it to Other
    tabs.nth(0).click()
    expect(current).to_contain_text("Language")
    expect(form.locator("input[type=radio][value='Go']")).to_be_checked()
    form.locator("label.jps-q-other").click()
    form.locator(".jps-q-other-text").fill("Zig")
    expect(counter).to_have_text("3 of 3 answered")
    expect(form.locator(".jps-q-tab.jps-done")).to_have_count(3)

    chat.scroll_into_view_if_needed()
    chat.screenshot(path=str(artifacts / "question-light.png"))
    set_theme(page, "JupyterLab Dark", light=False)
    chat.screenshot(path=str(artifacts / "question-dark.png"))

    submit.click()
    expect(chat.locator(".jps-question.jps-pending")).to_have_count(0, timeout=30_000)
    answered = chat.locator(".jps-question.jps-answered")
    expect(answered).to_contain_text("Zig")
    expect(answered).to_contain_text("Tests, CI")
    expect(answered).to_contain_text("Ada")
    events = lab.api("GET", f"sessions/{sid}/events?after=0")["events"]
    got = [e["data"]["answers"] for e in events if e["type"] == "QUESTION_ANSWERED"]
    assert got and [a["text"] if isinstance(a, dict) else a for a in got[0]] in (
        ["Zig", "Tests, CI", "Ada"], ["Zig", ["Tests", "CI"], "Ada"]), got

    # the agent continues
    last = chat.locator(".jps-assistant", has_text="Thanks! Continuing with your answers").first
    expect(last).to_be_visible(timeout=30_000)
    expect(last.locator("li")).to_have_count(2)
    expect(last.locator("pre code")).to_have_text("print('hello')")
    expect(chat.locator(".jps-agent-state")).to_have_text("idle", timeout=30_000)

    # thumbs up opens a comment box; sending records the rating (or says the route is missing)
    last.locator(".jps-thumb[data-rating=up]").click()
    last.locator(".jps-feedback-comment").fill("clear and quick")
    last.get_by_role("button", name="Send feedback").click()
    expect(chat.locator(".jps-thumb.jps-on").or_(chat.locator(".jps-error-bar", has_text="not available"))).to_be_visible(timeout=15_000)

    # in a page served by the same server, actions go straight to the REST API (no kernel needed)
    assert page.evaluate("() => document.querySelector('.jps-widget').__jps.actions.transport()") == "browser"
    box.fill("One more thing")
    box.press("Enter")
    expect(chat.locator(".jps-user", has_text="One more thing")).to_be_visible(timeout=15_000)
    expect(box).to_have_value("")

    chat.screenshot(path=str(artifacts / "chat-dark.png"))
    set_theme(page, "JupyterLab Light", light=True)
    chat.screenshot(path=str(artifacts / "chat-light.png"))

    # Stop / Resume
    chat.locator(".jps-stop").click()
    expect(chat.locator(".jps-header .jps-phase")).to_have_text("Stopped", timeout=30_000)
    expect(chat.locator(".jps-resume")).to_be_enabled()
    expect(box).to_be_disabled()
    chat.locator(".jps-resume").click()
    expect(chat.locator(".jps-header .jps-phase")).to_have_text("Running", timeout=60_000)

    check_markdown_is_safe(page)

    # a kernel restart ends the old widget; `%session use ID` shows the whole history again
    kernel = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id")
    lab.api("POST", f"kernels/{kernel}/restart", prefix="api/")
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    page.evaluate("""(src) => {
      const nb = window.jupyterapp.shell.currentWidget.content;
      nb.activeCellIndex = nb.widgets.length - 1;
    }""", None)
    command(page, "notebook:insert-cell-below")
    page.evaluate("(src) => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.setSource(src)",
                  f"%load_ext jupyter_sessions\n%session use {sid}")
    command(page, "notebook:run-cell")
    again = page.locator(".jps-chat").last
    expect(again.locator(".jps-question.jps-answered")).to_contain_text("Zig", timeout=60_000)
    expect(again.locator(".jps-user", has_text="Please look around")).to_be_visible()
    expect(again.locator(".jps-earlier")).to_be_hidden()

    # the Python API; with browser actions off, the widget acts through the kernel
    command(page, "notebook:insert-cell-below")
    page.evaluate("(src) => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel.setSource(src)",
                  f"from jupyter_sessions.widgets import ChatWidget\nChatWidget({sid!r}, browser_actions=False)")
    command(page, "notebook:run-cell")
    via_kernel = page.locator(".jps-chat").last
    expect(via_kernel.locator(".jps-question.jps-answered")).to_be_visible(timeout=60_000)
    via_kernel.locator("textarea.jps-input").fill("Sent through the kernel")
    via_kernel.locator(".jps-send").click()
    expect(via_kernel.locator(".jps-user", has_text="Sent through the kernel")).to_be_visible(timeout=30_000)
    assert page.evaluate("() => [...document.querySelectorAll('.jps-widget')].pop().__jps.actions.transport()") == "kernel"
    expect(again.locator(".jps-user", has_text="Sent through the kernel")).to_be_visible()  # every view updates


def check_markdown_is_safe(page) -> None:
    """renderMarkdown never creates script, handlers, images or javascript: links."""
    result = page.evaluate("""async (src) => {
      const url = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
      const m = await import(url);
      const host = document.createElement('div');
      host.appendChild(m.renderMarkdown([
        '<script>window.__pwned = 1</script>',
        '<img src=x onerror="window.__pwned = 2">',
        '[click](javascript:window.__pwned=3) [ok](https://example.org/a?b=1&c=2)',
        '![img](https://example.org/x.png)',
        '`<b>code</b>` **bold <i>x</i>**',
        '| a | b |\\n|---|---|\\n| <u>1</u> | 2 |',
      ].join('\\n\\n')));
      document.body.appendChild(host);
      await new Promise(r => setTimeout(r, 100));
      const out = {
        pwned: window.__pwned || 0,
        scripts: host.querySelectorAll('script, img, iframe, u, i, b').length,
        handlers: [...host.querySelectorAll('*')].filter(n => [...n.attributes].some(a => a.name.startsWith('on'))).length,
        hrefs: [...host.querySelectorAll('a')].map(a => a.getAttribute('href')),
        text: host.textContent,
        table: host.querySelectorAll('table td').length,
      };
      host.remove();
      return out;
    }""", CHAT_JS.read_text())
    assert result["pwned"] == 0 and result["scripts"] == 0 and result["handlers"] == 0, result
    assert result["hrefs"] == ["https://example.org/a?b=1&c=2"], result
    assert "<script>window.__pwned = 1</script>" in result["text"] and "<b>code</b>" in result["text"]
    assert result["table"] == 2
