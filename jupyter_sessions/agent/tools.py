"""The agent's tools: schemas for the model, and their execution inside the session's sandbox.

Everything runs through the `Sandbox` interface (never on the host directly), so a Docker session's
file tools resolve paths inside the container and a symlink cannot reach the host. A tool failure
is an `Outcome` with `is_error=True` the model can read and act on, never an exception; only a
sandbox that died (`SandboxGone`) propagates, because no tool can work after that.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..redact import redact_text
from ..sandbox.base import (
    WORKSPACE,
    PathOutsideWorkspace,
    Sandbox,
    SandboxError,
    SandboxGone,
)
from . import questions

#: Longest tool result handed to the model (characters); more is cut with a note.
MAX_RESULT = 30_000
READ_MAX_BYTES = 10_000_000
READ_DEFAULT_LINES = 2000
READ_MAX_LINE = 2000
BASH_DEFAULT_TIMEOUT = 120
BASH_MAX_TIMEOUT = 600
GLOB_MAX_RESULTS = 500
from ..redact import MASK  # noqa: E402,F401  (re-exported for callers)


@dataclass
class Outcome:
    content: str
    is_error: bool = False
    summary: str = ""


@dataclass
class ToolSpec:
    name: str
    description: str
    input_schema: dict


# -- input models (validation) ------------------------------------------------------------------
class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReadIn(_In):
    path: str = Field(min_length=1)
    offset: int = Field(default=1, ge=1)
    limit: int = Field(default=READ_DEFAULT_LINES, ge=1)


class WriteIn(_In):
    path: str = Field(min_length=1)
    content: str


class EditIn(_In):
    path: str = Field(min_length=1)
    old_string: str
    new_string: str
    replace_all: bool = False


class BashIn(_In):
    command: str = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0)


class GrepIn(_In):
    pattern: str = Field(min_length=1)
    path: str | None = None
    glob: str | None = None


class GlobIn(_In):
    pattern: str = Field(min_length=1)
    path: str | None = None


def _obj(props: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": props, "required": required}


SPECS: list[ToolSpec] = [
    ToolSpec("read_file", "Read a text file from the workspace. Returns numbered lines (cat -n style). "
             "Relative paths are under /workspace. Use offset/limit for long files.",
             _obj({"path": {"type": "string", "description": "File path, relative to /workspace or absolute under it."},
                   "offset": {"type": "integer", "description": "First line to show (1-based). Default 1."},
                   "limit": {"type": "integer", "description": f"How many lines. Default {READ_DEFAULT_LINES}."}},
                  ["path"])),
    ToolSpec("write_file", "Create or overwrite a file in the workspace with the given content "
             "(parent folders are created).",
             _obj({"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"])),
    ToolSpec("edit_file", "Replace an exact string in a file. old_string must match the file exactly "
             "(whitespace included) and be unique unless replace_all is true. Read the file first.",
             _obj({"path": {"type": "string"}, "old_string": {"type": "string"},
                   "new_string": {"type": "string"},
                   "replace_all": {"type": "boolean", "description": "Replace every occurrence. Default false."}},
                  ["path", "old_string", "new_string"])),
    ToolSpec("bash", "Run a bash command in /workspace inside the session's sandbox. The whole process "
             f"group is killed at the timeout (default {BASH_DEFAULT_TIMEOUT} s, at most {BASH_MAX_TIMEOUT} s). "
             "Long output is cut in the middle. Network access may be disabled.",
             _obj({"command": {"type": "string"},
                   "timeout": {"type": "number", "description": "Seconds before the command is killed."}},
                  ["command"])),
    ToolSpec("grep", "Search file contents with a regular expression (ripgrep syntax). Returns "
             "path:line:text matches.",
             _obj({"pattern": {"type": "string"},
                   "path": {"type": "string", "description": "File or folder to search. Default: the workspace."},
                   "glob": {"type": "string", "description": "Only files matching this glob, e.g. '*.py'."}},
                  ["pattern"])),
    ToolSpec("glob", "List files whose path matches a glob pattern ('**' crosses folders, e.g. "
             "'**/*.py'), newest first.",
             _obj({"pattern": {"type": "string"},
                   "path": {"type": "string", "description": "Folder to search from. Default: the workspace."}},
                  ["pattern"])),
    ToolSpec(questions.TOOL_NAME, questions.DESCRIPTION, questions.SCHEMA),
]

TOOL_NAMES = [s.name for s in SPECS]


# -- helpers -----------------------------------------------------------------------------------
def mask_secrets(s: str, secrets: list[str]) -> str:
    """Known secret values and credential-shaped strings masked (see jupyter_sessions.redact)."""
    return redact_text(s, secrets)


def cap(s: str, limit: int = MAX_RESULT) -> str:
    """Keep the head and the tail (errors are usually at the end) with a note in between."""
    data = s.encode("utf-8", "replace")
    if len(data) <= limit:
        return s
    half = limit // 2
    omitted = len(data) - 2 * half
    head = data[:half].decode("utf-8", "ignore")
    tail = data[-half:].decode("utf-8", "ignore")
    return f"{head}\n[output truncated: {omitted} bytes omitted]\n{tail}"


def summary(name: str, args: dict) -> str:
    """One line for the UI's collapsed tool block."""
    args = args if isinstance(args, dict) else {}
    if name in ("read_file", "write_file", "edit_file"):
        s = str(args.get("path", ""))
    elif name == "bash":
        s = str(args.get("command", "")).strip().splitlines()[0] if str(args.get("command", "")).strip() else ""
    elif name == "grep":
        s = f"{args.get('pattern', '')!s} in {args.get('path') or '.'}"
    elif name == "glob":
        s = f"{args.get('pattern', '')!s}" + (f" in {args['path']}" if args.get("path") else "")
    elif name == questions.TOOL_NAME:
        qs = args.get("questions") if isinstance(args.get("questions"), list) else []
        s = ", ".join(str(q.get("header", "")) for q in qs if isinstance(q, dict))
    else:
        s = name
    return s if len(s) <= 120 else s[:117] + "..."


