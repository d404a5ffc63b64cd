"""Hostile content is shown safely: the notebook chat widget, the JupyterLab side panel, the exports.

One scenario in a real `jupyter lab` (a Lab start is the expensive part; helpers in lab_harness.py),
driven by Playwright with Debian's Chromium. The agent is Claude through the real SDK against the
fake Anthropic server (tests/fakes/anthropic_server.py, on its own thread: Lab is another process);
its tools really run in the session's (local) sandbox. What reaches the screen:

* the user's message, the agent's Markdown and its tool calls' arguments carry raw HTML/JS
  (`<script>`, `<img onerror>`, `<svg onload>`, `<iframe src=javascript:>`, `<iframe|object|embed>`
  naming a local file of the server), inline and reference-style `javascript:` links, ANSI escapes;
* tool output (bash in the sandbox) prints the same, plus a 10 MB single line and invalid UTF-8.

Asserted in the notebook widget (a `%%agent` cell) and in the side panel's view of the same
session: no script ran (`window.__pwned` stays undefined in every frame, and payloads that would
write a marker into the page did not), no <script>/<img>/<iframe>/inline handler/`javascript:` URL
from the content is in the DOM, clicking the javascript: link does nothing, the 10 MB line is cut
with a visible note, invalid bytes show as U+FFFD, no raw control character is on screen, and the
page stays responsive. The saved notebook's widget snapshot (text/markdown) renders nothing active.
Then the exports: the Markdown (and each ipynb Markdown cell) rendered by a permissive CommonMark
renderer (raw HTML on, every link target kept) makes no active element or javascript: link, and
the PDF export (Chromium, via nbconvert) prints without running the content's script and without
pulling in the local file (pdftotext). Problems are collected and reported together at the end.
"""

from __future__ import annotations

import html.parser
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api")
from fakes.anthropic_server import ThreadedFake, reply, text, tool_use
from lab_harness import CHROMIUM, Lab, command, launch, open_notebook, write_notebook

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")

# A script that ran would leave `window.__pwned` set, or write XSS-EXECUTED / XSS-ONERROR / XSS-SVG
# into the page (the literal payload spells them "XSS-"+"...", so shown-as-text never matches).
HTML_PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    '<svg onload="window.__pwned=1"><circle r=1></circle></svg>',
    "<script>document.body.append('XSS-'+'EXECUTED')</script>",
    "<img src=x onerror=\"document.body.append('XSS-'+'ONERROR')\">",
    "<svg onload=\"document.body.append('XSS-'+'SVG')\"></svg>",
    '<iframe src="javascript:parent.__pwned=1"></iframe>',
]
MARKERS = ["XSS-EXECUTED", "XSS-ONERROR", "XSS-SVG"]
PROBLEMS: list[str] = []  # found along the way, reported together at the end
JS_LINK = "[click](javascript:window.__pwned=1)"
REF_LINK = "[ref click][pw]\n\n[pw]: javascript:window.__pwned=1"
# A local file the server can read: an export must never pull it in (an <iframe> in the PDF's page).
PROBE_TEXT = "LOCAL-FILE-" + "CONTENT-7f3a"
PROBE = Path("/tmp/jupyter-sessions-hostile-probe.txt")
FILE_PAYLOADS = [f'<iframe src="file://{PROBE}"></iframe>', f'<object data="file://{PROBE}"></object>',
                 f'<embed src="file://{PROBE}">']
ANSI = "\x1b[31mred\x1b[0m \x1b[2J\x1b[10;10Hmoved \x1b]0;title\x07done"

USER_MESSAGE = "<img src=x onerror=\"window.__pwned=1\"> please check " + JS_LINK
AGENT_TEXT = ("Here is what I found.\n\n" + "\n\n".join(HTML_PAYLOADS + FILE_PAYLOADS) + f"\n\nSee {JS_LINK} and "
              "[a safe link](https://example.org/ok).\n\n" + REF_LINK + "\n\nColours: " + ANSI + "\n\n**bold** stays Markdown.")
# printf in bash: the sandbox's output holds the same payloads, ANSI escapes and a set-title OSC.
PRINT_HTML = ("printf '%s\\n' " + " ".join("'" + p.replace("'", "'\\''") + "'" for p in HTML_PAYLOADS + [JS_LINK])
              + "; printf '\\033[31mred\\033[0m \\033[2J\\033[10;10Hmoved \\033]0;title\\007done\\n'")
BIG_LINE = "head -c 10000000 /dev/zero | tr '\\0' 'a'"
BAD_UTF8 = "printf 'bad:\\xff\\xfe\\xfd:end\\n'"
FINAL_TEXT = "All done. " + HTML_PAYLOADS[0] + " " + JS_LINK


