"""Browser test: the JupyterLab side panel in a real `jupyter lab`, driven by Playwright with Debian's Chromium.

One consolidated scenario (a lab start is the expensive part). The agent is the offline `replay`
model playing a recorded transcript (`demo.json` in the test's replay_dir); its tools really run in
the session's (local) sandbox.

  open the Agent Sessions panel -> New Session dialog: a value the browser rejects (max tokens 50),
  a value the API rejects (an unknown workflow, shown next to the field), then a valid session with
  a repo and a first message -> Running in the list and the view -> streamed Markdown, a thinking
  block, a tool block expanded to its result -> a 3-tab question answered by clicking (auto-advance,
  a revisit, Submit) -> a message sent mid-run shows queued, then delivered -> thumbs up with a
  comment in the feedback modal -> export Markdown and PDF -> Stop, Resume -> reload: the same chat,
  no duplicates -> rename, clone, delete (with confirmation). Meanwhile a second tab (its own
  browser context) follows the same session, loses its network (socket dropped, reconnects failing)
  while the agent works, and once back online shows every event exactly once. Lab runs under
  base_url /user/ada/, as a JupyterHub user's server does. Screenshots in the light and dark theme go
  to $JUPYTER_SESSIONS_UI_ARTIFACTS (or the test's tmp dir).

The extension must be built (`cd labextension && jlpm install && jlpm build`, or `pip install .`):
the test links the repo's build output into the lab's private JUPYTER_DATA_DIR (what
`jupyter labextension develop` does), or else uses the copy a wheel installed under sys.prefix.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
from lab_harness import CHROMIUM, QUESTIONS, Lab, launch, set_theme

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

LONG_TEXT = ("I'll start by looking around the workspace so that I understand what is already there. "
             "Then I will ask you a few short questions, because the language, the extras and the name "
             "are yours to choose. So far I know **nothing yet**, which is why the first step is a listing.")
REPLAY = {
    "delay": 0.02,
    "steps": [
        [{"type": "thinking", "thinking": "The user wants me to look around first; a quick listing will do."},
         {"type": "text", "text": LONG_TEXT},
         {"type": "tool_use", "name": "bash", "input": {"command": "echo hello-from-tool && ls repos"}}],
        [{"type": "text", "text": "I have a few questions before I build anything."},
         {"type": "tool_use", "name": "ask_user_question", "input": {"questions": QUESTIONS}}],
        [{"type": "text", "text": "Thanks! I'll scaffold the project now; this takes a moment."},
         {"type": "tool_use", "name": "bash", "input": {"command": "sleep 3 && echo scaffolded"}}],
        [{"type": "text", "text": "Done. Summary:\n\n- scaffolded the project\n- read your note\n\n"
                                  "```python\nprint('hello')\n```"}],
    ],
}


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    (path / "README.md").write_text("# demo repo\n")
    subprocess.run(["git", "-C", str(path), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(path), "commit", "-qm", "init"], check=True, env=env)
    return path


@pytest.fixture
def lab(tmp_path):
    """Lab under /user/ada/ (as JupyterHub serves a user's server) with the replay model."""
    (tmp_path / "replays").mkdir()
    (tmp_path / "replays" / "demo.json").write_text(json.dumps(REPLAY))
    lab = Lab(tmp_path, {"sandbox": "local", "enable_replay": True, "replay_dir": str(tmp_path / "replays")},
              base_url="/user/ada/", token="labpanel-test-token")
    # poll once a minute (the most the setting allows): the list must stay live through the session watch
    settings = tmp_path / "settings" / "jupyter-sessions" / "plugin.jupyterlab-settings"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"pollInterval": 60}))
    if not lab.extension:
        pytest.fail("the JupyterLab extension is not built: run `cd labextension && jlpm install && jlpm build` "
                    "(or `pip install .`)")
    lab.start()
    yield lab
    lab.stop()


APP_READY = "() => !!(window.jupyterapp && window.jupyterapp.jupyterSessions && document.querySelector('.jps-lab-panel'))"


