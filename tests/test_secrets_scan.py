"""The secrets scan: the server's keys and credentials are found nowhere outside the server process.

A real `jupyter server` subprocess (tests/server_process.Server) with the docker sandbox, configured
with a model key (the fake Anthropic server checks it arrives), git credentials for 127.0.0.1 (a
tiny HTTP git server that refuses clones without them, so the token is really used), and Langfuse
keys (the fake Langfuse records every span and score). The session clones a repo whose `.env` holds
a secret-looking value, and the agent reads it three ways (bash `cat`, read_file, grep) and dumps
its environment. Then every place a secret could end up is scanned for every secret value, raw and
in the forms it travels in (the git token as its Basic-auth header):

* the sandbox: `docker inspect` (Env and everything else), `env` and `/proc/1/environ` inside, and
  every file of the container's file system, workspace included;
* the session's events (REST), the session and list documents, the server's log (at DEBUG) and its
  data folder (the SQLite database included);
* the Markdown, json and ipynb exports;
* every span and score the fake Langfuse received.

Zero hits for the model key, the git token and the Langfuse keys. The `.env` value appears masked
(`[secret masked]`) in events and exports, never in clear; it is (of course) still in the
workspace file itself.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import docker
import pytest
from fakes.anthropic_server import reply, text, tool_use
from fakes.langfuse_server import FakeLangfuse
from server_process import Server

MASK = "[secret masked]"
# Shapes no credential regex knows: only the server's knowledge of its own values can mask them.
MODEL_KEY = "model-key-" + secrets.token_hex(12)
GIT_TOKEN = "git-token-" + secrets.token_hex(12)
LF_PUBLIC = "lf-public-" + secrets.token_hex(8)
LF_SECRET = "lf-secret-" + secrets.token_hex(12)
DOTENV_VALUE = "dotenv-" + secrets.token_hex(10)
GIT_HEADER = base64.b64encode(f"x-access-token:{GIT_TOKEN}".encode()).decode()
SERVER_SECRETS = {"model key": MODEL_KEY, "git token": GIT_TOKEN, "git auth header": GIT_HEADER,
                  "langfuse public key": LF_PUBLIC, "langfuse secret key": LF_SECRET}


def _git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": "/tmp", "GIT_AUTHOR_NAME": "t",
                        "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@example.invalid"})


class GitServer:
    """A bare repo over git's dumb HTTP protocol on 127.0.0.1 that demands the token (Basic auth)."""

    def __init__(self, root: Path):
        self.root, self.auth_seen = root, []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self):
                auth = self.headers.get("Authorization", "")
                outer.auth_seen.append(auth)
                if auth != f"Basic {GIT_HEADER}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/app.git"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def git_server(tmp_path):
    work = tmp_path / "app-src"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("# app\n")
    (work / ".env").write_text(f"# local settings\nDEBUG=true\nSTRIPE_SECRET_KEY={DOTENV_VALUE}\n")
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "init", cwd=work)
    served = tmp_path / "served"
    served.mkdir()
    _git("clone", "-q", "--bare", str(work), str(served / "app.git"))
    _git("update-server-info", cwd=served / "app.git")
    srv = GitServer(served)
    yield srv
    srv.close()


@pytest.fixture
def langfuse(model):
    async def start():
        return FakeLangfuse(LF_PUBLIC, LF_SECRET).start()

    server = model.run(start())  # on the fake model's loop thread: the server under test is another process
    yield server
    model.run(server.stop())


def fetch(srv: Server, path: str) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/jupyter-sessions/api/{path}",
                                 headers={"Authorization": f"token {srv.token}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


def wait_for(pred, timeout=60, what="condition"):
    end = time.time() + timeout
    while not (got := pred()):
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.2)
    return got


def hits(where: dict[str, str], values: dict[str, str]) -> list[str]:
    """`where-name: secret-name` for every secret value found in every text."""
    return [f"{w}: {name}" for w, text in where.items() for name, value in values.items() if value in text]


