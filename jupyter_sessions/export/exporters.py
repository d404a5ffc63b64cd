"""nbconvert exporters: Chromium PDF and the `jupyter-session` exporter for saved session files.

* `ChromiumPDFExporter` is nbconvert's WebPDFExporter with a browser it can find: Debian's
  `/usr/bin/chromium` (or `executable_path`), launched by playwright with flags that keep it quiet
  and offline. Every request the page makes that is not a local file is refused, so an export never
  reaches the network (a CDN script in the HTML template just doesn't load).
* `JupyterSessionExporter` (registered as `jupyter-session` under the `nbconvert.exporters` entry
  point) turns a saved session file (the `json` export) into Markdown (default), PDF, HTML or ipynb:
  ``jupyter nbconvert --to jupyter-session session.json`` or with
  ``--JupyterSessionExporter.output_format=pdf``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.exporters import Exporter, HTMLExporter, MarkdownExporter, NotebookExporter, WebPDFExporter
from traitlets import Bool, Enum, Int, List, Unicode, default, observe

from .notebook import NotebookOptions, build_notebook, read_session_document

BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: Flags from the project's verified recipe, plus no sandbox (root in containers) and no phoning home.
CHROMIUM_FLAGS = [
    "--disable-gpu",
    "--no-first-run",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--metrics-recording-only",
    "--mute-audio",
]
INSTALL_HINT = (
    "PDF export needs a Chromium browser: install it (Debian/Ubuntu: `apt-get install chromium`) or point "
    "c.SessionsApp.chromium_path (ChromiumPDFExporter.executable_path) at a Chromium/Chrome executable"
)


class BrowserNotFound(RuntimeError):
    """No usable Chromium; the message says what to install or configure."""


def find_chromium(configured: str | None = None) -> str:
    """The browser executable to use, or BrowserNotFound saying what is missing."""
    if configured:
        path = shutil.which(configured) or configured
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise BrowserNotFound(f"the configured browser {configured!r} is not an executable file. {INSTALL_HINT}")
    for name in BROWSER_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    raise BrowserNotFound(f"no Chromium found on PATH ({', '.join(BROWSER_CANDIDATES)}). {INSTALL_HINT}")


PDF_CSS = """
<style>
  details > summary { font-weight: 600; }
  .jp-RenderedMarkdown pre, .jp-RenderedHTMLCommon pre { white-space: pre-wrap; word-break: break-word; }
  @media print { details { break-inside: auto; } }
