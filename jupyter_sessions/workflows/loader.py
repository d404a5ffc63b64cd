"""Workflows: a proven plan for the agent, in Ambient's `.ambient/ambient.json` layout.

A workflow is a folder::

    .ambient/ambient.json     name, description, systemPrompt, startupPrompt, rubric, artifactsDir, enabled
    .ambient/rubric.md        optional: the rubric as prose
    CLAUDE.md                 optional: standing instructions for the agent
    .claude/commands/*.md     optional: slash commands (frontmatter: displayName, description, order)
    .claude/agents/*.md, templates/, scripts/ ...   anything else is copied along

Every manifest field is optional (as in Ambient), so an existing Ambient workflow repo works
unchanged. A session names its workflow with one string (`SessionSpec.workflow`):

    bugfix | triage | spec-writing              a built-in workflow (or one from `workflow_dirs`)
    /srv/workflows/my-flow  or  ~/my-flow       a folder on the server
    URL[#BRANCH][:PATH]                         a git repo: https://, http://, ssh://, git://, file://,
                                                user@host:repo, or a local path ending in .git;
    URL#BRANCH:PATH, URL#:PATH, URL#BRANCH      the fragment picks a branch and/or a sub-folder,
                                                e.g. https://github.com/ambient-code/workflows.git#main:workflows/bugfix

The files are copied into the session's workspace at `/workspace/workflows/<id>` (git metadata and
symlinks left out), and the agent gets the manifest's systemPrompt, CLAUDE.md, the list of commands
and the rubric as a "## Workflow Instructions" section of its system prompt.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

BUILTIN_DIR = Path(__file__).parent / "builtin"
MANIFEST = Path(".ambient") / "ambient.json"
PLACED_UNDER = "workflows"  # /workspace/workflows/<id>

#: Other names people use for the built-ins.
ALIASES = {"bug-fix": "bugfix", "bug": "bugfix", "fix": "bugfix", "spec": "spec-writing",
           "specwriting": "spec-writing", "spec-write": "spec-writing", "issue-triage": "triage"}

MAX_FILES = 2000
MAX_BYTES = 20 * 1024 * 1024
MAX_INLINE = 24_000  # characters of CLAUDE.md / rubric.md inlined into the system prompt

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,99}$")
_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/@+-]{1,200}$")
_SCP_RE = re.compile(r"^[\w.-]+@[\w.-]+:[^/].*|^[\w.-]+@[\w.-]+:/.*")
_GIT_SCHEMES = ("https", "http", "ssh", "git", "file")


class WorkflowError(ValueError):
    """A workflow that cannot be used, with a message that says why and what to do."""


# -- the source string ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkflowSource:
    """A parsed `SessionSpec.workflow` string."""

    kind: Literal["builtin", "folder", "git"]
    value: str  # built-in name, absolute folder path, or git URL / path
    branch: str | None = None
    path: str | None = None  # sub-folder inside a git repo
    text: str = ""  # the string as given

    @property
    def shown(self) -> str:
        """The source as it may be shown and stored: no credentials."""
        return _strip_userinfo(self.text or self.value)

    @property
    def id(self) -> str:
        """The folder name under /workspace/workflows (stable for a given source)."""
        if self.kind == "builtin":
            return self.value
        if self.kind == "git":
            tail = (self.path or "").rstrip("/").rsplit("/", 1)[-1]
            if not tail:
                tail = self.value.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
                tail = tail.removesuffix(".git")
        else:
            tail = Path(self.value).name
        tail = re.sub(r"[^A-Za-z0-9._-]", "-", tail).strip(".-")
        return tail[:80] or "workflow"


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)
    return url


def _is_git_url(base: str) -> bool:
    if "://" in base:
        return True
    return bool(_SCP_RE.match(base)) and not base.startswith(("/", "~", "."))


def parse_source(text: str, named: set[str] | None = None) -> WorkflowSource:
    """Parse a workflow string; WorkflowError with the accepted forms when it fits none.

    `named`: extra names that count as built-ins (workflows from the admin's `workflow_dirs`).
    """
    raw = (text or "").strip()
    if not raw:
        raise WorkflowError("empty workflow; give a built-in name (bugfix, triage, spec-writing), "
                            "a folder path or a git URL")
    if any(c in raw for c in "\n\r\0"):
        raise WorkflowError("a workflow cannot contain control characters")
    if raw.startswith("-"):
        raise WorkflowError("a workflow cannot start with '-'")
    if _NAME_RE.match(raw) and "/" not in raw:
        name = re.sub(r"[\s_]+", "-", raw.lower())
        name = ALIASES.get(name, name)
        known = set(builtin_names()) | set(named or ())
        if name not in known:
            raise WorkflowError(f"no built-in workflow {raw!r}; choose one of: {', '.join(sorted(known))} "
                                "(or give a folder path or a git URL)")
        return WorkflowSource("builtin", name, text=name)
    base, branch, sub = raw, None, None
    if "#" in raw:
        base, frag = raw.rsplit("#", 1)
        branch, _, sub = frag.partition(":") if ":" in frag else (frag, "", "")
        branch, sub = branch or None, sub or None
        if branch is not None and (branch.startswith("-") or ".." in branch or not _BRANCH_RE.match(branch)):
            raise WorkflowError(f"not a valid branch name in {raw!r}: {branch!r}")
        if sub is not None:
            parts = Path(sub.strip("/")).parts
            if sub.startswith("/") or ".." in parts or not parts:
                raise WorkflowError(f"the path after ':' must be relative to the repo root, without '..': {sub!r}")
            sub = "/".join(parts)
    if _is_git_url(base):
        scheme = urlsplit(base).scheme if "://" in base else "ssh"
        if scheme not in _GIT_SCHEMES:
            raise WorkflowError(f"unsupported URL scheme {scheme!r}; use https, ssh, git or file")
        return WorkflowSource("git", base, branch, sub, text=raw)
    if base.endswith(".git") or "#" in raw:  # a local git repo (bare or not)
        if not base.startswith(("/", "~")):
            raise WorkflowError(f"give the local repository as an absolute path: {base!r}")
        return WorkflowSource("git", base, branch, sub, text=raw)
    if not base.startswith(("/", "~")):
        raise WorkflowError(f"{raw!r} is not a built-in workflow, an absolute folder path or a git URL "
                            "(https://..., ssh://..., user@host:repo.git, with optional #branch:path)")
    return WorkflowSource("folder", base, text=raw)


# -- the manifest --------------------------------------------------------------------------------
class Rubric(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    activation_prompt: str | None = Field(default=None, alias="activationPrompt")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class AmbientManifest(BaseModel):
    """`.ambient/ambient.json`: every field optional; unknown fields are kept (e.g. `results`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    system_prompt: str | None = Field(default=None, alias="systemPrompt", max_length=100_000)
    startup_prompt: str | None = Field(default=None, alias="startupPrompt", max_length=100_000)
    rubric: Rubric | None = None
    artifacts_dir: str | None = Field(default=None, alias="artifactsDir", max_length=500)
    enabled: bool = True

    @field_validator("artifacts_dir")
    @classmethod
    def _relative(cls, v: str | None) -> str | None:
        if not v:
            return None
        v = v.strip()
        v = v.removeprefix("/workspace/")
        parts = Path(v).parts
        if v.startswith("/") or ".." in parts or not parts:
            raise ValueError("must be a folder inside the workspace, e.g. 'artifacts/bugfix'")
        return "/".join(parts)


@dataclass
class Command:
    """A slash command from `.claude/commands/<name>.md`."""

    name: str
    description: str = ""
    display_name: str = ""
    order: float = 1e9


@dataclass
class Workflow:
    """A loaded workflow: its manifest, instructions and where its files are."""

    id: str
    name: str
    description: str
    source: WorkflowSource
    root: Path  # the folder holding .ambient/ambient.json (a temporary clone, the built-in, or the placed copy)
    system_prompt: str = ""
    startup_prompt: str | None = None
    rubric: dict | None = None
    rubric_md: str | None = None
    artifacts_dir: str | None = None
    enabled: bool = True
    claude_md: str | None = None
    commands: list[Command] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # manifest fields we do not use (kept for display)

    @property
    def placed_path(self) -> str:
        return f"/workspace/{PLACED_UNDER}/{self.id}"

    def info(self) -> WorkflowInfo:
        return WorkflowInfo(id=self.id, name=self.name, description=self.description, source=self.source.shown,
                            kind=self.source.kind, startup_prompt=bool(self.startup_prompt),
                            artifacts_dir=self.artifacts_dir, commands=[c.name for c in self.commands],
                            enabled=self.enabled)

    def event_data(self) -> dict:
        """WORKFLOW_ATTACHED: what traces, feedback and the UI need to know about the active workflow."""
        return {"name": self.name, "id": self.id, "source": self.source.shown, "kind": self.source.kind,
                "description": self.description, "path": self.placed_path,
                "artifacts_dir": f"/workspace/{self.artifacts_dir}" if self.artifacts_dir else None,
                "commands": [c.name for c in self.commands], "startup_prompt": bool(self.startup_prompt)}

    def prompt_section(self) -> str:
        """The system-prompt addition: heading, the manifest's systemPrompt, CLAUDE.md, commands, rubric."""
        where = self.placed_path
        lines = ["## Workflow Instructions", "",
                 f"Active workflow: **{self.name}**" + (f": {self.description}" if self.description else ""),
                 f"Its files are in {where}."]
        if self.artifacts_dir:
            lines.append(f"Write the deliverables this workflow asks for to /workspace/{self.artifacts_dir} "
                         "(create the folder if needed).")
        if self.system_prompt.strip():
            lines += ["", self.system_prompt.strip()]
        if self.claude_md and self.claude_md.strip():
            md = self.claude_md.strip()
            if len(md) > MAX_INLINE:
                md = md[:MAX_INLINE] + f"\n\n[... truncated; read {where}/CLAUDE.md for the rest]"
            lines += ["", f"### {where}/CLAUDE.md", "", md]
        if self.commands:
            lines += ["", "### Commands",
                      "When the user's message starts with one of these slash commands, read the command's file "
                      f"({where}/.claude/commands/<name>.md) and follow it; the rest of the message is its "
                      "$ARGUMENTS. You may also suggest the next command when a step is done."]
            for c in self.commands:
                lines.append(f"- /{c.name}" + (f": {c.description}" if c.description else ""))
        if self.rubric or self.rubric_md:
            lines += ["", "### Rubric", "Before you say the work is done, check it against this rubric and report "
                      "how it scores, item by item."]
            if self.rubric and self.rubric.get("activationPrompt"):
                lines.append(str(self.rubric["activationPrompt"]).strip())
            if self.rubric_md:
                lines += ["", self.rubric_md.strip()[:MAX_INLINE]]
            if self.rubric and self.rubric.get("schema"):
                lines += ["", "Rubric schema (JSON Schema of the scores to report):",
                          json.dumps(self.rubric["schema"], indent=1)[:4000]]
        return "\n".join(lines).rstrip() + "\n"


class WorkflowInfo(BaseModel):
    """A workflow as the API lists it."""

    id: str
    name: str
    description: str = ""
    source: str = Field(description="the string to pass as a session's `workflow`")
    kind: Literal["builtin", "folder", "git"]
    startup_prompt: bool = Field(default=False, description="sends a first message when attached")
    artifacts_dir: str | None = None
    commands: list[str] = Field(default_factory=list)
    enabled: bool = True


class WorkflowList(BaseModel):
    workflows: list[WorkflowInfo]


class WorkflowIn(BaseModel):
    """Attach (or switch to) a workflow on a session."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    workflow: str = Field(min_length=1, max_length=2000,
                          description="built-in name, server folder path, or git URL[#branch][:path]")


# -- loading -------------------------------------------------------------------------------------
def _frontmatter(text: str) -> tuple[dict, str]:
    """A tiny YAML-frontmatter reader for `key: value` lines (all Ambient command files need)."""
    if not text.startswith("---"):
        return {}, text
    end = text.find("\n---", 3)
    if end < 0:
        return {}, text
    meta: dict[str, str] = {}
    for line in text[3:end].splitlines():
        if ":" in line and not line.startswith((" ", "\t", "#")):
            k, _, v = line.partition(":")
            meta[k.strip()] = v.strip().strip("'\"")
    return meta, text[end + 4:].lstrip("\n")


def _read_text(path: Path, what: str) -> str | None:
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise WorkflowError(f"cannot read the workflow's {what}: {e}") from None


def load_folder(root: Path, source: WorkflowSource) -> Workflow:
    """Load a workflow folder (Ambient layout); WorkflowError names the file and field at fault."""
    root = Path(root)
    shown = source.shown
    if not root.is_dir():
        raise WorkflowError(f"workflow {shown!r}: no such folder")
    manifest_path = root / MANIFEST
    raw: dict = {}
    if manifest_path.is_file():
        try:
            raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise WorkflowError(f"workflow {shown!r}: .ambient/ambient.json is not UTF-8 text") from None
        except json.JSONDecodeError as e:
            raise WorkflowError(f"workflow {shown!r}: .ambient/ambient.json is not valid JSON "
                                f"(line {e.lineno}, column {e.colno}: {e.msg})") from None
        if not isinstance(raw, dict):
            raise WorkflowError(f"workflow {shown!r}: .ambient/ambient.json must be a JSON object, "
                                f"not {type(raw).__name__}")
    elif not ((root / "CLAUDE.md").is_file() or (root / ".claude" / "commands").is_dir()):
        raise WorkflowError(f"workflow {shown!r} is not a workflow: it has no .ambient/ambient.json "
                            "(nor CLAUDE.md or .claude/commands/)")
    try:
        m = AmbientManifest.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}"
            for err in e.errors(include_url=False))
        raise WorkflowError(f"workflow {shown!r}: .ambient/ambient.json has invalid fields: {problems}") from None
    commands: list[Command] = []
    cmd_dir = root / ".claude" / "commands"
    if cmd_dir.is_dir():
        for f in sorted(cmd_dir.glob("*.md")):
            text = _read_text(f, f"command {f.name}")
            if text is None:
                continue
            meta, body = _frontmatter(text)
            desc = meta.get("description") or next((ln.strip("# ").strip() for ln in body.splitlines() if ln.strip()), "")
            try:
                order = float(meta.get("order", 1e9))
            except ValueError:
                order = 1e9
            commands.append(Command(name=f.stem, description=desc[:300], display_name=meta.get("displayName", ""),
                                    order=order))
        commands.sort(key=lambda c: (c.order, c.name))
    known = set(AmbientManifest.model_fields) | {"systemPrompt", "startupPrompt", "artifactsDir"}
    return Workflow(
        id=source.id,
        name=m.name or source.id,
        description=m.description or "",
        source=source,
        root=root,
        system_prompt=m.system_prompt or "",
        startup_prompt=(m.startup_prompt or "").strip() or None,
        rubric=m.rubric.model_dump(by_alias=True, exclude_none=True) if m.rubric else None,
        rubric_md=_read_text(root / ".ambient" / "rubric.md", ".ambient/rubric.md"),
        artifacts_dir=m.artifacts_dir,
        enabled=m.enabled,
        claude_md=_read_text(root / "CLAUDE.md", "CLAUDE.md"),
        commands=commands,
        extra={k: v for k, v in raw.items() if k not in known},
    )


def builtin_names() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / MANIFEST).is_file())


def named_dirs(workflow_dirs: list[str] | tuple[str, ...] = ()) -> dict[str, Path]:
    """Named workflows: the built-ins, then each sub-folder of the admin's `workflow_dirs` (later wins)."""
    out = {name: BUILTIN_DIR / name for name in builtin_names()}
    for d in workflow_dirs:
        base = Path(d).expanduser()
        if not base.is_dir():
            continue
        for p in sorted(base.iterdir()):
            if p.is_dir() and (p / MANIFEST).is_file() and _NAME_RE.match(p.name):
                out[p.name.lower()] = p
    return out


def list_workflows(workflow_dirs: list[str] | tuple[str, ...] = ()) -> list[Workflow]:
    """The named workflows a user can pick (disabled ones left out); broken ones are skipped."""
    out = []
    for name, path in named_dirs(workflow_dirs).items():
        try:
            wf = load_folder(path, WorkflowSource("builtin", name, text=name))
        except WorkflowError:
            continue
        if wf.enabled:
            out.append(wf)
    return out


@dataclass
class Loader:
    """Resolves workflow strings to folders (cloning git sources) and places them in workspaces."""

    workflow_dirs: tuple[str, ...] = ()
    allow_local: bool = True  # folder paths and local git repos on the server
    credentials: dict[str, str] = field(default_factory=dict)  # host -> token, for https clones
    clone_timeout: float = 300

    def parse(self, text: str) -> WorkflowSource:
        src = parse_source(text, set(named_dirs(self.workflow_dirs)))
        if not self.allow_local:
            remote = "://" in src.value and not src.value.startswith("file:") or bool(_SCP_RE.match(src.value))
            if src.kind == "folder" or (src.kind == "git" and not remote):
                raise WorkflowError("workflows from a path on the server are disabled here (allow_local_repos); "
                                    "use a built-in workflow or a git URL")
        return src

    def check(self, text: str) -> WorkflowSource:
        """Validate at creation: syntax always; built-ins and folders are loaded fully."""
        src = self.parse(text)
        if src.kind == "builtin":
            load_folder(named_dirs(self.workflow_dirs)[src.value], src)
        elif src.kind == "folder":
            load_folder(Path(src.value).expanduser(), src)
        return src

    async def fetch(self, src: WorkflowSource, scratch: Path) -> Workflow:
        """Load the workflow from where it lives (cloning a git source into `scratch`)."""
        if src.kind == "builtin":
            return load_folder(named_dirs(self.workflow_dirs)[src.value], src)
        if src.kind == "folder":
            return load_folder(Path(src.value).expanduser(), src)
        from ..models import RepoSpec
        from ..repos import CloneError, clone

        url = src.value.removeprefix("file://")
        dest = scratch / "repo"
        try:
            await clone(RepoSpec(url=url, branch=src.branch), dest, credentials=self.credentials,
                        allow_local=self.allow_local, timeout=self.clone_timeout)
        except CloneError as e:
            raise WorkflowError(f"could not clone workflow {src.shown!r}: {e}") from None
        root = dest / src.path if src.path else dest
        if src.path and not (root.resolve().is_relative_to(dest.resolve()) and root.is_dir()):
            raise WorkflowError(f"workflow {src.shown!r}: the repository has no folder {src.path!r}")
        return load_folder(root, src)

    async def materialize(self, text_or_src: str | WorkflowSource, workspace: Path) -> Workflow:
        """Fetch the workflow and copy it to `<workspace>/workflows/<id>`; the result points at the copy."""
        src = self.parse(text_or_src) if isinstance(text_or_src, str) else text_or_src
        workspace.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".workflow-", dir=workspace) as tmp:
            wf = await self.fetch(src, Path(tmp))
            dest = workspace / PLACED_UNDER / wf.id
            staging = Path(tmp) / "placed"
            copy_tree(wf.root, staging)
            if dest.exists():
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging), str(dest))
        if wf.artifacts_dir:
            (workspace / wf.artifacts_dir).mkdir(parents=True, exist_ok=True)
        return load_folder(dest, src)

    def load_placed(self, text: str, workspace: Path) -> Workflow | None:
        """The workflow already placed in a workspace (resume, server restart); None when absent."""
        src = self.parse(text)
        dest = workspace / PLACED_UNDER / src.id
        if not (dest / MANIFEST).is_file() and not (dest / "CLAUDE.md").is_file():
            return None
        return load_folder(dest, src)


def copy_tree(src: Path, dest: Path) -> None:
    """Copy a workflow folder: regular files and folders only (no .git, no symlinks), size-capped."""
    count = size = 0
    dest.mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel = Path(dirpath).relative_to(src)
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and not (Path(dirpath) / d).is_symlink())
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                continue
            count += 1
            size += p.stat().st_size
            if count > MAX_FILES or size > MAX_BYTES:
                raise WorkflowError(f"the workflow folder is too large (more than {MAX_FILES} files or "
                                    f"{MAX_BYTES // (1024 * 1024)} MiB); keep workflows to instructions and templates")
            shutil.copyfile(p, dest / rel / name)