def script_model(model: ThreadedFake) -> None:
    model.push(
        reply(text(AGENT_TEXT), tool_use("bash", {"command": PRINT_HTML}, id="t_html")),
        reply(tool_use("bash", {"command": BIG_LINE}, id="t_big")),
        reply(tool_use("bash", {"command": BAD_UTF8}, id="t_utf8")),
        reply(text(FINAL_TEXT)),
    )


# Everything the content could have made active inside `root`, and the page-wide evidence of a run.
DOM_AUDIT = """(root) => {
  const all = [...root.querySelectorAll('*')];
  const urlAttrs = ['href', 'src', 'action', 'formaction', 'xlink:href', 'data', 'srcdoc'];
  const framesPwned = [...document.querySelectorAll('iframe')].some(f => {
    try { return f.contentWindow && f.contentWindow.__pwned !== undefined; } catch (e) { return false; }
  });
  return {
    pwned: window.__pwned === undefined ? null : window.__pwned,
    framesPwned,
    active: root.querySelectorAll('script, img, iframe, frame, object, embed, link, style, meta, base, form').length,
    svgFromContent: [...root.querySelectorAll('svg')].filter(s => s.closest('.jps-md, .jps-pre, .jps-result, .jps-tool-summary')).length,
    handlers: all.filter(n => [...n.attributes].some(a => a.name.toLowerCase().startsWith('on'))).map(n => n.outerHTML.slice(0, 160)),
    badUrls: all.flatMap(n => urlAttrs.map(a => n.getAttribute(a)).filter(v => v && !/^(https?:|mailto:|#)/i.test(v.trim()))),
    links: [...root.querySelectorAll('a[href]')].map(a => a.getAttribute('href')),
    markersInPage: document.body.innerText,
  };
}"""


def audit(locator) -> dict:
    got = locator.evaluate(DOM_AUDIT)
    page_text = got.pop("markersInPage")
    got["markers"] = [m for m in MARKERS if m in page_text]
    return got


def assert_safe(got: dict, where: str) -> None:
    assert got["pwned"] is None and not got["framesPwned"], (where, got)
    assert got["markers"] == [], (where, "a payload ran", got["markers"])
    assert got["active"] == 0 and got["svgFromContent"] == 0, (where, got)
    assert got["handlers"] == [], (where, got["handlers"])
    assert got["badUrls"] == [], (where, got["badUrls"])
    assert all(h.startswith(("https://", "http://", "mailto:")) for h in got["links"]), (where, got["links"])


def assert_responsive(page, where: str) -> None:
    """The main thread answers quickly: a round trip and two animation frames well under a second."""
    t = time.monotonic()
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    took = time.monotonic() - t
    assert took < 2.0, f"{where}: the page took {took:.1f} s to render two frames"


def check_chat(page, chat, where: str) -> None:
    """The hostile session as shown by one chat view (the widget's or the panel's)."""
    from playwright.sync_api import expect

    # the content arrived: the agent's message, every tool block finished
    expect(chat.locator(".jps-assistant", has_text="All done.")).to_be_visible(timeout=60_000)
    tools = chat.locator(".jps-tool")
    expect(tools).to_have_count(3, timeout=30_000)
    expect(chat.locator(".jps-tool .jps-spinner")).to_have_count(0, timeout=30_000)
    first = chat.locator(".jps-assistant", has_text="Here is what I found").first
    # the payloads are shown as text, literally
    expect(first).to_contain_text("<script>window.__pwned=1</script>")
    expect(first).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(first.locator("strong")).to_have_text("bold")  # Markdown still renders
    expect(first.locator("a[href='https://example.org/ok']")).to_have_count(1)
    expect(chat.locator(".jps-user").first).to_contain_text("<img src=x onerror=")

    # tool blocks: expand each; the results show the payloads as text
    for i in range(3):
        block = tools.nth(i)
        if not block.evaluate("d => d.open"):
            block.locator("summary").first.click()
    html_result = tools.nth(0).locator(".jps-result")
    expect(html_result).to_contain_text("<script>window.__pwned=1</script>")
    expect(html_result).to_contain_text("[click](javascript:window.__pwned=1)")
    expect(html_result).to_contain_text("red")
    # the 10 MB line: cut, with a note the user can see
    big = tools.nth(1).locator(".jps-result")
    expect(big).to_be_visible()
    expect(big).to_contain_text("truncated")
    shown = big.evaluate("n => n.textContent.length")
    assert shown < 200_000, f"{where}: {shown} characters of the 10 MB line reached the DOM"
    # invalid UTF-8: replacement characters between the valid parts
    expect(tools.nth(2).locator(".jps-result")).to_contain_text("bad:\ufffd")
    expect(tools.nth(2).locator(".jps-result")).to_contain_text(":end")

    # ANSI escapes: no raw control characters reach the screen (stripped or rendered, never shown)
    visible = chat.evaluate("n => n.innerText")
    controls = sorted({f"U+{ord(c):04X}" for c in visible if ord(c) < 32 and c not in "\n\t\r"})
    if controls:
        PROBLEMS.append(f"{where}: raw control characters on screen (ANSI escapes not stripped): {controls}")

    # clicking the javascript: link does nothing (it is not a link)
    url = page.url
    pages = len(page.context.pages)
    link = first.locator(".jps-md").get_by_text("click", exact=True)
    expect(link).to_have_count(1)
    assert link.evaluate("n => n.closest('a') === null"), f"{where}: the javascript: label is a link"
    link.click()
    page.wait_for_timeout(300)
    assert page.url == url and len(page.context.pages) == pages
    assert_safe(audit(chat), where)
    assert_responsive(page, where)


