"""A real JupyterHub with two users in different groups, each with a single-user server running the
extension (local sandbox, its own data dir), reached through the hub's proxy under /user/<name>/.

Shows: each user sees only their own sessions and their workspace's models (the gated model only
where the user's hub group enables it), a user's token is refused by the other user's server, and
the admin's API key (set in the spawner environment) never appears in an API answer.

Needs `jupyterhub` (pip) and `configurable-http-proxy` (npm); skipped when either is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from server_process import free_port

pytest.importorskip("jupyterhub")
if not shutil.which("configurable-http-proxy"):
    pytest.skip("configurable-http-proxy is not installed (npm install -g configurable-http-proxy)",
                allow_module_level=True)

ADMIN_KEY = "sk-ant-hub-admin-SECRET-5555555555"
SERVICE_TOKEN = secrets.token_hex(16)
OPUS46 = "claude-opus-4-6"

HUB_CONFIG = '''
import sys
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/jupyterhub_cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "hub-test-password"
c.Authenticator.allow_all = True
c.JupyterHub.load_groups = {{"research": {{"users": ["alice"]}}, "ops": {{"users": ["bob"]}}}}
c.JupyterHub.services = [{{"name": "tester", "api_token": "{service_token}"}}]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
                             "scopes": ["admin:users", "admin:servers", "tokens", "admin:groups"]}}]
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
# the admin's presets for every single-user server: config (workspaces per hub group) and keys
c.Spawner.environment = {{"JUPYTER_CONFIG_DIR": "{tmp}/etc", "ANTHROPIC_API_KEY": "{admin_key}"}}

def per_user_data_dir(spawner):
    spawner.args = ["--SessionsApp.data_dir={tmp}/data/" + spawner.user.name, "--ServerApp.allow_root=True"]

c.Spawner.pre_spawn_hook = per_user_data_dir
'''

SERVER_CONFIG = {
    # only what the test needs: the hub's single-user extension and ours (faster start)
    "ServerApp": {"jpserver_extensions": {"jupyter_sessions": True, "jupyterlab": False, "jupyter_lsp": False,
                                          "notebook_shim": False, "jupyter_server_terminals": False,
                                          "notebook": False, "nbclassic": False}},
    "SessionsApp": {
        "sandbox": "local",
        "enable_replay": True,
        "workspaces": {
            "default": {},
            "research": {"groups": ["research"], "features": [f"model.{OPUS46}"], "default_model": OPUS46},
            "ops": {"groups": ["ops"], "inactivity_timeout": 600},
        },
    },
}


class Hub:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port, self.hub_port, self.proxy_api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        (self.tmp / "etc").mkdir(parents=True)
        (self.tmp / "etc" / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG))
        (self.tmp / "jupyterhub_config.py").write_text(HUB_CONFIG.format(
            port=self.port, hub_port=self.hub_port, proxy_api_port=self.proxy_api_port, tmp=self.tmp,
            service_token=SERVICE_TOKEN, admin_key=ADMIN_KEY))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "ANTHROPIC", "GEMINI"))}
        self.log = open(self.tmp / "hub.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.tmp / "jupyterhub_config.py")],
            cwd=self.tmp, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.logs()
            try:
                if self.call("GET", "/hub/api/", token=SERVICE_TOKEN)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the hub did not start:\n" + self.logs())

    def logs(self) -> str:
        return (self.tmp / "hub.log").read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the hub stops the single-user servers and the proxy
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:  # anything of ours still alive in the hub's process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def call(self, method: str, path: str, body=None, token: str | None = None):
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {token}"} if token else {})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=60) as resp:
                text = resp.read().decode()
                return resp.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                return e.code, json.loads(text) if text else None
            except json.JSONDecodeError:
                return e.code, text

    def admin(self, method: str, path: str, body=None):
        return self.call(method, "/hub/api" + path, body, token=SERVICE_TOKEN)

    def start_servers(self, *users: str) -> None:
        """Ask the hub to spawn each user's server (concurrently), then wait until all are ready."""
        with ThreadPoolExecutor(len(users)) as pool:  # the hub answers a spawn after up to 10 s
            for code, body in pool.map(lambda u: self.admin("POST", f"/users/{u}/server"), users):
                assert code in (201, 202), (code, body)
        deadline = time.time() + 90
        waiting = set(users)
        while waiting and time.time() < deadline:
            for user in list(waiting):
                code, model = self.admin("GET", f"/users/{user}")
                server = (model.get("servers") or {}).get("")
                if server and server.get("ready"):
                    waiting.discard(user)
            time.sleep(0.2)
        assert not waiting, f"{waiting} did not start:\n" + self.logs()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect to the login page is a refusal here
        return None


