"""The agent's tools against real sandboxes (local and Docker): results, errors, confinement."""

from __future__ import annotations

import os
import secrets

import pytest
from fakes import make_sandbox

from jupyter_sessions.agent import history, questions
from jupyter_sessions.agent.tools import Tools, cap, glob_regex, workspace_relative
from jupyter_sessions.sandbox.base import PathOutsideWorkspace

SECRET = "sk-ant-test-SECRET-0123456789"


@pytest.fixture(params=["local", "docker"])
def sandbox(request, tmp_path, jp_asyncio_loop):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "src").mkdir()
    (ws / "src" / "app.py").write_text("def login(user):\n    return check(user)\n\n# TODO: tokens\n")
    (ws / "src" / "util.py").write_text("def check(user):\n    return True  # TODO\n")
    (ws / "README.md").write_text("# demo\n")
    (ws / "leak.txt").write_text(f"key={SECRET}\n")
    (tmp_path / "outside.txt").write_text("host secret\n")
    os.symlink("/", ws / "root-link")
    os.symlink(str(tmp_path / "outside.txt"), ws / "outside-link")
    run = jp_asyncio_loop.run_until_complete
    backend, sb = run(make_sandbox(request.param, f"tools-{secrets.token_hex(4)}", ws))
    yield sb
    run(sb.remove())
    run(backend.close())


@pytest.fixture
def tools(sandbox):
    return Tools(sandbox, [SECRET])


async def test_read_file_numbers_lines_and_pages(tools):
    out = await tools.run("read_file", {"path": "src/app.py"})
    assert not out.is_error
    assert out.content.splitlines()[0] == "     1\tdef login(user):"
    assert out.summary == "src/app.py"
    out = await tools.run("read_file", {"path": "/workspace/src/app.py", "offset": 2, "limit": 1})
    assert out.content.splitlines()[0] == "     2\t    return check(user)"
    assert "showing lines 2-2 of 4" in out.content


async def test_read_missing_file_is_a_tool_error(tools):
    out = await tools.run("read_file", {"path": "nope.txt"})
    assert out.is_error and "nope.txt" in out.content


async def test_write_then_read(tools, sandbox):
    out = await tools.run("write_file", {"path": "new/dir/hello.txt", "content": "hi there\n"})
    assert not out.is_error, out.content
    assert (sandbox.workspace / "new/dir/hello.txt").read_text() == "hi there\n"
    out = await tools.run("read_file", {"path": "new/dir/hello.txt"})
    assert "hi there" in out.content


async def test_edit_file_exact_unique_and_replace_all(tools, sandbox):
    out = await tools.run("edit_file", {"path": "src/app.py", "old_string": "return check(user)",
                                        "new_string": "return check(user) and user.active"})
    assert not out.is_error, out.content
    assert "and user.active" in (sandbox.workspace / "src/app.py").read_text()
    absent = await tools.run("edit_file", {"path": "src/app.py", "old_string": "nothing like this",
                                           "new_string": "x"})
    assert absent.is_error and "not found" in absent.content
    await tools.run("write_file", {"path": "dup.txt", "content": "a\na\n"})
    dup = await tools.run("edit_file", {"path": "dup.txt", "old_string": "a", "new_string": "b"})
    assert dup.is_error and "occurs 2 times" in dup.content
    both = await tools.run("edit_file", {"path": "dup.txt", "old_string": "a", "new_string": "b", "replace_all": True})
    assert not both.is_error and (sandbox.workspace / "dup.txt").read_text() == "b\nb\n"


async def test_bash_exit_code_timeout_and_cap(tools):
    out = await tools.run("bash", {"command": "echo hello; exit 3"})
    assert out.is_error and "hello" in out.content and "[exit code 3]" in out.content
    assert out.summary == "echo hello; exit 3"
    slow = await tools.run("bash", {"command": "sleep 30", "timeout": 1})
    assert slow.is_error and "timed out after 1 s" in slow.content
    big = await tools.run("bash", {"command": "head -c 200000 /dev/zero | tr '\\0' 'x'; echo; echo END"})
    assert "[output truncated:" in big.content and "bytes omitted]" in big.content
    assert big.content.rstrip().endswith("[exit code 0]") and "END" in big.content
    assert len(big.content) < 40_000


async def test_grep_and_glob(tools):
    out = await tools.run("grep", {"pattern": "TODO"})
    assert not out.is_error, out.content
    lines = sorted(out.content.splitlines())
    assert any(ln.startswith("src/app.py:4:") or ln.startswith("./src/app.py:4:") for ln in lines), lines
    assert any("util.py:2:" in ln for ln in lines)
    only = await tools.run("grep", {"pattern": "def \\w+", "path": "src", "glob": "util.*"})
    assert "util.py" in only.content and "app.py" not in only.content
    none = await tools.run("grep", {"pattern": "zzz-not-there"})
    assert not none.is_error and none.content == "No matches."
    g = await tools.run("glob", {"pattern": "**/*.py"})
    assert sorted(g.content.splitlines()) == ["src/app.py", "src/util.py"]
    top = await tools.run("glob", {"pattern": "*.md"})
    assert top.content.splitlines() == ["README.md"]
    sub = await tools.run("glob", {"pattern": "*.py", "path": "src"})
    assert sorted(sub.content.splitlines()) == ["src/app.py", "src/util.py"]