def markdown_is_inert(md: str) -> list[str]:
    """What a CommonMark renderer with raw HTML on (GitHub minus its sanitizer, nbconvert, many
    viewers) makes active out of `md`: script-ish elements, on* attributes, javascript: URLs."""
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": True})
    renderer.validateLink = lambda url: True  # like a permissive viewer: every link target kept
    rendered = renderer.render(md)
    found: list[str] = []

    class Audit(html.parser.HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag in ("script", "img", "iframe", "frame", "object", "embed", "svg", "style", "link", "meta", "base"):
                found.append(f"<{tag}>")
            for name, value in attrs:
                if name.startswith("on"):
                    found.append(f"<{tag} {name}=...>")
                if name in ("href", "src", "action", "formaction", "data") and value and \
                        re.match(r"\s*(javascript|vbscript|data):", value, re.IGNORECASE):
                    found.append(f"<{tag} {name}={value}>")

    Audit().feed(rendered)
    return found


def wait_for_snapshot(path: Path, timeout: float = 30) -> list[str]:
    """The text/markdown snapshots of the chat widget's outputs in the saved notebook (with the agent's text)."""
    end = time.monotonic() + timeout
    while True:
        nb = json.loads(path.read_text())
        snaps = ["".join(o["data"]["text/markdown"]) if isinstance(o["data"]["text/markdown"], list)
                 else o["data"]["text/markdown"]
                 for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                 if "text/markdown" in o.get("data", {})]
        if any("All done." in s for s in snaps):
            return snaps
        assert time.monotonic() < end, f"no widget snapshot with the chat in the saved notebook: {snaps!r:.500}"
        time.sleep(0.5)


@pytest.fixture
def lab(tmp_path, model):
    lab = Lab(tmp_path, {"sandbox": "local", "anthropic_base_url": model.fake.url,
                         "anthropic_api_key": "sk-hostile-content-test", "export_max_output_chars": 2000})
    write_notebook(lab.root / "hostile.ipynb",
                   "%load_ext jupyter_sessions\n%session new --model claude-sonnet-4-5 --no-widget",
                   "%%agent\n" + USER_MESSAGE)
    lab.start()
    yield lab
    lab.stop()


def test_hostile_content_is_inert_in_widget_panel_and_exports(lab, model, tmp_path):
    from playwright.sync_api import sync_playwright

    script_model(model)
    PROBLEMS.clear()
    PROBE.write_text(PROBE_TEXT + "\n")
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        try:
            sid = run_ui(page, lab, t0)
        except Exception:
            page.screenshot(path=str(tmp_path / "hostile-failure.png"), full_page=True)
            print("console:\n" + "\n".join(console[-40:]))
            print("lab log:\n" + lab.logtext())
            raise
        finally:
            browser.close()
    check_exports(lab, sid, tmp_path)
    print(f"[{time.monotonic() - t0:5.1f}s] exports checked")
    for problem in PROBLEMS:
        print("PROBLEM:", problem)
    assert not PROBLEMS, "hostile content is not shown safely:\n- " + "\n- ".join(PROBLEMS)


def run_ui(page, lab: Lab, t0: float) -> str:
    from playwright.sync_api import expect

    def mark(stage: str) -> None:
        print(f"[{time.monotonic() - t0:5.1f}s] {stage}")

    # (a) the notebook chat widget
    open_notebook(page, lab, "hostile.ipynb")
    mark("notebook open")
    command(page, "notebook:run-all-cells", wait=False)
    chat = page.locator(".jps-chat").first
    expect(chat).to_be_visible(timeout=60_000)
    check_chat(page, chat, "notebook widget")
    mark("widget checked")
    sid = lab.api("GET", "sessions")["sessions"][0]["id"]
    assert lab.api("GET", f"sessions/{sid}")["agent_state"] in ("idle", "working")

    # the page stays usable: the message box takes text at once
    box = chat.locator("textarea.jps-input")
    box.fill("still responsive")
    expect(box).to_have_value("still responsive")
    box.fill("")

    # the saved notebook: the widget's Markdown snapshot (what GitHub or nbviewer show) is inert too
    command(page, "docmanager:save")
    snapshots = wait_for_snapshot(lab.root / "hostile.ipynb")
    for snap in snapshots:
        if markdown_is_inert(snap):
            PROBLEMS.append(f"the saved widget snapshot renders active content: {markdown_is_inert(snap)}")
    mark("saved snapshot checked")

    # (b) the side panel: the list shows the (hostile) generated name as text; the view, the same chat
    assert lab.extension, "the side panel is not built: `cd labextension && jlpm install && jlpm build`"
    command(page, "jupyter-sessions:open-panel")
    panel = page.locator("#jupyter-sessions-panel")
    item = panel.locator(f".jps-lab-item[data-id='{sid}']")
    expect(item).to_be_visible(timeout=30_000)
    expect(item.locator(".jps-lab-item-name")).to_contain_text("<img src=x")
    assert_safe(audit(panel), "panel list")
    command(page, "jupyter-sessions:open", {"id": sid})
    view = page.locator(f"#jps-session-{sid}")
    expect(view).to_be_visible(timeout=30_000)
    check_chat(page, view.locator(".jps-chat"), "side panel")
    assert_safe(audit(view), "side panel view")
    page_wide = audit(page.locator("body"))  # Lab's own <style>/<script> live here: only evidence of a run
    assert page_wide["pwned"] is None and not page_wide["framesPwned"] and page_wide["markers"] == [], page_wide
    assert not any(h.lower().startswith("javascript:") for h in page_wide["links"]), page_wide["links"]
    mark("panel checked")
    return sid


def check_exports(lab: Lab, sid: str, tmp_path: Path) -> None:
    # (c) Markdown: nothing active once rendered, no javascript: link; the big output cut with a note
    code, _, body = lab.raw("GET", f"sessions/{sid}/export?format=markdown")
    assert code == 200, body[:500]
    md = body.decode("utf-8")
    (tmp_path / "export.md").write_text(md)
    if markdown_is_inert(md):
        PROBLEMS.append(f"Markdown export renders active content: {markdown_is_inert(md)}")
    assert "truncated" in md and len(md) < 200_000, len(md)
    assert "\ufffd" in md
    if "\x1b" in md:
        PROBLEMS.append("Markdown export keeps raw ANSI escapes (they act on a terminal that shows the file)")

    # PDF: renders; the content's script never ran in the page Chromium printed
    code, _, pdf = lab.raw("GET", f"sessions/{sid}/export?format=pdf")
    assert code == 200 and pdf[:5] == b"%PDF-", (code, pdf[:300])
    (tmp_path / "export.pdf").write_bytes(pdf)
    out = subprocess.run(["pdftotext", "-layout", str(tmp_path / "export.pdf"), "-"], capture_output=True,
                         check=True, timeout=60).stdout.decode("utf-8", "replace")
    flat = " ".join(out.split())
    assert "All done." in flat and "truncated" in flat, flat[:2000]
    shown_as_text = re.sub(r"'XSS-'\s*\+\s*'\w+'", "", flat)  # the literal payloads may be printed...
    ran = [m for m in MARKERS if m in shown_as_text]  # ...what they would write must not be
    if ran:
        PROBLEMS.append(f"the content's script ran while the PDF was rendered: {ran}")
    assert "__pwned" in flat, "the payloads should be printed as text"
    if PROBE_TEXT in flat:
        PROBLEMS.append(f"the PDF export embedded a local file of the server ({PROBE}) named by the content")

    # json / ipynb carry the same (masked) events: parseable, and no javascript: link in a Markdown cell
    code, _, nb = lab.raw("GET", f"sessions/{sid}/export?format=ipynb")
    assert code == 200
    cells = json.loads(nb)["cells"]
    for cell in cells:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown" and markdown_is_inert(src):
            PROBLEMS.append(f"ipynb export: a Markdown cell renders active content: {markdown_is_inert(src)}")
            break