class User:
    def __init__(self, hub: Hub, name: str, token: str):
        self.hub, self.name, self.token = hub, name, token

    def api(self, method: str, path: str, body=None, server: str | None = None):
        owner = server or self.name
        return self.hub.call(method, f"/user/{owner}/jupyter-sessions/api/{path}", body, token=self.token)

    def ok(self, method: str, path: str, body=None, status: int | None = None):
        code, data = self.api(method, path, body)
        assert code < 300 and (status is None or code == status), (code, data)
        return data


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = Hub(tmp_path_factory.mktemp("hub"))
    try:
        h.start()
        users = {}
        for name in ("alice", "bob"):
            code, body = h.admin("POST", f"/users/{name}")
            assert code in (201, 409), body
            code, body = h.admin("POST", f"/users/{name}/tokens", {"note": "test", "expires_in": 3600})
            assert code == 201, body
            users[name] = User(h, name, body["token"])
        h.start_servers(*users)
        h.users = users
        yield h
    finally:
        h.stop()


def wait_phase(user: User, sid: str, *phases: str, timeout: float = 90) -> dict:
    deadline = time.time() + timeout
    while True:
        s = user.ok("GET", f"sessions/{sid}")
        if s["phase"] in phases:
            return s
        assert time.time() < deadline, s
        time.sleep(0.1)


def test_each_user_sees_their_workspace_models_and_only_their_sessions(hub):
    alice, bob = hub.users["alice"], hub.users["bob"]
    # workspaces come from hub groups (read by each server from the hub API with its own token)
    assert alice.ok("GET", "workspaces")["primary"] == "research"
    assert bob.ok("GET", "workspaces")["primary"] == "ops"
    assert {w["name"] for w in bob.ok("GET", "workspaces")["workspaces"]} == {"default", "ops"}
    a_models = alice.ok("GET", "models")
    b_models = bob.ok("GET", "models")
    assert OPUS46 in {m["id"] for m in a_models["models"]} and a_models["default_model"] == OPUS46
    assert OPUS46 not in {m["id"] for m in b_models["models"]} and b_models["default_model"] == "claude-sonnet-4-5"
    code, err = bob.api("GET", "models?workspace=research")
    assert code == 403 and "research" in err["error"]

    a = alice.ok("POST", "sessions", {"model": OPUS46, "display_name": "alice's work"}, status=201)
    assert a["owner"] == "alice" and a["spec"]["workspace"] == "research"
    code, err = bob.api("POST", "sessions", {"model": OPUS46})
    assert code == 403 and "not enabled for workspace 'ops'" in err["error"]
    b = bob.ok("POST", "sessions", {"model": "replay", "display_name": "bob's work"}, status=201)
    assert b["owner"] == "bob" and b["spec"]["workspace"] == "ops"

    assert [s["id"] for s in alice.ok("GET", "sessions")["sessions"]] == [a["id"]]
    assert [s["id"] for s in bob.ok("GET", "sessions")["sessions"]] == [b["id"]]
    # the extension works under /user/<name>/ end to end: sessions reach Running in the local sandbox
    assert wait_phase(alice, a["id"], "Running", "Failed")["phase"] == "Running"
    assert wait_phase(bob, b["id"], "Running", "Failed")["phase"] == "Running"
    assert Path(hub.tmp / "data" / "alice" / "workspaces" / a["id"]).is_dir()
    assert Path(hub.tmp / "data" / "bob" / "workspaces" / b["id"]).is_dir()
    code, _ = bob.api("GET", f"sessions/{a['id']}")
    assert code == 404  # bob's server never heard of alice's session


def test_a_users_token_is_refused_by_another_users_server(hub):
    alice, bob = hub.users["alice"], hub.users["bob"]
    for method, path, body in [("GET", "sessions", None), ("GET", "models", None), ("POST", "sessions", {})]:
        code, _ = alice.api(method, path, body, server="bob")
        assert code == 403, (method, path, code)
        code, _ = bob.api(method, path, body, server="alice")
        assert code == 403, (method, path, code)
    # and no token at all
    code, _ = hub.call("GET", "/user/alice/jupyter-sessions/api/sessions")
    assert code == 403
    assert all(s["owner"] == "bob" for s in bob.ok("GET", "sessions")["sessions"])


def test_the_admins_key_is_never_visible(hub):
    alice = hub.users["alice"]
    s = alice.ok("POST", "sessions", {"model": "replay", "initial_prompt": "hello"}, status=201)
    wait_phase(alice, s["id"], "Running")
    seen = [alice.ok("GET", p) for p in ("models", "workspaces", "workflows", "sessions", f"sessions/{s['id']}",
                                          f"sessions/{s['id']}/events", "openapi.json")]
    blob = json.dumps(seen)
    assert "USER_MESSAGE" in blob and ADMIN_KEY not in blob
