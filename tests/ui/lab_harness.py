"""A real `jupyter lab` subprocess for browser tests, and the Playwright helpers they share.

The same launch recipe as tests/ui/test_notebook_widget.py and tests/ui/test_labpanel.py (isolated
config, data, runtime, settings and workspace folders; a fixed token; `expose_app_in_browser` so a
test can drive Lab's commands), with the SessionsApp config given by the test (e.g. a fake model's
base URL instead of the replay model). The side panel is this tree's build when there is one
(linked into the private JUPYTER_DATA_DIR, like `jupyter labextension develop`), else the copy a
wheel installed under sys.prefix.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-gpu"]
REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "jupyter_sessions" / "labextension"
EXT_NAME = "jupyter-sessions"

KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && !!w.content;
}"""

# The three-tab question both browser scenarios answer (single-select, multi-select, free text).
QUESTIONS = [
    {"question": "Which language should the project use?", "header": "Language", "multiSelect": False,
     "options": [{"label": "Python", "description": "batteries included"},
                 {"label": "Go", "description": "one static binary"},
                 {"label": "Rust", "description": "fast and safe"}]},
    {"question": "Which extras do you want?", "header": "Features", "multiSelect": True,
     "options": [{"label": "Tests", "description": "a test suite"},
                 {"label": "Docs", "description": "a docs site"},
                 {"label": "CI", "description": "a CI workflow"}]},
    {"question": "What is the project called?", "header": "Name", "multiSelect": False, "options": []},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def panel_extension() -> str | None:
    """Where the side panel comes from: this tree's build, an installed copy, or None (not built)."""
    if (BUILT / "package.json").is_file() and (BUILT / "static" / "style.js").is_file():
        return str(BUILT)
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / EXT_NAME / "package.json"
    return str(installed.parent) if installed.is_file() else None


class Lab:
    """`jupyter lab` on 127.0.0.1 with the extension and the given SessionsApp settings."""

    def __init__(self, tmp: Path, sessions: dict, base_url: str = "/", token: str = "ui-test-token"):
        self.tmp, self.port, self.token = tmp, free_port(), token
        self.base = base_url if base_url.endswith("/") else base_url + "/"
        self.url = f"http://127.0.0.1:{self.port}{self.base}"
        self.root = tmp / "root"
        for d in ("config/labconfig", "root", "settings", "workspaces", "runtime", "data/labextensions"):
            (tmp / d).mkdir(parents=True, exist_ok=True)
        (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps({
            "ServerApp": {"jpserver_extensions": {"jupyter_sessions": True}},
            "SessionsApp": {"data_dir": str(tmp / "sessions"), **sessions},
        }))
        (tmp / "config" / "labconfig" / "page_config.json").write_text(json.dumps({
            "disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        self.extension = panel_extension()
        if self.extension == str(BUILT):
            (tmp / "data" / "labextensions" / EXT_NAME).symlink_to(BUILT, target_is_directory=True)

    def start(self, timeout: float = 90) -> None:
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(self.tmp / "config"),
               "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime"), "JUPYTER_DATA_DIR": str(self.tmp / "data")}
        for k in ("JUPYTER_SESSIONS_SERVER_URL", "JUPYTER_SESSIONS_TOKEN", "JUPYTER_SESSIONS_BASE_URL"):
            env.pop(k, None)
        # this tree's package for the server and its kernels, installed or not
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.log = open(self.tmp / "lab.log", "wb")  # noqa: SIM115 (open while Lab runs)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", f"--ServerApp.base_url={self.base}",
             "--LabApp.expose_app_in_browser=True",
             f"--LabApp.user_settings_dir={self.tmp / 'settings'}", f"--LabApp.workspaces_dir={self.tmp / 'workspaces'}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.logtext()
            try:
                self.api("GET", "models")
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("jupyter lab did not start:\n" + self.logtext())

    def logtext(self, tail: int = 6000) -> str:
        return (self.tmp / "lab.log").read_text(errors="replace")[-tail:]

    def raw(self, method: str, path: str, body=None, prefix: str = "jupyter-sessions/api/") -> tuple[int, str, bytes]:
        """(status, content type, body bytes) of a request with the token."""
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(f"{self.url}{prefix}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.headers.get_content_type(), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get_content_type(), e.read()

    def api(self, method: str, path: str, body=None, prefix: str = "jupyter-sessions/api/"):
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(f"{self.url}{prefix}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return json.loads(text) if text and r.headers.get_content_type() == "application/json" else text

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def write_notebook(path: Path, *sources: str) -> None:
    """A Python 3 notebook with these code cells."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nb, str(path))


def launch(p):
    """Debian's Chromium, headless, quiet and offline-minded (never `playwright install`)."""
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def open_notebook(page, lab: Lab, name: str) -> None:
    page.goto(f"{lab.url}lab/tree/{name}?reset&token={lab.token}")
    page.wait_for_function(KERNEL_IDLE, timeout=90_000)


def command(page, cmd: str, args: dict | None = None, wait: bool = True) -> None:
    """Run a JupyterLab command; with wait=False, return at once (running cells resolves at the end)."""
    if wait:
        page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)", [cmd, args or {}])
    else:
        page.evaluate("([c, a]) => { window.jupyterapp.commands.execute(c, a); }", [cmd, args or {}])


def set_theme(page, name: str, light: bool) -> None:
    command(page, "apputils:change-theme", {"theme": name})
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{str(light).lower()}'", timeout=30_000)
    page.wait_for_timeout(500)