def workspace_relative(path: str | None) -> str:
    """A path argument for a shell tool as a path relative to /workspace, refusing lexical escapes.

    Symlinks are checked again inside the sandbox (see `_CONFINE`), where they resolve.
    """
    p = (path or ".").strip() or "."
    if "\x00" in p:
        raise PathOutsideWorkspace(f"invalid path {path!r}")
    if p.startswith("/"):
        if p == WORKSPACE or p.startswith(WORKSPACE + "/"):
            p = p[len(WORKSPACE) + 1:] or "."
        else:
            raise PathOutsideWorkspace(
                f"{path!r} is outside the session workspace; tools only reach {WORKSPACE} and below")
    n = posixpath.normpath(p)
    if n == ".." or n.startswith("../"):
        raise PathOutsideWorkspace(
            f"{path!r} is outside the session workspace (it leads above {WORKSPACE}); tools only reach {WORKSPACE} and below")
    return n


_ESCAPE_MARK = "__JS_PATH_OUTSIDE__"
# Resolve the path where the command runs (symlinks included) and refuse anything outside cwd.
_CONFINE = (
    'root=$(pwd -P); t=$(realpath -m -- "$p" 2>/dev/null || echo "$p"); '
    'case "$t" in "$root"|"$root"/*) ;; *) echo "' + _ESCAPE_MARK + '$t"; exit 3;; esac; '
)


