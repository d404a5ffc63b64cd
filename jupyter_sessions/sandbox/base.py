"""The one small interface every sandbox backend implements.

A sandbox only executes: commands and file reads/writes inside the session's workspace. It never
sees an API key or a git credential; the server clones repos into the workspace before the agent
runs. All methods are async; backends run blocking engine calls in a thread executor.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

#: Where the workspace appears inside every sandbox.
WORKSPACE = "/workspace"


class SandboxError(RuntimeError):
    """A sandbox operation failed; the message is meant for a person."""


class SandboxUnavailable(SandboxError):
    """The backend cannot run here (no engine, no image); the message says what to install."""


class SandboxGone(SandboxError):
    """The sandbox died or was removed from outside (container killed, OOM)."""


class PathOutsideWorkspace(SandboxError):
    """A file path resolved outside /workspace (`..`, an absolute path elsewhere, a symlink)."""


@dataclass
class ExecResult:
    exit_code: int | None
    output: str
    truncated: bool = False
    timed_out: bool = False


@dataclass
class Limits:
    """Resource limits for one sandbox (from the workspace settings)."""

    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 256
    network: bool = False
    max_file_mb: int = 1024  # largest file a command may write (RLIMIT_FSIZE): a runaway write fails clearly


@dataclass
class SandboxInfo:
    """What a backend reports about a sandbox, for events and the API."""

    backend: str
    isolated: bool
    ref: str = ""  # container id, pid group, service name...
    detail: dict = field(default_factory=dict)


class Sandbox(abc.ABC):
    """One session's execution environment."""

    backend: str = "abstract"
    isolated: bool = True

    def __init__(self, session_id: str, workspace: Path, limits: Limits):
        self.session_id = session_id
        self.workspace = workspace
        self.limits = limits

    @abc.abstractmethod
    async def start(self) -> SandboxInfo:
        """Start (or re-start after Stop) the sandbox; idempotent when already running."""

    @abc.abstractmethod
    async def exec(
        self,
        command: str,
        *,
        timeout: float = 120,
        output_cap: int = 100_000,
        cwd: str = WORKSPACE,
    ) -> ExecResult:
        """Run `command` with bash in `cwd`; kill its whole process group at the timeout."""

    @abc.abstractmethod
    async def read_file(self, path: str, *, max_bytes: int = 10_000_000) -> bytes:
        """Read a file; relative paths are under /workspace; PathOutsideWorkspace if it escapes."""

    @abc.abstractmethod
    async def write_file(self, path: str, data: bytes) -> None:
        """Write a file (creating parent folders); PathOutsideWorkspace if it escapes."""

    async def adopt(self, host_path: Path) -> None:
        """Make files the server wrote under the workspace (e.g. a clone) usable by the sandbox user."""

    @abc.abstractmethod
    async def kill_processes(self) -> None:
        """Kill every process the agent started (used by Stop and timeouts)."""

    @abc.abstractmethod
    async def is_alive(self) -> bool:
        """False when the sandbox died from outside."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the sandbox, keeping the workspace for a later start()."""

    @abc.abstractmethod
    async def remove(self) -> None:
        """Remove the sandbox and everything the backend created for it (not the host workspace)."""


class SandboxBackend(abc.ABC):
    """Creates sandboxes of one kind and finds their orphans."""

    name: str = "abstract"
    isolated: bool = True

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise SandboxUnavailable with an actionable message when this backend cannot run."""

    @abc.abstractmethod
    def sandbox(self, session_id: str, workspace: Path, limits: Limits) -> Sandbox:
        """The sandbox object for a session (not started)."""

    @abc.abstractmethod
    async def cleanup_orphans(self, live_session_ids: set[str]) -> list[str]:
        """Remove sandboxes whose session no longer exists; return what was removed."""

    async def close(self) -> None:
        """Release engine connections."""