def open_lab(page, lab: Lab, reset: bool = True) -> None:
    page.goto(f"{lab.url}lab{'?reset' if reset else ''}{'&' if reset else '?'}token={lab.token}")
    page.wait_for_function(APP_READY, timeout=60_000)
    dismiss_theme_error(page)


def dismiss_theme_error(page) -> None:
    """A loaded machine sometimes fails Lab's own theme stylesheet once; close that dialog and retry."""
    page.wait_for_timeout(200)
    error = page.locator(".jp-Dialog[aria-label^='Error Loading Theme']")
    if error.count():
        print("NOTE: JupyterLab could not load its theme stylesheet; retrying")
        error.locator("button").last.click()
        command(page, "apputils:change-theme", {"theme": "JupyterLab Light"})
        page.wait_for_timeout(500)


def command(page, cmd: str, args: dict | None = None) -> None:
    page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)", [cmd, args or {}])


def chat_keys(view) -> list[str]:
    return view.locator(".jps-items > [data-key]").evaluate_all("ns => ns.map(n => n.dataset.key)")


def test_side_panel_end_to_end(lab, artifacts, tmp_path):
    from playwright.sync_api import sync_playwright

    repo = make_repo(tmp_path / "demo-repo")
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            run_scenario(browser, page, lab, artifacts, repo)
        except Exception:
            page.screenshot(path=str(artifacts / "labpanel-failure.png"))
            print("extension:", lab.extension)
            print("console:\n" + "\n".join(console[-60:]))
            print("lab log:\n" + lab.logtext())
            raise
        finally:
            browser.close()
    errors = [c for c in console if c.startswith("pageerror") or "jupyter-sessions: cannot" in c]
    assert not errors, errors
    print(f"extension from {lab.extension}; screenshots in {artifacts}")