</style>
"""


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ChromiumPDFExporter(WebPDFExporter):
    """WebPDF through a system Chromium (no playwright-downloaded browser needed)."""

    export_from_notebook = None  # not offered in the notebook's menu; `webpdf` is

    executable_path = Unicode(
        "", help="Chromium/Chrome executable; empty = the first of chromium, chromium-browser, google-chrome on PATH."
    ).tag(config=True)
    launch_timeout = Int(30_000, help="Milliseconds to wait for the browser to start.").tag(config=True)
    load_timeout = Int(300_000, help="Milliseconds to wait for the transcript page to load.").tag(config=True)
    chromium_flags = List(Unicode(), help="Extra command-line flags for the browser.").tag(config=True)

    @default("disable_sandbox")
    def _disable_sandbox_default(self) -> bool:
        return True

    @default("page_render_timeout")
    def _render_timeout_default(self) -> int:
        return 0

    def browser_path(self) -> str:
        return find_chromium(self.executable_path or None)

    async def _render(self, html_path: str, executable: str) -> bytes:
        from playwright.async_api import async_playwright

        args = list(dict.fromkeys([*CHROMIUM_FLAGS, *self.browser_args, *self.chromium_flags]))
        async with async_playwright() as pw:
            try:
                browser = await pw.chromium.launch(
                    executable_path=executable, args=args, timeout=self.launch_timeout,
                    handle_sigint=False, handle_sigterm=False, handle_sighup=False,
                )
            except Exception as e:
                raise BrowserNotFound(f"could not start {executable}: {str(e).splitlines()[0]}. {INSTALL_HINT}") from e
            try:
                # The transcript is content from a model and tools: no script may run while it is
                # printed, and it may load nothing but its own page (no network, no other local file).
                page = await browser.new_page(java_script_enabled=False)
                page_uri = Path(html_path).as_uri()

                async def offline(route):
                    url = route.request.url
                    if url == page_uri or url.startswith(("data:", "about:", "blob:")):
                        await route.continue_()
                    else:
                        await route.abort()

                await page.route("**/*", offline)
                await page.emulate_media(media="print")
                # `load` = the whole document is parsed (a big transcript takes a while; networkidle
                # alone can fire first and print half of it), then let scripts' requests settle
                await page.goto(page_uri, wait_until="load", timeout=self.load_timeout)
                await page.wait_for_load_state("networkidle", timeout=self.load_timeout)
                if self.page_render_timeout:
                    await page.wait_for_timeout(self.page_render_timeout)
                params: dict[str, Any] = {"print_background": True}
                if not self.paginate:
                    dims = await page.evaluate(
                        "() => { const r = document.body.getBoundingClientRect();"
                        " return {width: Math.ceil(r.width) + 1, height: Math.ceil(r.height) + 1}; }")
                    params.update(width=min(dims["width"], 200 * 72), height=min(dims["height"], 200 * 72))
                return await page.pdf(**params)
            finally:
                await browser.close()

    def run_playwright(self, html: str) -> bytes:  # type: ignore[override]
        executable = self.browser_path()
        html = html.replace("</head>", PDF_CSS + "</head>", 1)
        fd, path = tempfile.mkstemp(suffix=".html", prefix="jupyter-sessions-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(html)
            if _in_running_loop():  # playwright's async API wants a loop of its own
                with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jupyter-sessions-pdf") as pool:
                    return pool.submit(asyncio.run, self._render(path, executable)).result()
            return asyncio.run(self._render(path, executable))
        finally:
            os.unlink(path)




def render(nb: nbformat.NotebookNode, fmt: str, *, config=None, parent=None, chromium_path: str | None = None
           ) -> tuple[bytes, str, str]:
    """Render a transcript notebook: (body, mime type, file extension)."""
    if fmt == "markdown":
        body, _ = MarkdownExporter(config=config, parent=parent).from_notebook_node(nb)
        return body.encode("utf-8"), "text/markdown; charset=utf-8", ".md"
    if fmt == "html":
        body, _ = HTMLExporter(config=config, parent=parent).from_notebook_node(nb)
        return body.encode("utf-8"), "text/html; charset=utf-8", ".html"
    if fmt == "ipynb":
        body, _ = NotebookExporter(config=config, parent=parent).from_notebook_node(nb)
        return body.encode("utf-8"), "application/x-ipynb+json", ".ipynb"
    if fmt == "pdf":
        exp = ChromiumPDFExporter(config=config, parent=parent)
        if chromium_path:
            exp.executable_path = chromium_path
        exp.browser_path()  # fail fast, before rendering HTML, when there is no browser
        body, _ = exp.from_notebook_node(nb)
        return bytes(body), "application/pdf", ".pdf"
    raise ValueError(f"unknown format {fmt!r}")


class JupyterSessionExporter(Exporter):
    """A saved session file (the `json` export) or an exported session notebook, rendered by nbconvert."""

    export_from_notebook = None

    output_format = Enum(["markdown", "pdf", "html", "ipynb"], default_value="markdown",
                         help="What to produce from the session.").tag(config=True)
    include_thinking = Bool(False, help="Include the agent's thinking blocks.").tag(config=True)
    max_result_chars = Int(2000, help="Tool results longer than this are truncated with a note.").tag(config=True)
    max_args_chars = Int(2000, help="Tool arguments longer than this are truncated with a note.").tag(config=True)
    chromium_path = Unicode("", help="Browser for output_format=pdf (default: chromium on PATH).").tag(config=True)

    _EXT = {"markdown": ".md", "pdf": ".pdf", "html": ".html", "ipynb": ".ipynb"}

    @default("file_extension")
    def _file_extension_default(self) -> str:
        return self._EXT[self.output_format]

    _MIME = {"markdown": "text/markdown", "pdf": "application/pdf", "html": "text/html",
             "ipynb": "application/x-ipynb+json"}
    # A plain class attribute (jupyter_server's /api/nbconvert lists it by class); instances follow
    # their output_format.
    output_mimetype = "text/markdown"

    @observe("output_format")
    def _format_changed(self, change) -> None:
        self.file_extension = self._EXT[change["new"]]
        self.output_mimetype = self._MIME[change["new"]]

    def options(self, *, open_details: bool = False) -> NotebookOptions:
        return NotebookOptions(include_thinking=self.include_thinking, max_args_chars=self.max_args_chars,
                               max_result_chars=self.max_result_chars, open_details=open_details)

    def notebook_from_data(self, data: dict) -> nbformat.NotebookNode:
        if "events" in data:
            facts, events = read_session_document(data)
            return build_notebook(events, facts, self.options(open_details=self.output_format == "pdf"))
        if "cells" in data and "nbformat" in data:  # an exported session notebook (or any notebook)
            return nbformat.reads(json.dumps(data), as_version=4)
        raise ValueError("not a jupyter-sessions session file: expected the `json` export (with an 'events' list)")

    def from_file(self, file_stream, resources=None, **kw):
        return self.from_notebook_node(self.notebook_from_data(json.load(file_stream)), resources=resources, **kw)

    def from_filename(self, filename: str, resources=None, **kw):
        resources = resources or {}
        # mirror Exporter.from_filename's metadata (name, path, modified date) for the writer
        from datetime import datetime

        path = Path(filename)
        md = resources.setdefault("metadata", {})
        md.setdefault("name", path.stem)
        md.setdefault("path", str(path.parent))
        md.setdefault("modified_date", datetime.fromtimestamp(path.stat().st_mtime).strftime("%B %d, %Y"))
        with open(filename, encoding="utf-8") as f:
            return self.from_file(f, resources=resources, **kw)

    def from_notebook_node(self, nb, resources=None, **kw):
        _, resources = super().from_notebook_node(nb, resources, **kw)
        body, _, ext = render(nb, self.output_format, config=self.config, parent=self,
                              chromium_path=self.chromium_path or None)
        resources["output_extension"] = ext
        if self.output_format == "pdf":
            return body, resources
        return body.decode("utf-8"), resources
