"""Pydantic models at the API edge: what a client may send and what it gets back.

Every setting of the spec's creation table lives in `SessionSpec` with its default. Rules that need
the model catalogue (a provider's temperature range, thinking limits) are checked by
`catalogue.validate_spec`, so these models stay free of server state.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Phase(str, enum.Enum):
    """Where a session is in its life (the spec's phase machine)."""

    pending = "Pending"
    creating = "Creating"
    running = "Running"
    stopping = "Stopping"
    stopped = "Stopped"
    completed = "Completed"
    failed = "Failed"


#: Phases a session can leave only through Resume (or Delete).
RESTING_PHASES = {Phase.stopped, Phase.completed, Phase.failed}


class AgentState(str, enum.Enum):
    """What the agent is doing while the session is Running."""

    working = "working"
    idle = "idle"
    waiting_input = "waiting_input"


class StrictModel(BaseModel):
    """Base for request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/@+-]{1,200}$")


class RepoSpec(StrictModel):
    """A git repository to clone into the workspace: a URL or a local path, and a branch."""

    url: str = Field(min_length=1, max_length=2000, description="git URL or a local path on the server")
    branch: str | None = Field(default=None, description="branch to check out; the remote's default when empty")
    name: str | None = Field(
        default=None, description="folder under /workspace/repos; derived from the URL when empty"
    )

    @field_validator("url")
    @classmethod
    def _no_option_injection(cls, v: str) -> str:
        if v.startswith("-"):
            raise ValueError("a repository URL cannot start with '-'")
        if any(c in v for c in "\n\r\0"):
            raise ValueError("a repository URL cannot contain control characters")
        return v

    @field_validator("branch")
    @classmethod
    def _branch_shape(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if v.startswith("-") or ".." in v or not _BRANCH_RE.match(v):
            raise ValueError("not a valid branch name (letters, digits, . _ / @ + - and no '..')")
        return v

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", v) or v in (".", ".."):
            raise ValueError("a repo folder name uses letters, digits, '.', '_' and '-' only")
        return v

    def folder(self) -> str:
        """The folder name under /workspace/repos."""
        if self.name:
            return self.name
        tail = self.url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        tail = tail[:-4] if tail.endswith(".git") else tail
        tail = re.sub(r"[^A-Za-z0-9._-]", "-", tail).strip(".-") or "repo"
        return tail[:100]


class ThinkingSpec(StrictModel):
    """Extended thinking: a token budget (Claude needs >= 1024 and < max_tokens)."""

    enabled: bool = True
    budget_tokens: int = Field(default=2048, ge=1, le=1_000_000)


class SessionSpec(StrictModel):
    """The settings a session is created with (the spec's creation table)."""

    display_name: str | None = Field(
        default=None, max_length=100, description="auto-generated from the first message when empty"
    )
    model: str = Field(default="claude-sonnet-4-5", min_length=1, max_length=100)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=4000, gt=0, le=1_000_000)
    timeout: int = Field(default=300, ge=0, description="seconds of agent working time; 0 = none")
    inactivity_timeout: int | None = Field(
        default=None, ge=0, description="idle seconds before auto-stop; null = workspace setting, then 24 h; 0 = never"
    )
    thinking: ThinkingSpec | None = Field(
        default=None, description="extended thinking; null = the model's default (off for Claude, on for Gemini 2.5)"
    )
    repos: list[RepoSpec] = Field(default_factory=list, max_length=20)
    workflow: str | None = Field(default=None, max_length=2000)
    initial_prompt: str | None = Field(default=None, max_length=200_000)
    complete_when_done: bool = Field(
        default=False, description="one-shot: the session completes when the agent finishes its first run"
    )
    workspace: str = Field(default="default", max_length=100)

    @field_validator("display_name")
    @classmethod
    def _empty_name_is_none(cls, v: str | None) -> str | None:
        return v or None

    @model_validator(mode="after")
    def _unique_repo_folders(self) -> "SessionSpec":
        folders = [r.folder() for r in self.repos]
        dupes = {f for f in folders if folders.count(f) > 1}
        if dupes:
            raise ValueError(f"two repos would share the folder {sorted(dupes)[0]!r}; give one a 'name'")
        return self


class SessionPatch(StrictModel):
    """What may change after creation through PATCH."""

    display_name: str = Field(min_length=1, max_length=100)


class MessageIn(StrictModel):
    """A user message to the agent."""

    text: str = Field(min_length=1, max_length=200_000)


class Session(BaseModel):
    """A session as the API returns it."""

    id: str
    display_name: str
    phase: Phase
    agent_state: AgentState | None = None
    spec: SessionSpec
    owner: str
    sandbox: str = Field(description="sandbox backend: docker, local, ...")
    isolated: bool = Field(description="false for the local backend: tools run on the server host")
    created: datetime
    started: datetime | None = None
    stopped: datetime | None = None
    reason: str | None = Field(default=None, description="why the session stopped or failed")
    last_seq: int = 0


class SessionList(BaseModel):
    sessions: list[Session]


class SessionChange(BaseModel):
    """One message of the sessions watch: the caller's whole list first, then each change."""

    type: Literal["snapshot", "changed", "deleted"]
    sessions: list[Session] | None = Field(default=None, description="snapshot: every session, newest first")
    session: Session | None = Field(default=None, description="changed: the session as GET /sessions/{id} shows it")
    id: str | None = Field(default=None, description="deleted: the id of the session that is gone")


class Event(BaseModel):
    """One entry of a session's append-only event log."""

    seq: int
    type: str
    ts: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class EventList(BaseModel):
    events: list[Event]
    last_seq: int


class ModelInfo(BaseModel):
    id: str
    label: str
    provider: Literal["anthropic", "gemini", "replay"]
    default: bool = False
    gated: bool = False
    max_temperature: float
    max_output_tokens: int
    thinking_default: bool = False


class ModelList(BaseModel):
    models: list[ModelInfo]
    default_model: str


class ErrorBody(BaseModel):
    error: str
    detail: Any = None


class MessageAccepted(BaseModel):
    message_id: str
    status: Literal["queued"] = "queued"


class AnswerIn(StrictModel):
    """Answers to a pending ask_user_question call: one per question, in order.

    An answer is a string (free text, a single option's label, or an Other text) or a list of
    labels for a multi-select question.
    """

    tool_call_id: str = Field(min_length=1, max_length=200)
    answers: list[str | list[str]] = Field(min_length=1, max_length=4)