def run_scenario(browser, page, lab: Lab, artifacts: Path, repo: Path) -> None:
    from playwright.sync_api import expect

    t0 = time.time()

    def mark(stage: str) -> None:
        print(f"[{time.time() - t0:5.1f}s] {stage}")

    open_lab(page, lab)
    mark("lab open")
    # the settings editor knows the extension's schema (user defaults for new sessions)
    schema = page.evaluate("async () => (await window.jupyterapp.serviceManager.settings.fetch('jupyter-sessions:plugin')).schema")
    assert {"defaultModel", "temperature", "maxTokens", "timeout"} <= set(schema["properties"]), schema
    # and the palette lists its commands
    assert page.evaluate("() => window.jupyterapp.commands.hasCommand('jupyter-sessions:new')")
    # --- the panel: a tab in the left sidebar -------------------------------------------------
    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='jupyter-sessions-panel']").click()
    panel = page.locator("#jupyter-sessions-panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".jps-lab-list-status")).to_contain_text("No sessions yet")

    mark("New Session dialog")
    # --- New Session dialog -----------------------------------------------------------------------
    panel.get_by_role("button", name="+ New Session").click()
    dialog = page.locator(".jps-lab-new-session")
    expect(dialog).to_be_visible()
    name = dialog.locator("input[name=display_name]")
    expect(name).to_have_attribute("placeholder", "Auto-generated from the first message")
    model = dialog.locator("select[name=model]")
    options = model.locator("option").evaluate_all("os => os.map(o => o.value)")
    assert "claude-sonnet-4-5" in options and "replay" in options, options
    assert "claude-opus-4-6" not in options and "gemini-2.5-pro" not in options, options  # gated: not enabled
    expect(model).to_have_value("claude-sonnet-4-5")
    expect(dialog.locator(".jps-lab-temp-limit")).to_contain_text("Claude Sonnet 4.5 accepts 0–1")
    expect(dialog.locator("input[name=inactivity_timeout]")).to_have_attribute("placeholder", "default: 24 h")

    # a value the browser rejects, shown next to its field; nothing is sent
    max_tokens = dialog.locator("input[name=max_tokens]")
    max_tokens.fill("50")
    err = dialog.locator(".jps-lab-field[data-field=max_tokens] .jps-lab-field-error")
    expect(err).to_have_text("max tokens must be between 100 and 8000")
    dialog.locator("input[name=temperature]").fill("1.5")  # over Claude's own limit
    temp_err = dialog.locator(".jps-lab-field[data-field=temperature] .jps-lab-field-error")
    expect(temp_err).to_contain_text("accepts temperature 0 to 1")
    page.screenshot(path=str(artifacts / "labpanel-dialog-invalid-light.png"))
    set_theme(page, "JupyterLab Dark", light=False)  # dark from here to the question form
    page.screenshot(path=str(artifacts / "labpanel-dialog-invalid-dark.png"))
    dialog.get_by_role("button", name="Create").click()
    expect(dialog.locator(".jps-lab-form-error")).to_have_text("Fix the fields marked in red.")
    assert lab.api("GET", "sessions")["sessions"] == []

    # fix them; pick the recorded model (its limit is 0–2)
    max_tokens.fill("2000")
    expect(err).to_have_text("")
    model.select_option("replay")
    expect(temp_err).to_have_text("")
    expect(dialog.locator(".jps-lab-temp-limit")).to_contain_text("accepts 0–2")

    # a value only the API can judge: an unknown workflow -> its 422 lands next to the field
    dialog.locator("select[name=workflow]").select_option("__custom__")
    dialog.locator("input[name=workflow_text]").fill("no-such-workflow")
    dialog.get_by_role("button", name="Add repository").click()
    dialog.locator("input[name=repo_url]").fill(str(repo))
    dialog.locator("input[name=repo_branch]").fill("main")
    dialog.locator("textarea[name=initial_prompt]").fill("Please look around, then ask me what to build.")
    dialog.get_by_role("button", name="Create").click()
    wf_err = dialog.locator(".jps-lab-field[data-field=workflow] .jps-lab-field-error")
    expect(wf_err).to_contain_text("no built-in workflow 'no-such-workflow'")
    assert lab.api("GET", "sessions")["sessions"] == []
    dialog.locator("select[name=workflow]").select_option("")
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_have_count(0, timeout=15_000)

    mark("the session view opens")
    # --- the session view opens; the list shows it Running ------------------------------------------
    sessions = lab.api("GET", "sessions")["sessions"]
    assert len(sessions) == 1
    sid = sessions[0]["id"]
    assert sessions[0]["spec"]["model"] == "replay" and sessions[0]["spec"]["max_tokens"] == 2000
    view = page.locator(f"#jps-session-{sid}")
    expect(view).to_be_visible()
    item = panel.locator(f".jps-lab-item[data-id='{sid}']")
    expect(item.locator(".jps-phase")).to_have_text("Running", timeout=30_000)
    expect(item.locator(".jps-lab-item-model")).to_have_text("replay")
    expect(item.locator(".jps-lab-item-age")).to_have_text("just now")
    expect(item.locator(".jps-lab-item-name")).to_contain_text("Please look around")  # auto-generated
    chat = view.locator(".jps-chat")
    expect(chat.locator(".jps-header .jps-phase")).to_have_text("Running", timeout=30_000)
    expect(chat.locator(".jps-conn")).to_have_text("live")

    # streamed Markdown: the first answer grows while marked as streaming
    first = chat.locator(".jps-assistant").first
    expect(first).to_be_visible(timeout=30_000)
    lengths = []
    end = time.time() + 20
    while time.time() < end:
        info = first.evaluate("n => [n.classList.contains('jps-streaming'), n.querySelector('.jps-md').textContent.length]")
        if not info[0]:
            break
        lengths.append(info[1])
        page.wait_for_timeout(50)
    assert len(set(lengths)) >= 3, f"no visible streaming: {lengths}"
    expect(first.locator("strong")).to_have_text("nothing yet")
    expect(item.locator(".jps-agent-state")).to_be_visible()

    # thinking block and tool block: collapsed, expand on click
    thinking = chat.locator(".jps-thinking").first
    thinking.locator("summary").click()
    expect(thinking.locator(".jps-thinking-text")).to_contain_text("a quick listing will do")
    tool = chat.locator(".jps-tool", has_text="bash").first
    expect(tool.locator(".jps-tool-summary")).to_have_text("echo hello-from-tool && ls repos")
    expect(tool).to_have_class("jps-tool jps-tool-ok", timeout=30_000)
    tool.locator("summary").click()
    expect(tool.locator(".jps-result")).to_contain_text("hello-from-tool")
    expect(tool.locator(".jps-result")).to_contain_text("demo-repo")  # the cloned repo is in the workspace

    # the session sidebar: the repo was cloned
    repo_item = view.locator(".jps-lab-repo").first
    expect(repo_item).to_have_class("jps-lab-repo jps-lab-repo-cloned")
    expect(repo_item).to_contain_text("main")

    mark("the tabbed question")
    # --- the tabbed question --------------------------------------------------------------------------
    form = chat.locator(".jps-question.jps-pending")
    expect(form).to_be_visible(timeout=30_000)
    expect(item.locator(".jps-agent-state")).to_have_text("waiting input")
    tabs = form.locator(".jps-q-tab")
    expect(tabs).to_have_count(3)
    counter = form.locator(".jps-q-counter")
    current = form.locator(".jps-q-tab.jps-current")
    expect(counter).to_have_text("0 of 3 answered")
    expect(form.locator(".jps-q-submit")).to_be_disabled()
    form.locator("label.jps-q-option", has_text="Python").click()
    expect(current).to_contain_text("Features")  # auto-advance
    form.locator("label.jps-q-option", has_text="Tests").click()
    form.locator("label.jps-q-option", has_text="CI").click()
    expect(counter).to_have_text("2 of 3 answered")
    form.get_by_role("button", name="Next").click()
    expect(current).to_contain_text("Name")
    form.locator("textarea.jps-q-free").fill("Ada")
    expect(counter).to_have_text("3 of 3 answered")
    tabs.nth(0).click()  # revisit
    expect(form.locator("input[type=radio][value='Python']")).to_be_checked()
    page.screenshot(path=str(artifacts / "labpanel-question-dark.png"))
    set_theme(page, "JupyterLab Light", light=True)  # light from here to the chat screenshots
    page.screenshot(path=str(artifacts / "labpanel-question-light.png"))
    mark("a second tab")
    # --- a second tab (its own Lab workspace) on the same session stays in sync ----------------------
    context2 = browser.new_context(viewport={"width": 1200, "height": 800})
    page2 = context2.new_page()
    page2.goto(f"{lab.url}lab/workspaces/second-tab?token={lab.token}")
    page2.wait_for_function(APP_READY, timeout=60_000)
    dismiss_theme_error(page2)
    command(page2, "jupyter-sessions:open", {"id": sid})
    view2 = page2.locator(f"#jps-session-{sid}")
    expect(view2.locator(".jps-question.jps-pending")).to_be_visible(timeout=30_000)

    form.locator(".jps-q-submit").click()
    answered = chat.locator(".jps-question.jps-answered")
    expect(answered).to_contain_text("Python", timeout=15_000)
    expect(answered).to_contain_text("Tests, CI")
    expect(view2.locator(".jps-question.jps-answered")).to_contain_text("Ada", timeout=15_000)

    mark("a message mid-run")
    # --- a message mid-run: queued while the tool runs, delivered at the tool boundary ----------------
    slow = chat.locator(".jps-tool", has_text="sleep 3")
    expect(slow.locator(".jps-spinner")).to_be_visible(timeout=30_000)
    # tab 2 loses its network: its socket drops and reconnects fail until the network is back
    context2.set_offline(True)
    page2.evaluate(f"() => window.jupyterapp.jupyterSessions.tracker.find(w => w.sessionId === '{sid}').stream.socket.close()")
    expect(view2.locator(".jps-conn")).to_have_text("reconnecting", timeout=10_000)
    box = chat.locator("textarea.jps-input")
    box.fill("Also add a README, please.")
    box.press("Enter")
    note = chat.locator(".jps-user", has_text="Also add a README")
    expect(note.locator(".jps-queued")).to_be_visible(timeout=10_000)
    expect(note.locator(".jps-queued")).to_have_count(0, timeout=20_000)  # delivered at the tool boundary
    done = chat.locator(".jps-assistant", has_text="Done. Summary")
    expect(done).to_be_visible(timeout=30_000)
    expect(done.locator("pre code")).to_have_text("print('hello')")
    expect(chat.locator(".jps-agent-state")).to_have_text("idle", timeout=30_000)
    expect(view2.locator(".jps-user", has_text="Also add a README")).to_have_count(0)  # tab 2 is still cut off
    context2.set_offline(False)
    # back online: tab 2 resumes from its last seq and shows everything once
    expect(view2.locator(".jps-conn")).to_have_text("live", timeout=20_000)
    expect(view2.locator(".jps-assistant", has_text="Done. Summary")).to_be_visible(timeout=15_000)
    expect(view2.locator(".jps-user", has_text="Also add a README")).to_have_count(1)
    page2.wait_for_timeout(300)
    assert chat_keys(view2) == chat_keys(view), "the two tabs differ"
    assert page2.evaluate(f"() => window.jupyterapp.jupyterSessions.tracker.find(w => w.sessionId === '{sid}').stream.connections") >= 2
    context2.close()

    mark("thumbs up")
    # --- thumbs up with a comment (the feedback modal) -------------------------------------------------
    done.locator(".jps-thumb[data-rating=up]").click()
    modal = page.locator(".jps-lab-feedback-modal")
    expect(modal).to_be_visible()
    modal.locator("textarea").fill("clear and quick")
    modal.get_by_role("button", name="Send feedback").click()
    expect(modal).to_have_count(0, timeout=15_000)
    expect(done.locator(".jps-thumb.jps-on")).to_have_attribute("data-rating", "up", timeout=15_000)
    fb = lab.api("GET", f"sessions/{sid}/feedback")["feedback"]
    assert fb and fb[0]["rating"] == "up" and fb[0]["comment"] == "clear and quick", fb

    page.screenshot(path=str(artifacts / "labpanel-chat-light.png"))
    set_theme(page, "JupyterLab Dark", light=False)  # dark for the rest
    page.screenshot(path=str(artifacts / "labpanel-chat-dark.png"))

    mark("export Markdown")
    # --- export Markdown and PDF -------------------------------------------------------------------------
    for fmt, label, ext in (("markdown", "Markdown (.md)", ".md"), ("pdf", "PDF (.pdf)", ".pdf")):
        view.locator(".jps-lab-tool-button", has_text="Export").click()
        with page.expect_download(timeout=60_000) as dl:
            view.locator(".jps-lab-menu-item", has_text=label).click()
        path = Path(dl.value.path())
        assert dl.value.suggested_filename.endswith(ext), dl.value.suggested_filename
        assert path.stat().st_size > 0
        if fmt == "markdown":
            assert "Done. Summary" in path.read_text()
        else:
            assert path.read_bytes()[:5] == b"%PDF-"

    mark("Stop / Resume")
    # --- Stop / Resume ------------------------------------------------------------------------------------
    chat.locator(".jps-stop").click()
    expect(chat.locator(".jps-header .jps-phase")).to_have_text("Stopped", timeout=30_000)
    expect(item.locator(".jps-phase")).to_have_text("Stopped", timeout=10_000)
    expect(box).to_be_disabled()
    expect(view.locator("input[name=add_repo_url]")).to_be_disabled()
    chat.locator(".jps-resume").click()
    expect(chat.locator(".jps-header .jps-phase")).to_have_text("Running", timeout=60_000)
    expect(item.locator(".jps-phase")).to_have_text("Running", timeout=10_000)

    mark("reload")
    # --- reload: the view comes back with the same chat, nothing lost or repeated --------------------------
    before = chat_keys(view)
    assert len(before) == len(set(before))
    page.reload()
    page.wait_for_function(APP_READY, timeout=60_000)
    dismiss_theme_error(page)
    command(page, "jupyter-sessions:open-panel")
    view = page.locator(f"#jps-session-{sid}")
    chat = view.locator(".jps-chat")
    expect(chat.locator(".jps-assistant", has_text="Done. Summary")).to_be_visible(timeout=30_000)
    expect(chat.locator(".jps-conn")).to_have_text("live")
    after = chat_keys(view)
    assert after[: len(before)] == before and len(after) == len(set(after)), (before, after)
    expect(chat.locator(".jps-question.jps-answered")).to_have_count(1)
    expect(chat.locator(".jps-user", has_text="Also add a README")).to_have_count(1)

    mark("rename, clone")
    # --- rename, clone, delete ------------------------------------------------------------------------------
    view.locator(".jps-lab-tool-button", has_text="Rename").click()
    rename = page.locator(".jps-lab-modal", has=page.locator("input[name=rename]"))
    rename.locator("input[name=rename]").fill("Scaffold demo")
    rename.get_by_role("button", name="Rename").click()
    panel = page.locator("#jupyter-sessions-panel")
    expect(panel.locator(f".jps-lab-item[data-id='{sid}'] .jps-lab-item-name")).to_have_text("Scaffold demo", timeout=10_000)
    expect(chat.locator(".jps-title")).to_have_text("Scaffold demo", timeout=10_000)
    view.locator(".jps-lab-tool-button", has_text="Clone").click()
    expect(panel.locator(".jps-lab-item")).to_have_count(2, timeout=15_000)
    clone = next(s for s in lab.api("GET", "sessions")["sessions"] if s["id"] != sid)
    assert clone["display_name"].startswith("Scaffold demo") and clone["spec"]["model"] == "replay", clone
    clone_view = page.locator(f"#jps-session-{clone['id']}")
    expect(clone_view.locator(".jps-header .jps-phase")).to_have_text("Running", timeout=30_000)
    assert clone_view.locator(".jps-assistant").count() == 0  # chat history is not copied
    page.screenshot(path=str(artifacts / "labpanel-clone-dark.png"))
    clone_view.locator(".jps-lab-tool-button", has_text="Delete").click()
    confirm = page.locator(".jps-lab-modal", has_text="Delete session")
    expect(confirm).to_contain_text("cannot be undone")
    confirm.get_by_role("button", name="Delete").click()
    expect(panel.locator(".jps-lab-item")).to_have_count(1, timeout=15_000)
    expect(clone_view).to_have_count(0, timeout=10_000)
    assert [s["id"] for s in lab.api("GET", "sessions")["sessions"]] == [sid]

    mark("live list")
    # --- the list is live: a session made and deleted elsewhere (here: the REST API) shows up and goes,
    # with polling set to once a minute (the lab fixture's settings), so only the session watch can do it
    assert page.evaluate("() => window.jupyterapp.jupyterSessions.model.live")
    other = lab.api("POST", "sessions", {"display_name": "Made by the API", "model": "replay"})
    item_o = panel.locator(f".jps-lab-item[data-id='{other['id']}']")
    expect(item_o.locator(".jps-lab-item-name")).to_have_text("Made by the API", timeout=5_000)
    expect(item_o.locator(".jps-phase")).to_have_text("Running", timeout=30_000)
    lab.api("DELETE", f"sessions/{other['id']}")
    expect(item_o).to_have_count(0, timeout=5_000)

    # the filter
    panel.locator(".jps-lab-filter").fill("nothing-matches-this")
    expect(panel.locator(".jps-lab-item")).to_have_count(0)
    panel.locator(".jps-lab-filter").fill("scaffold")
    expect(panel.locator(".jps-lab-item")).to_have_count(1)
    mark("done")