def glob_regex(pattern: str) -> re.Pattern:
    """A glob as a regex over '/'-separated relative paths: ** crosses folders, * and ? do not."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "{":
            j = pattern.find("}", i)
            if j == -1:
                out.append(re.escape(c))
            else:
                alts = pattern[i + 1:j].split(",")
                out.append("(?:" + "|".join(glob_regex(a).pattern[:-2] for a in alts) + ")")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


class Tools:
    """Runs tool calls against one sandbox; masks secrets in everything it returns."""

    def __init__(self, sandbox: Sandbox, secrets: list[str] | None = None):
        self.sandbox = sandbox
        self.secrets = [s for s in (secrets or []) if s]

    @staticmethod
    def specs() -> list[ToolSpec]:
        return list(SPECS)

    async def run(self, name: str, args: Any) -> Outcome:
        """Execute one tool call; errors come back as is_error outcomes."""
        line = summary(name, args if isinstance(args, dict) else {})
        handler = getattr(self, f"_t_{name}", None)
        if handler is None or name == questions.TOOL_NAME:
            out = Outcome(f"unknown tool {name!r}; available: {', '.join(TOOL_NAMES)}", True)
        else:
            try:
                out = await handler(args if isinstance(args, dict) else {})
            except ValidationError as e:
                problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
                                     for err in e.errors())
                out = Outcome(f"invalid input for {name}: {problems}", True)
            except PathOutsideWorkspace as e:
                out = Outcome(f"Path refused: {e}", True)
            except SandboxGone:
                raise
            except (SandboxError, OSError) as e:
                out = Outcome(f"{name} failed: {e}", True)
        out.content = mask_secrets(cap(out.content), self.secrets)
        out.summary = mask_secrets(out.summary or line, self.secrets)
        return out

    # -- file tools -------------------------------------------------------------------------------
    async def _read_text(self, path: str) -> str:
        data = await self.sandbox.read_file(path, max_bytes=READ_MAX_BYTES)
        if b"\x00" in data[:8192]:
            raise SandboxError(f"{path} is a binary file ({len(data)} bytes); read_file shows text files only")
        return data.decode("utf-8", "replace")

    async def _t_read_file(self, args: dict) -> Outcome:
        a = ReadIn.model_validate(args)
        text = await self._read_text(a.path)
        if not text:
            return Outcome("(empty file)")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        total = len(lines)
        if a.offset > total:
            return Outcome(f"(the file has {total} lines; offset {a.offset} is past the end)")
        start = a.offset - 1
        chunk = lines[start:start + a.limit]
        out = []
        for n, line in enumerate(chunk, a.offset):
            if len(line) > READ_MAX_LINE:
                line = line[:READ_MAX_LINE] + " [line cut]"
            out.append(f"{n:6}\t{line}")
        end = start + len(chunk)
        if end < total or start > 0:
            out.append(f"[showing lines {a.offset}-{end} of {total}; use offset/limit for more]")
        return Outcome("\n".join(out))

    async def _t_write_file(self, args: dict) -> Outcome:
        a = WriteIn.model_validate(args)
        data = a.content.encode("utf-8")
        await self.sandbox.write_file(a.path, data)
        return Outcome(f"Wrote {len(data)} bytes to {a.path}")

    async def _t_edit_file(self, args: dict) -> Outcome:
        a = EditIn.model_validate(args)
        if a.old_string == "":
            return Outcome("old_string is empty; use write_file to create or overwrite a file", True)
        if a.old_string == a.new_string:
            return Outcome("old_string and new_string are identical; nothing to change", True)
        data = await self.sandbox.read_file(a.path, max_bytes=READ_MAX_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return Outcome(f"{a.path} is not a UTF-8 text file; edit_file cannot change it", True)
        count = text.count(a.old_string)
        if count == 0:
            return Outcome(f"old_string was not found in {a.path}; read the file and copy the exact text "
                           "(whitespace and indentation included)", True)
        if count > 1 and not a.replace_all:
            return Outcome(f"old_string occurs {count} times in {a.path}; include more surrounding text to "
                           "make it unique, or set replace_all to true", True)
        new = text.replace(a.old_string, a.new_string) if a.replace_all else text.replace(a.old_string, a.new_string, 1)
        await self.sandbox.write_file(a.path, new.encode("utf-8"))
        first = new[: text.index(a.old_string)].count("\n") + 1
        return Outcome(f"Replaced {count if a.replace_all else 1} occurrence(s) in {a.path} (first at line {first})")

    # -- shell tools -----------------------------------------------------------------------------
    async def _t_bash(self, args: dict) -> Outcome:
        a = BashIn.model_validate(args)
        timeout = min(a.timeout or BASH_DEFAULT_TIMEOUT, BASH_MAX_TIMEOUT)
        res = await self.sandbox.exec(a.command, timeout=timeout, output_cap=1_000_000)
        body = cap(res.output)
        notes = []
        if res.truncated:
            notes.append("[output truncated by the sandbox: only the first 1000000 bytes were kept]")
        if res.timed_out:
            notes.append(f"[timed out after {timeout:g} s; the process group was killed]")
        else:
            notes.append(f"[exit code {res.exit_code}]")
        content = (body.rstrip("\n") + "\n" if body else "") + "\n".join(notes)
        return Outcome(content, is_error=bool(res.timed_out or (res.exit_code not in (0, None))))

    async def _shell(self, script: str, timeout: float = 60) -> tuple[int | None, str]:
        res = await self.sandbox.exec(script, timeout=timeout, output_cap=5_000_000)
        if res.output.startswith(_ESCAPE_MARK):
            resolved = res.output[len(_ESCAPE_MARK):].strip()
            raise PathOutsideWorkspace(
                f"the path is outside the session workspace (it resolves to {resolved}); tools only reach {WORKSPACE} and below")
        return res.exit_code, res.output

    async def _t_grep(self, args: dict) -> Outcome:
        a = GrepIn.model_validate(args)
        rel = workspace_relative(a.path)
        q = shlex.quote
        rg = ["rg", "-n", "-H", "--no-heading", "--color=never", "--hidden", "-g", q("!.git")]
        gr = ["grep", "-rnHIE", "--exclude-dir=.git"]
        if a.glob:
            rg += ["-g", q(a.glob)]
            gr += [q(f"--include={a.glob}")]
        rg += ["-e", q(a.pattern), "--", '"$p"']
        gr += ["-e", q(a.pattern), "--", '"$p"']
        script = (f"p={q(rel)}; " + _CONFINE +
                  f"if command -v rg >/dev/null 2>&1; then {' '.join(rg)}; else {' '.join(gr)}; fi")
        code, out = await self._shell(script)
        if code == 1 and not out.strip():
            return Outcome("No matches.", summary=summary("grep", args))
        if code not in (0, 1):
            return Outcome(f"grep failed (exit {code}): {out.strip()}", True)
        lines = out.rstrip("\n").split("\n")
        note = f"\n[{len(lines) - 500} more matching lines not shown; narrow the search]" if len(lines) > 500 else ""
        return Outcome("\n".join(lines[:500]) + note)

    async def _t_glob(self, args: dict) -> Outcome:
        a = GlobIn.model_validate(args)
        rel = workspace_relative(a.path)
        pattern = a.pattern.strip()
        if pattern.startswith(WORKSPACE + "/"):
            pattern = pattern[len(WORKSPACE) + 1:]
        elif pattern.startswith("/"):
            raise PathOutsideWorkspace(f"{a.pattern!r} is outside the session workspace; use a relative pattern")
        pattern = pattern[2:] if pattern.startswith("./") else pattern
        rx = glob_regex(pattern)
        script = (f"p={shlex.quote(rel)}; " + _CONFINE +
                  "cd -- \"$p\" 2>/dev/null || { echo \"not a folder: $p\"; exit 4; }; "
                  "find . -mindepth 1 -name .git -prune -o \\( -type f -o -type l \\) -printf '%T@\\t%P\\n'")
        code, out = await self._shell(script)
        if code == 4:
            return Outcome(out.strip(), True)
        hits = []
        for line in out.splitlines():
            mtime, _, path = line.partition("\t")
            if path and rx.match(path):
                try:
                    hits.append((float(mtime), path))
                except ValueError:
                    continue
        if not hits:
            return Outcome("No files matched.")
        hits.sort(key=lambda h: (-h[0], h[1]))
        shown = [p if rel == "." else f"{rel}/{p}" for _, p in hits[:GLOB_MAX_RESULTS]]
        more = f"\n[{len(hits) - GLOB_MAX_RESULTS} more files not shown; narrow the pattern]" if len(hits) > GLOB_MAX_RESULTS else ""
        return Outcome("\n".join(shown) + more)
