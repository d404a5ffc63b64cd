"""Shared fixtures: a real Jupyter server with the extension, an API helper, a test git repo."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def sandbox_kind(request) -> str:
    """Backend for the server under test; override with indirect parametrization."""
    return getattr(request, "param", "local")


@pytest.fixture
def sessions_config(tmp_path, sandbox_kind) -> dict:
    """SessionsApp config for the test server; tests may extend it."""
    return {"sandbox": sandbox_kind, "data_dir": str(tmp_path / "sessions-data"), "enable_replay": True}


@pytest.fixture
def jp_server_config(sessions_config):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_sessions": True},
            "allow_unauthenticated_access": False,
        },
        "SessionsApp": sessions_config,
    }


class Api:
    """Calls the sessions API through jp_fetch; returns (status, json)."""

    def __init__(self, jp_fetch):
        self._fetch = jp_fetch

    async def call(self, method: str, *path: str, body=None, params=None, headers=None):
        kwargs = {"method": method, "raise_error": False, "params": params or {}}
        if body is not None:
            kwargs["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
        elif method in ("POST", "PATCH", "PUT"):
            kwargs["body"] = b"{}"
        if headers is not None:
            kwargs["headers"] = headers
        resp = await self._fetch("jupyter-sessions", "api", *path, **kwargs)
        text = resp.body.decode() if resp.body else ""
        return resp.code, (json.loads(text) if text else None)

    async def ok(self, method: str, *path: str, body=None, params=None, status=None):
        code, data = await self.call(method, *path, body=body, params=params)
        assert code < 300 and (status is None or code == status), (code, data)
        return data

    async def wait_phase(self, sid: str, *phases: str, timeout: float = 120) -> dict:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            s = await self.ok("GET", "sessions", sid)
            if s["phase"] in phases:
                return s
            assert loop.time() < end, f"session stuck in {s['phase']} (wanted {phases}): {s}"
            await asyncio.sleep(0.1)

    async def events(self, sid: str, after: int = 0) -> list[dict]:
        return (await self.ok("GET", "sessions", sid, "events", params={"after": str(after)}))["events"]


@pytest.fixture
def api(jp_fetch) -> Api:
    return Api(jp_fetch)


def _git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": "/tmp",
                        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})


@pytest.fixture
def bare_repo(tmp_path) -> Path:
    """A local bare git repo with a README on `main` and a `feature` branch."""
    work = tmp_path / "src-repo"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("# demo\n")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "init", cwd=work)
    _git("checkout", "-q", "-b", "feature", cwd=work)
    (work / "feature.txt").write_text("feature\n")
    _git("add", ".", cwd=work)
    _git("commit", "-q", "-m", "feature", cwd=work)
    _git("checkout", "-q", "main", cwd=work)
    bare = tmp_path / "demo.git"
    _git("clone", "-q", "--bare", str(work), str(bare))
    return bare


def use_services(jp_serverapp, jp_asyncio_loop, config):
    """Swap the server's export/tracing/feedback/Drive services for ones built with `config`.

    The app wires default services (from traitlets) at start-up; tests that need a fake Langfuse
    or Drive endpoint, or quick retry timings, rebuild them the same way app.py does.
    """
    from jupyter_sessions.export import setup

    settings = jp_serverapp.web_app.settings
    manager = settings["jupyter_sessions_manager"]
    old = settings.get("jupyter_sessions_services")

    async def swap():
        await manager.ensure_started()
        if old is not None:
            await old.close()
        svcs = setup(settings, manager, config)
        manager.on_agent_start[:] = [svcs.tracing.watch]
        svcs.start()
        return svcs

    return jp_asyncio_loop.run_until_complete(swap())


# -- shared fixtures for tests with fakes ------------------------------------------------------------
@pytest.fixture
def run(jp_asyncio_loop):
    """Run a coroutine to completion on the server's loop (fixtures are sync: pytest-asyncio is off)."""
    return jp_asyncio_loop.run_until_complete


@pytest.fixture
def fake(run):
    """A fake Anthropic Messages API (real HTTP + SSE on 127.0.0.1), scripted per test."""
    from fakes.anthropic_server import FakeAnthropic

    server = run(FakeAnthropic().start())
    yield server
    run(server.stop())


@pytest.fixture
def model():
    """The fake Anthropic server on its own loop thread, for a Jupyter server in another process."""
    from fakes.anthropic_server import ThreadedFake

    f = ThreadedFake()
    yield f
    f.close()


@pytest.fixture
def manager(jp_serverapp):
    return jp_serverapp.web_app.settings["jupyter_sessions_manager"]


@pytest.fixture
def langfuse(run):
    """A fake Langfuse and matching settings (a fresh key: the SDK keeps one client per public key)."""
    import uuid

    from fakes.langfuse_server import FakeLangfuse

    from jupyter_sessions.tracing import LangfuseSettings

    pk = "pk-lf-" + uuid.uuid4().hex[:12]
    server = FakeLangfuse(pk, "sk-lf-" + uuid.uuid4().hex[:12]).start()
    yield server, LangfuseSettings(public_key=pk, secret_key=server.secret_key, base_url=server.url)
    run(server.stop())


async def until(pred, timeout: float = 20.0, what: str = "condition"):
    """Poll `pred()` until it is truthy (returned), failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
def _remove_test_sandboxes(request):
    """After a test with a server: remove the containers and services that server's sessions left.

    A real server keeps sandboxes running across its own restarts on purpose (recovery); a test
    server never restarts, so its sandboxes would otherwise pile up for the rest of the run.
    """
    yield
    app = request.node.funcargs.get("jp_serverapp")
    manager = app.web_app.settings.get("jupyter_sessions_manager") if app is not None else None
    if manager is None or not any(b != "local" for b in manager._backends):
        return
    import docker

    try:
        client = docker.from_env()
        label = f"jupyter-sessions.instance={manager.instance}"
        for service in client.services.list(filters={"label": label}) if client.info().get("Swarm", {}).get(
                "LocalNodeState") == "active" else []:
            service.remove()
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
    except docker.errors.DockerException:
        pass


@pytest.fixture
def artifacts(tmp_path) -> Path:
    """Where browser tests put screenshots: $JUPYTER_SESSIONS_UI_ARTIFACTS, else the test's tmp dir."""
    d = Path(os.environ.get("JUPYTER_SESSIONS_UI_ARTIFACTS") or tmp_path / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


# -- sandboxes: the engine, the project's image, and a sandbox made from a module's `backend` -------
@pytest.fixture(scope="session")
def docker_client():
    import docker

    client = docker.from_env()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    """The project's default image, built once (cached by its recipe hash afterwards)."""
    from jupyter_sessions.sandbox.image import build_image

    return build_image(docker_client)


@pytest.fixture(scope="session")
def swarm(docker_client):
    """A single-node swarm: initialised here if the engine isn't in one, and left again only then."""
    from jupyter_sessions.sandbox.swarm import single_node_swarm

    with single_node_swarm(docker_client):
        yield docker_client


@pytest.fixture
def instance() -> str:
    """Label value scoping this test's containers, so cleanup never touches anyone else's."""
    return f"pytest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sandbox(backend, tmp_path, run):
    """A started sandbox of the requesting module's `backend` fixture, removed afterwards."""
    sb = backend.sandbox(f"t-{uuid.uuid4().hex[:10]}", tmp_path / "ws", backend.limits)
    run(sb.start())
    yield sb
    run(sb.remove())