def test_no_secret_leaves_the_server(tmp_path, model, langfuse, git_server, monkeypatch):
    monkeypatch.setenv("LANGFUSE_FLUSH_INTERVAL", "0.5")  # the server's SDK sends spans promptly
    srv = Server(tmp_path, sandbox="docker", anthropic_base_url=model.fake.url, anthropic_api_key=MODEL_KEY,
                 git_credentials={"127.0.0.1": GIT_TOKEN}, langfuse_public_key=LF_PUBLIC,
                 langfuse_secret_key=LF_SECRET, langfuse_base_url=langfuse.url, watch_interval=0.5)
    config_file = tmp_path / "config" / "jupyter_server_config.json"
    config = json.loads(config_file.read_text())
    config["ServerApp"]["log_level"] = "DEBUG"  # the most the log would ever say
    config_file.write_text(json.dumps(config))
    client = docker.from_env()
    sid = None
    model.push(
        reply(text("Let me look at the settings."), tool_use("bash", {"command": "cat repos/app/.env"}, id="cat")),
        reply(tool_use("read_file", {"path": "repos/app/.env"}, id="read")),
        reply(tool_use("grep", {"pattern": "SECRET", "path": "repos/app"}, id="grep")),
        reply(tool_use("bash", {"command": "env; tr '\\0' '\\n' < /proc/self/environ; tr '\\0' '\\n' < /proc/1/environ; "
                                           "cat repos/app/.git/config; git -C repos/app remote -v; ls -la ~ /tmp"},
                       id="env")),
        reply(text("The settings file defines STRIPE_SECRET_KEY; I did not copy its value.")),
    )
    try:
        srv.start()
        code, s = srv.call("POST", "sessions", body={"repos": [{"url": git_server.url, "name": "app"}]})
        assert code == 201, s
        sid = s["id"]
        srv.wait_phase(sid, "Running", timeout=180)
        evs = srv.call("GET", "sessions", sid, "events")[1]["events"]
        assert any(e["type"] == "REPO_CLONED" for e in evs), [e["type"] for e in evs]
        assert f"Basic {GIT_HEADER}" in git_server.auth_seen  # the credentials were really used for the clone
        srv.call("POST", "sessions", sid, "messages", body={"text": "check the settings of the app"})
        wait_for(lambda: len([e for e in srv.call("GET", "sessions", sid, "events")[1]["events"]
                              if e["type"] == "TOOL_CALL_RESULT"]) == 4
                 and srv.call("GET", "sessions", sid)[1]["agent_state"] == "idle", timeout=120, what="the agent's run")
        assert MODEL_KEY in json.dumps(model.fake.requests[0].headers)  # the key did reach the model API
        events = srv.call("GET", "sessions", sid, "events")[1]["events"]
        results = {e["data"]["toolCallId"]: e["data"] for e in events if e["type"] == "TOOL_CALL_RESULT"}
        for tid in ("cat", "read", "grep"):
            assert "STRIPE_SECRET_KEY" in results[tid]["content"], results[tid]
        unmasked = [tid for tid in ("cat", "read", "grep") if DOTENV_VALUE in results[tid]["content"]]
        assert "DEBUG=true" in results["cat"]["content"]  # only the secret is masked

        # feedback on the answer: a score travels to Langfuse too
        msg = [e["data"]["messageId"] for e in events if e["type"] == "TEXT_MESSAGE_START"][-1]
        code, body = srv.call("POST", "sessions", sid, "feedback",
                              body={"message_id": msg, "rating": "up", "comment": "thanks"})
        assert code in (200, 201, 202), body
        wait_for(lambda: langfuse.spans and langfuse.score_posts, timeout=60, what="Langfuse spans and a score")

        # --- the sandbox ---------------------------------------------------------------------------
        container = client.containers.get(f"jupyter-session-{sid}")
        container.reload()
        inspect = json.dumps(container.attrs)

        def sh(cmd: str, user: str = "root") -> str:
            res = container.exec_run(["sh", "-c", cmd], user=user)
            return res.output.decode("utf-8", "replace")

        inside_env = sh("env", user="1000") + sh("tr '\\0' '\\n' < /proc/1/environ")
        # every regular file in the container (workspace included), read as root, outside /proc and /sys
        needles = " ".join(f"-e {v}" for v in [*SERVER_SECRETS.values(), DOTENV_VALUE])
        files_hit = sh(f"grep -rlsF {needles} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev; true")
        files_hit = [f for f in files_hit.splitlines() if f.strip()]
        assert files_hit == ["/workspace/repos/app/.env"], files_hit  # the .env itself, nothing else
        workspace = tmp_path / "data" / "workspaces" / sid
        assert (workspace / "repos" / "app" / ".env").is_file()
        workspace_text = {str(f.relative_to(workspace)): f.read_bytes().decode("utf-8", "replace")
                          for f in workspace.rglob("*") if f.is_file()}

        # --- the server: events, documents, log, data folder --------------------------------------------
        session_docs = json.dumps([srv.call("GET", "sessions", sid)[1], srv.call("GET", "sessions")[1],
                                   srv.call("GET", "models")[1], srv.call("GET", "sessions", sid, "feedback")[1]])
        data_files = {str(f.relative_to(tmp_path)): f.read_bytes().decode("utf-8", "replace")
                      for f in (tmp_path / "data").rglob("*") if f.is_file() and "workspaces" not in f.parts}
        assert any(name.endswith(".db") for name in data_files), list(data_files)

        # --- exports ---------------------------------------------------------------------------------
        exports = {fmt: fetch(srv, f"sessions/{sid}/export?format={fmt}").decode("utf-8", "replace")
                   for fmt in ("markdown", "json", "ipynb")}
        for fmt, body in exports.items():
            assert MASK in body and "STRIPE_SECRET_KEY" in body, fmt

        # --- Langfuse ----------------------------------------------------------------------------------
        langfuse_payloads = json.dumps(langfuse.spans) + json.dumps([p["body"] for p in langfuse.score_posts])
        assert sid in langfuse_payloads  # the traces are this session's

        srv.stop()  # flush the log
        log = (tmp_path / "server.log").read_bytes().decode("utf-8", "replace")
        assert "DEBUG" in log or "[D " in log, "the server did not log at DEBUG"

        scanned = {"docker inspect": inspect, "env inside the sandbox": inside_env,
                   "events": json.dumps(events), "session documents": session_docs, "server log": log,
                   "langfuse payloads": langfuse_payloads,
                   **{f"export {fmt}": body for fmt, body in exports.items()},
                   **{f"data {name}": body for name, body in data_files.items()},
                   **{f"workspace {name}": body for name, body in workspace_text.items()}}
        leaks = hits(scanned, SERVER_SECRETS)
        assert leaks == [], f"server secrets found outside the server process: {leaks}"
        # the repo's own secret: masked wherever the session shows it; only its file holds it in clear
        shown = {k: v for k, v in scanned.items() if not k.startswith("workspace ")}
        assert unmasked == [], f"the .env value is not masked in the result of the {unmasked} tool calls"
        assert hits(shown, {"the .env value": DOTENV_VALUE}) == []
        assert hits({k: v for k, v in workspace_text.items()}, {"v": DOTENV_VALUE}) == ["repos/app/.env: v"]
        assert MASK in json.dumps(events)
        # and the model API got the masked text, not the value
        assert DOTENV_VALUE not in json.dumps(model.fake.bodies) and MASK in json.dumps(model.fake.bodies)
        srv.start()
    finally:
        if sid and srv.proc and srv.proc.poll() is None:
            srv.call("DELETE", "sessions", sid)
        srv.stop()
    if sid:
        leftover = client.containers.list(all=True, filters={"name": f"jupyter-session-{sid}"})
        assert leftover == [], "the sandbox outlived its deleted session"
