"""Workflows: the built-ins, folders and git repos in Ambient's layout, bad manifests, and sessions
that run with one (chosen at creation or attached while Running), checked on the wire: the fake
Anthropic server sees the workflow's instructions in the system prompt and its startup prompt as
the first user message.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from fakes.anthropic_server import reply, text

from jupyter_sessions.workflows import (
    Loader,
    WorkflowError,
    builtin_names,
    list_workflows,
    load_folder,
    parse_source,
)
from jupyter_sessions.workflows.loader import WorkflowSource

KEY = "sk-ant-workflow-test-0123456789"
GIT_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=GIT_ENV)


def write_workflow(root: Path, manifest: dict | str | None, claude_md: str | None = "# Rules\nBe careful.\n",
                   commands: dict[str, str] | None = None) -> Path:
    (root / ".ambient").mkdir(parents=True, exist_ok=True)
    if manifest is not None:
        body = manifest if isinstance(manifest, str) else json.dumps(manifest)
        (root / ".ambient" / "ambient.json").write_text(body)
    if claude_md is not None:
        (root / "CLAUDE.md").write_text(claude_md)
    for name, content in (commands or {}).items():
        (root / ".claude" / "commands").mkdir(parents=True, exist_ok=True)
        (root / ".claude" / "commands" / f"{name}.md").write_text(content)
    return root


DEMO = {"name": "Demo Flow", "description": "A demo workflow from git",
        "systemPrompt": "DEMO-SYSTEM: always answer in haiku.", "startupPrompt": "DEMO-STARTUP: say hello.",
        "rubric": {"activationPrompt": "Score it.", "schema": {"type": "object"}},
        "artifactsDir": "artifacts/demo", "results": {"Report": "artifacts/demo/*.md"}}


@pytest.fixture
def workflow_repo(tmp_path) -> Path:
    """A bare git repo laid out like ambient-code/workflows: workflows/<name>/.ambient/ambient.json on branch `wf`."""
    work = tmp_path / "wf-src"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("workflows\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "init", cwd=work)
    git("checkout", "-q", "-b", "wf", cwd=work)
    write_workflow(work / "workflows" / "demo", DEMO,
                   commands={"start": "---\ndisplayName: Start\ndescription: Begin the demo\norder: 1\n---\nDo it: $ARGUMENTS\n",
                             "finish": "---\ndescription: Wrap up\norder: 2\n---\nDone.\n"})
    (work / "workflows" / "demo" / "templates").mkdir()
    (work / "workflows" / "demo" / "templates" / "t.md").write_text("template\n")
    os.symlink("/etc/passwd", work / "workflows" / "demo" / "escape")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "demo workflow", cwd=work)
    bare = tmp_path / "workflows.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare


# -- the string syntax ---------------------------------------------------------------------------
@pytest.mark.parametrize("given, kind, value, branch, path, wid", [
    ("bugfix", "builtin", "bugfix", None, None, "bugfix"),
    ("Bug Fix", "builtin", "bugfix", None, None, "bugfix"),
    ("spec", "builtin", "spec-writing", None, None, "spec-writing"),
    ("triage", "builtin", "triage", None, None, "triage"),
    ("/srv/flows/my-flow", "folder", "/srv/flows/my-flow", None, None, "my-flow"),
    ("https://github.com/ambient-code/workflows.git#main:workflows/bugfix", "git",
     "https://github.com/ambient-code/workflows.git", "main", "workflows/bugfix", "bugfix"),
    ("https://example.com/org/flows.git", "git", "https://example.com/org/flows.git", None, None, "flows"),
    ("https://example.com/org/flows.git#:workflows/x", "git", "https://example.com/org/flows.git", None,
     "workflows/x", "x"),
    ("git@example.com:org/flows.git#dev", "git", "git@example.com:org/flows.git", "dev", None, "flows"),
    ("/tmp/local.git#wf:workflows/demo", "git", "/tmp/local.git", "wf", "workflows/demo", "demo"),
    ("file:///tmp/local.git", "git", "file:///tmp/local.git", None, None, "local"),
])
def test_workflow_string_syntax(given, kind, value, branch, path, wid):
    src = parse_source(given)
    assert (src.kind, src.value, src.branch, src.path, src.id) == (kind, value, branch, path, wid)


@pytest.mark.parametrize("given, says", [
    ("", "empty workflow"),
    ("nosuch", "no built-in workflow 'nosuch'; choose one of: bugfix, spec-writing, triage"),
    ("relative/dir", "not a built-in workflow, an absolute folder path or a git URL"),
    ("-c core.sshCommand=x", "cannot start with '-'"),
    ("https://example.com/r.git#bad..branch", "not a valid branch name"),
    ("https://example.com/r.git#main:../../etc", "without '..'"),
    ("ftp://example.com/r.git", "unsupported URL scheme 'ftp'"),
])
def test_bad_workflow_strings_say_what_is_accepted(given, says):
    with pytest.raises(WorkflowError) as exc:
        parse_source(given)
    assert says in str(exc.value)


# -- loading -------------------------------------------------------------------------------------
def test_builtin_workflows_are_complete():
    assert builtin_names() == ["bugfix", "spec-writing", "triage"]
    for wf in list_workflows():
        assert wf.name and wf.description and len(wf.system_prompt) > 200, wf.id
        assert wf.startup_prompt and wf.artifacts_dir == f"artifacts/{'specs' if wf.id == 'spec-writing' else wf.id}"
        assert wf.claude_md and wf.rubric and wf.rubric["schema"]["required"] and wf.rubric_md
        assert len(wf.commands) >= 4 and all(c.description for c in wf.commands)
        section = wf.prompt_section()
        assert section.startswith("## Workflow Instructions")
        assert wf.system_prompt.strip() in section and "### /workspace/workflows/" in section
        for c in wf.commands:
            assert f"- /{c.name}: {c.description}" in section
            body = (wf.root / ".claude" / "commands" / f"{c.name}.md").read_text()
            assert "/workspace" in body or "$ARGUMENTS" in body or len(body) > 300, c.name
        # every command the startup prompt advertises exists
        advertised = set(re.findall(r"(?<![\w/])/([a-z]+)\b(?!/)", wf.startup_prompt)) - {"workspace"}
        assert advertised and advertised <= {c.name for c in wf.commands}, (wf.id, advertised)
    bugfix = load_folder(Path(__file__).parent.parent / "jupyter_sessions/workflows/builtin/bugfix",
                         WorkflowSource("builtin", "bugfix", text="bugfix"))
    assert [c.name for c in bugfix.commands] == ["reproduce", "diagnose", "fix", "verify", "document"]


def test_folder_workflow_in_ambient_layout(tmp_path):
    root = write_workflow(tmp_path / "my-flow", DEMO, commands={
        "b": "---\ndescription: second\norder: 2\n---\nB\n", "a": "---\ndescription: first\norder: 1\n---\nA\n",
        "plain": "# Plain command without frontmatter\nbody\n"})
    wf = Loader().check(str(root))
    assert wf.kind == "folder"
    loaded = load_folder(root, wf)
    assert loaded.name == "Demo Flow" and loaded.id == "my-flow"
    assert [c.name for c in loaded.commands] == ["a", "b", "plain"]
    assert loaded.commands[2].description == "Plain command without frontmatter"
    assert loaded.extra == {"results": {"Report": "artifacts/demo/*.md"}}  # unknown fields kept, not an error
    # every manifest field is optional (Ambient): CLAUDE.md alone is a workflow
    bare = write_workflow(tmp_path / "bare", None)
    wf2 = load_folder(bare, WorkflowSource("folder", str(bare), text=str(bare)))
    assert wf2.name == "bare" and wf2.system_prompt == "" and "Be careful." in wf2.prompt_section()


@pytest.mark.parametrize("manifest, says", [
    ('{"name": "x",\n  "systemPrompt": "y" "oops"}', "is not valid JSON (line 2, column"),
    ('["not", "an", "object"]', "must be a JSON object, not list"),
    ({"systemPrompt": 5}, "systemPrompt: Input should be a valid string"),
    ({"artifactsDir": "../outside"}, "artifactsDir: Value error, must be a folder inside the workspace"),
    ({"rubric": "be good"}, "rubric: Input should be a valid dictionary"),
    ({"enabled": "perhaps"}, "enabled: Input should be a valid boolean"),
])
def test_malformed_manifest_is_a_clear_error(tmp_path, manifest, says):
    root = write_workflow(tmp_path / "broken", manifest)
    with pytest.raises(WorkflowError) as exc:
        Loader().check(str(root))
    assert says in str(exc.value) and ".ambient/ambient.json" in str(exc.value)


def test_a_folder_without_a_workflow_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkflowError, match="is not a workflow: it has no .ambient/ambient.json"):
        Loader().check(str(tmp_path / "empty"))
    with pytest.raises(WorkflowError, match="no such folder"):
        Loader().check(str(tmp_path / "missing"))
    with pytest.raises(WorkflowError, match="disabled here"):
        Loader(allow_local=False).check(str(tmp_path / "empty"))


def test_git_workflow_from_a_bare_repo_is_placed_in_the_workspace(tmp_path, workflow_repo, jp_asyncio_loop):
    ws = tmp_path / "ws"
    wf = jp_asyncio_loop.run_until_complete(Loader().materialize(f"file://{workflow_repo}#wf:workflows/demo", ws))
    placed = ws / "workflows" / "demo"
    assert wf.root == placed and wf.name == "Demo Flow" and wf.source.kind == "git"
    assert (placed / ".ambient" / "ambient.json").is_file() and (placed / "templates" / "t.md").is_file()
    assert not (placed / "escape").exists() and not (placed / ".git").exists()  # no symlinks, no git metadata
    assert (ws / "artifacts" / "demo").is_dir()
    assert [p.name for p in ws.iterdir() if p.name.startswith(".workflow-")] == []  # scratch clone removed
    assert [c.name for c in wf.commands] == ["start", "finish"]
    # the same repo by path, and a missing sub-folder / branch
    wf2 = jp_asyncio_loop.run_until_complete(Loader().materialize(f"{workflow_repo}#wf:workflows/demo", tmp_path / "ws2"))
    assert wf2.system_prompt == DEMO["systemPrompt"]
    with pytest.raises(WorkflowError, match="has no folder 'workflows/nope'"):
        jp_asyncio_loop.run_until_complete(Loader().materialize(f"{workflow_repo}#wf:workflows/nope", tmp_path / "ws3"))
    with pytest.raises(WorkflowError, match="could not clone workflow"):
        jp_asyncio_loop.run_until_complete(Loader().materialize(f"{workflow_repo}#nobranch", tmp_path / "ws4"))
    # main has no workflow at the root: a clear error, not an empty workflow
    with pytest.raises(WorkflowError, match="is not a workflow"):
        jp_asyncio_loop.run_until_complete(Loader().materialize(str(workflow_repo), tmp_path / "ws5"))


# -- sessions with workflows (a real server, the real agent, a fake Anthropic API) ---------------
@pytest.fixture
def with_fake_anthropic(sessions_config, fake, tmp_path):
    admin_dir = tmp_path / "admin-workflows"
    write_workflow(admin_dir / "house-style", {"name": "House Style", "description": "Our conventions"})
    write_workflow(admin_dir / "hidden", {"name": "Hidden", "enabled": False})
    sessions_config.update(anthropic_api_key=KEY, anthropic_base_url=fake.url, watch_interval=0.2,
                           workflow_dirs=[str(admin_dir)])
    return sessions_config


async def wait_for(predicate, timeout=30.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.05)


def system_text(body: dict) -> str:
    s = body["system"]
    return s if isinstance(s, str) else "".join(b.get("text", "") for b in s)


async def test_list_workflows(with_fake_anthropic, api):
    flows = (await api.ok("GET", "workflows"))["workflows"]
    by_id = {f["id"]: f for f in flows}
    assert {"bugfix", "triage", "spec-writing", "house-style"} <= set(by_id) and "hidden" not in by_id
    assert by_id["bugfix"]["name"] == "Bug Fix" and by_id["bugfix"]["source"] == "bugfix"
    assert by_id["bugfix"]["startup_prompt"] is True and "reproduce" in by_id["bugfix"]["commands"]
    s = await api.ok("POST", "sessions", body={"workflow": "house-style", "model": "replay"}, status=201)
    assert s["spec"]["workflow"] == "house-style"


async def test_builtin_workflow_at_creation(with_fake_anthropic, fake, api, sessions_config):
    fake.push(reply(text("Bug Fix workflow ready. Reproducing the 500 now.")))
    s = await api.ok("POST", "sessions", body={"workflow": "Bug Fix", "initial_prompt": "login returns 500"},
                     status=201)
    sid = s["id"]
    assert s["spec"]["workflow"] == "bugfix"  # aliases are normalized before they are stored
    await api.wait_phase(sid, "Running")
    await wait_for(lambda: _n_requests(fake, 1))
    ws = Path(sessions_config["data_dir"]) / "workspaces" / sid
    assert (ws / "workflows" / "bugfix" / "CLAUDE.md").is_file()
    assert (ws / "workflows" / "bugfix" / ".claude" / "commands" / "reproduce.md").is_file()
    assert (ws / "artifacts" / "bugfix").is_dir()
    events = await api.events(sid)
    attached = [e["data"] for e in events if e["type"] == "WORKFLOW_ATTACHED"]
    assert attached == [{"name": "Bug Fix", "id": "bugfix", "source": "bugfix", "kind": "builtin",
                         "description": attached[0]["description"], "path": "/workspace/workflows/bugfix",
                         "artifacts_dir": "/workspace/artifacts/bugfix",
                         "commands": ["reproduce", "diagnose", "fix", "verify", "document"], "startup_prompt": True}]
    users = [e["data"] for e in events if e["type"] == "USER_MESSAGE"]
    assert users[0]["workflow_startup"] == "bugfix" and users[0]["text"].startswith("Start the Bug Fix workflow")
    assert users[1]["text"] == "login returns 500" and "workflow_startup" not in users[1]
    first = fake.bodies[0]
    system = system_text(first)
    assert "## Workflow Instructions" in system and "You are fixing a bug" in system
    assert "- /reproduce: Make the bug happen on demand" in system and "Bug Fix workflow" in system
    # both were queued before the first run: one user turn, the startup prompt first
    assert first["messages"][0]["content"][0]["text"].startswith("Start the Bug Fix workflow")
    assert first["messages"][0]["content"][1]["text"] == "login returns 500"
    # resume: the workflow is reloaded from the workspace, the startup prompt is not sent again
    await api.ok("POST", "sessions", sid, "stop", status=202)
    await api.wait_phase(sid, "Stopped")
    await api.ok("POST", "sessions", sid, "resume", status=202)
    await api.wait_phase(sid, "Running")
    fake.push(reply(text("Still fixing.")))
    await api.ok("POST", "sessions", sid, "messages", body={"text": "status?"}, status=202)
    await wait_for(lambda: _n_requests(fake, 2))
    assert "You are fixing a bug" in system_text(fake.bodies[1])
    events = await api.events(sid)
    assert len([e for e in events if e["type"] == "WORKFLOW_ATTACHED"]) == 1
    assert len([e for e in events if e["type"] == "USER_MESSAGE" and e["data"].get("workflow_startup")]) == 1
    # a clone carries the workflow
    c = await api.ok("POST", "sessions", sid, "clone", status=201)
    assert c["spec"]["workflow"] == "bugfix"


async def _n_requests(fake, n):
    return len(fake.requests) >= n


async def test_attach_git_workflow_while_running(with_fake_anthropic, fake, api, workflow_repo, sessions_config):
    fake.push(reply(text("Plain answer.")))
    s = await api.ok("POST", "sessions", body={"initial_prompt": "hello"}, status=201)
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await wait_for(lambda: _n_requests(fake, 1))
    assert "## Workflow Instructions" not in system_text(fake.bodies[0])
    await wait_for(lambda: _idle(api, sid))
    fake.push(reply(text("Hello, in haiku.")))
    source = f"file://{workflow_repo}#wf:workflows/demo"
    s = await api.ok("POST", "sessions", sid, "workflow", body={"workflow": source}, status=202)
    assert s["spec"]["workflow"] == source
    await wait_for(lambda: _n_requests(fake, 2))
    body = fake.bodies[1]
    assert "DEMO-SYSTEM: always answer in haiku." in system_text(body)
    assert "- /start: Begin the demo" in system_text(body)
    assert body["messages"][-1]["content"][-1]["text"] == "DEMO-STARTUP: say hello."
    events = await api.events(sid)
    (att,) = [e["data"] for e in events if e["type"] == "WORKFLOW_ATTACHED"]
    assert att["name"] == "Demo Flow" and att["source"] == source and att["kind"] == "git"
    assert att["description"] == "A demo workflow from git" and att["while_running"] is True
    assert (Path(sessions_config["data_dir"]) / "workspaces" / sid / "workflows" / "demo" / "CLAUDE.md").is_file()
    # switching to a built-in replaces the instructions from the next step on
    await wait_for(lambda: _idle(api, sid))
    fake.push(reply(text("Triage ready.")))
    await api.ok("POST", "sessions", sid, "workflow", body={"workflow": "triage"}, status=202)
    await wait_for(lambda: _n_requests(fake, 3))
    system = system_text(fake.bodies[2])
    assert "You are triaging, not fixing." in system and "DEMO-SYSTEM" not in system


async def _idle(api, sid):
    s = await api.ok("GET", "sessions", sid)
    return s["agent_state"] == "idle"


async def test_bad_workflows_are_refused_with_the_reason(with_fake_anthropic, api, tmp_path, workflow_repo):
    code, err = await api.call("POST", "sessions", body={"workflow": "nosuch", "model": "replay"})
    assert code == 422 and err["detail"][0]["field"] == "workflow" and "choose one of" in err["error"]
    broken = write_workflow(tmp_path / "broken", '{"name": "x",}')
    code, err = await api.call("POST", "sessions", body={"workflow": str(broken), "model": "replay"})
    assert code == 422 and "is not valid JSON" in err["error"], err
    code, err = await api.call("POST", "sessions", body={"workflow": "https://user:tok@example.com/r.git",
                                                          "model": "replay"})
    assert code == 422 and "git_credentials" in err["error"]
    assert (await api.ok("GET", "sessions"))["sessions"] == []  # nothing stored
    # a git workflow that cannot be fetched: a visible event; the session still runs
    s = await api.ok("POST", "sessions", body={"workflow": f"{workflow_repo}#wf:workflows/nope", "model": "replay"})
    s = await api.wait_phase(s["id"], "Running", "Failed")
    assert s["phase"] == "Running"
    events = await wait_for(lambda: _events_with(api, s["id"], "WORKFLOW_FAILED"))
    failed = [e["data"] for e in events if e["type"] == "WORKFLOW_FAILED"]
    assert failed and "has no folder 'workflows/nope'" in failed[0]["error"]
    # attaching a malformed one to a running session: 422, and the session keeps its spec
    code, err = await api.call("POST", "sessions", s["id"], "workflow", body={"workflow": str(broken)})
    assert code == 422 and "is not valid JSON" in err["error"]
    code, err = await api.call("POST", "sessions", s["id"], "workflow", body={"workflow": "bugfix", "x": 1})
    assert code == 422
    code, err = await api.call("POST", "sessions", "s-000000000000", "workflow", body={"workflow": "bugfix"})
    assert code == 404


async def test_attach_while_stopped_applies_on_resume(with_fake_anthropic, api, sessions_config):
    s = await api.ok("POST", "sessions", body={"model": "replay"})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "stop", status=202)
    await api.wait_phase(sid, "Stopped")
    s = await api.ok("POST", "sessions", sid, "workflow", body={"workflow": "spec-writing"}, status=202)
    assert s["spec"]["workflow"] == "spec-writing" and s["phase"] == "Stopped"
    await api.ok("POST", "sessions", sid, "resume", status=202)
    await api.wait_phase(sid, "Running")
    events = await wait_for(lambda: _events_with(api, sid, "WORKFLOW_ATTACHED"))
    assert [e["data"]["id"] for e in events if e["type"] == "WORKFLOW_ATTACHED"] == ["spec-writing"]
    ws = Path(sessions_config["data_dir"]) / "workspaces" / sid
    assert (ws / "workflows" / "spec-writing" / "templates" / "spec-template.md").is_file()


async def _events_with(api, sid, kind):
    events = await api.events(sid)
    return events if any(e["type"] == kind for e in events) else None


# -- the offline example (examples/repo-bugfix-with-workflow.ipynb on Binder) ---------------------
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def example_replays(sessions_config):
    sessions_config.update(replay_dir=str(EXAMPLES / "replays"), models=[
        {"id": "replay:bugfix", "label": "Replay: bug fix demo", "provider": "replay", "max_temperature": 2.0,
         "max_output_tokens": 1_000_000}])
    return sessions_config


async def test_the_offline_bugfix_example_really_fixes_the_demo_repo(example_replays, api, tmp_path):
    import sys

    sys.path.insert(0, str(EXAMPLES))
    try:
        from demo_repo import make_demo_repo
    finally:
        sys.path.remove(str(EXAMPLES))
    repo = make_demo_repo(tmp_path / "demo-repo")
    s = await api.ok("POST", "sessions", body={"model": "replay:bugfix", "workflow": "bugfix",
                                               "repos": [{"url": str(repo)}]}, status=201)
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await wait_for(lambda: _run_finished(api, sid, 1))  # the greeting, in answer to the startup prompt
    await api.ok("POST", "sessions", sid, "messages", body={"text": "mean([]) raises ZeroDivisionError"})
    await wait_for(lambda: _run_finished(api, sid, 2))
    ws = Path(example_replays["data_dir"]) / "workspaces" / sid
    assert "if not values:" in (ws / "repos" / "demo-repo" / "stats.py").read_text()
    assert "Regression test" in (ws / "artifacts" / "bugfix" / "fix-summary.md").read_text()
    results = [e["data"] for e in await api.events(sid) if e["type"] == "TOOL_CALL_RESULT"]
    outputs = "\n".join(json.dumps(r) for r in results)
    assert "ZeroDivisionError" in outputs and "Ran 2 tests" in outputs and "OK" in outputs


async def _run_finished(api, sid, n):
    events = await api.events(sid)
    return len([e for e in events if e["type"] == "RUN_FINISHED"]) >= n and \
        (await api.ok("GET", "sessions", sid))["agent_state"] == "idle"