@pytest.mark.parametrize("call", [
    ("read_file", {"path": "../outside.txt"}),
    ("read_file", {"path": "/etc/passwd"}),
    ("read_file", {"path": "root-link/etc/passwd"}),
    ("read_file", {"path": "outside-link"}),
    ("write_file", {"path": "../escape.txt", "content": "x"}),
    ("write_file", {"path": "root-link/tmp/escape.txt", "content": "x"}),
    ("edit_file", {"path": "/etc/hostname", "old_string": "a", "new_string": "b"}),
    ("grep", {"pattern": "root", "path": "../"}),
    ("grep", {"pattern": "root", "path": "/etc"}),
    ("grep", {"pattern": "root", "path": "root-link/etc"}),
    ("glob", {"pattern": "*", "path": "root-link"}),
    ("glob", {"pattern": "/etc/*"}),
])
async def test_path_escapes_fail_with_a_clear_error(tools, call, tmp_path):
    name, args = call
    out = await tools.run(name, args)
    assert out.is_error, out.content
    assert "outside the session workspace" in out.content, out.content
    assert not (tmp_path / "escape.txt").exists()


async def test_secrets_are_masked_in_tool_output(tools):
    for name, args in [("read_file", {"path": "leak.txt"}), ("bash", {"command": "cat leak.txt"}),
                       ("grep", {"pattern": "key="})]:
        out = await tools.run(name, args)
        assert SECRET not in out.content and "[secret masked]" in out.content, (name, out.content)


async def test_bad_input_and_unknown_tool(tools):
    out = await tools.run("read_file", {"offset": 3})
    assert out.is_error and "invalid input for read_file" in out.content and "path" in out.content
    out = await tools.run("frobnicate", {})
    assert out.is_error and "unknown tool" in out.content


# -- pure helpers -----------------------------------------------------------------------------------
def test_glob_regex():
    rx = glob_regex("**/*.py")
    assert rx.match("a.py") and rx.match("x/y/a.py") and not rx.match("a.pyc")
    assert glob_regex("*.py").match("a.py") and not glob_regex("*.py").match("x/a.py")
    assert glob_regex("src/{a,b}.txt").match("src/b.txt") and not glob_regex("src/{a,b}.txt").match("src/c.txt")
    assert glob_regex("file?.[ch]").match("file1.c") and not glob_regex("file?.[ch]").match("file1.o")


def test_workspace_relative():
    assert workspace_relative(None) == "."
    assert workspace_relative("/workspace/src") == "src"
    assert workspace_relative("src/../lib") == "lib"
    for bad in ("..", "../x", "/etc", "a/../../b"):
        with pytest.raises(PathOutsideWorkspace):
            workspace_relative(bad)


def test_cap_keeps_head_and_tail():
    s = "A" * 50_000 + "TAIL"
    out = cap(s, 1000)
    assert out.startswith("A") and out.endswith("TAIL") and "[output truncated: 49004 bytes omitted]" in out


def test_question_validation():
    qs = questions.parse_questions({"questions": [
        {"question": "Which database?", "header": "Database", "multiSelect": False,
         "options": [{"label": "Postgres", "description": "server"}, {"label": "SQLite", "description": "file"}]},
        {"question": "Which features?", "header": "Features", "multiSelect": True,
         "options": [{"label": "Auth", "description": ""}, {"label": "Search", "description": ""},
                     {"label": "Export", "description": ""}]},
        {"question": "Anything else?", "header": "Notes", "options": [], "multiSelect": False},
    ]})
    got = questions.validate_answers(qs, ["SQLite", ["Auth", "Export"], "keep it small"])
    assert [a["text"] for a in got] == ["SQLite", "Auth, Export", "keep it small"]
    other = questions.validate_answers(qs, ["DuckDB please", "Search", "x"])
    assert other[0]["other"] == "DuckDB please" and other[0]["selected"] == []
    for bad, msg in [(["SQLite", ["Auth"]], "expected 3"), (["SQLite", ["Nope"], "x"], "not one of its options"),
                     (["SQLite", ["Auth"], ""], "has no answer"), ([["Postgres", "SQLite"], ["Auth"], "x"], "single choice"),
                     (["SQLite", ["Auth"], ["x"]], "free-text")]:
        with pytest.raises(questions.AnswerError, match=msg):
            questions.validate_answers(qs, bad)
    for bad_input in ({"questions": []}, {"questions": [{"question": "q", "header": "waytoolongheader", "options": []}]},
                      {"questions": [{"question": "q", "header": "h", "options": [{"label": "only one"}]}]}):
        with pytest.raises(ValueError):
            questions.parse_questions(bad_input)


def test_repair_plan_fills_missing_results_before_text():
    msgs = [
        {"role": "user", "content": [history.text("go")]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "bash", "input": {}},
                                          {"type": "tool_use", "id": "b", "name": "bash", "input": {}}]},
        {"role": "user", "content": [history.tool_result("b", "bash", "ok"), history.text("also this")]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "read_file", "input": {}}]},
    ]
    plan = history.repair_plan(msgs)
    assert [i for i, _ in plan] == [2, None]
    fixed = plan[0][1]["content"]
    assert [b.get("tool_use_id") or b["type"] for b in fixed] == ["a", "b", "text"]
    assert fixed[0]["is_error"] and plan[1][1]["content"][0]["tool_use_id"] == "c"
    assert history.repair_plan(msgs, skip={"a", "c"}) == []
