"""Local sandboxes: a workspace folder and host subprocesses, with no isolation.

For servers that already run inside a container (a hub's single-user pod) or hosts without Docker.
What it still guarantees: commands get a minimal environment (never the server's API keys), run in
their own process group that is killed at the timeout, and file tools cannot leave the workspace
(paths are resolved with realpath, symlinks included). What it cannot: stop a command from reading
any file the server's user can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from pathlib import Path

from .base import (
    WORKSPACE, ExecResult, Limits, Sandbox, SandboxBackend, SandboxError, SandboxGone, SandboxInfo,
    SandboxUnavailable,
)
from .paths import host_path, sandbox_cwd

GRACE = 2.0  # seconds to drain output after killing a timed-out group
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _killpg(pgid: int) -> bool:
    """SIGKILL a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


#: Environment variable naming the session in every command the local sandbox runs.
MARKER = "JUPYTER_SESSION_ID"


def _kill_marked(session_id: str) -> int:
    """SIGKILL every process whose environment carries MARKER=session_id; returns how many."""
    needle = f"{MARKER}={session_id}".encode()
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return killed


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class LocalBackend(SandboxBackend):
    """Host subprocesses. Resource limits are accepted for a uniform config but not enforced."""

    name = "local"
    isolated = False

    def __init__(self, *, memory: str = Limits.memory, cpus: float = Limits.cpus, pids: int = Limits.pids,
                 network: bool = True):
        self.limits = Limits(memory=memory, cpus=cpus, pids=pids, network=network)

    async def check(self) -> None:
        if not shutil.which("bash"):
            raise SandboxUnavailable("the local sandbox needs bash on the server's PATH (apt-get install bash)")

    def sandbox(self, session_id: str, workspace: Path, limits: Limits | None = None) -> LocalSandbox:
        return LocalSandbox(session_id, Path(workspace), limits or self.limits)

    async def cleanup_orphans(self, live_session_ids: set[str]) -> list[str]:
        return []  # processes die with the server; workspaces belong to the manager


class LocalSandbox(Sandbox):
    backend = "local"
    isolated = False

    def __init__(self, session_id: str, workspace: Path, limits: Limits):
        super().__init__(session_id, workspace, limits)
        self._groups: set[int] = set()
        self._running = False

    def env(self) -> dict[str, str]:
        """A minimal environment built from scratch, so no server secret reaches a command."""
        return {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "HOME": str(self.workspace),
                "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat", "GIT_PAGER": "cat",
                MARKER: self.session_id}

    async def start(self) -> SandboxInfo:
        await asyncio.to_thread(self.workspace.mkdir, parents=True, exist_ok=True)
        self._running = True
        return SandboxInfo(backend="local", isolated=False, ref=str(self.workspace),
                           detail={"workspace": str(self.workspace)})

    def _require_running(self) -> None:
        if not self._running:
            raise SandboxGone("the local sandbox is not running (stopped or removed)")

    async def exec(self, command: str, *, timeout: float = 120, output_cap: int = 100_000,
                   cwd: str = WORKSPACE) -> ExecResult:
        self._require_running()
        workdir = await asyncio.to_thread(sandbox_cwd, self.workspace, cwd)
        if not workdir.is_dir():
            return ExecResult(exit_code=1, output=f"no such directory: {cwd}\n")
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", f"ulimit -f {self.limits.max_file_mb * 1024}; {command}", cwd=workdir, env=self.env(),
            start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        self._groups.add(proc.pid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout if timeout and timeout > 0 else 10**9)
        out, truncated, timed_out = bytearray(), False, False
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0 and not timed_out:
                    timed_out = True
                    _killpg(proc.pid)
                    deadline = loop.time() + GRACE  # drain what the killed group wrote
                    continue
                if remaining <= 0:
                    break  # something outside the group still holds the pipe
                try:
                    chunk = await asyncio.wait_for(proc.stdout.read(65536), remaining)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                room = output_cap - len(out)
                if len(chunk) > room:
                    truncated = True
                if room > 0:
                    out += chunk[:room]
            if not timed_out:
                try:
                    await asyncio.wait_for(proc.wait(), max(0.1, deadline - loop.time()))
                except TimeoutError:  # closed its output but kept running
                    timed_out = True
        finally:
            if proc.returncode is None:  # timed out, or the caller was cancelled
                _killpg(proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 1)
            if not _group_alive(proc.pid):
                self._groups.discard(proc.pid)
            with contextlib.suppress(Exception):  # a process outside the group may still hold the pipe
                proc._transport.close()  # type: ignore[attr-defined]
        return ExecResult(exit_code=None if timed_out else proc.returncode,
                          output=out.decode("utf-8", errors="replace"), truncated=truncated, timed_out=timed_out)

    async def read_file(self, path: str, *, max_bytes: int = 10_000_000) -> bytes:
        def read() -> bytes:
            target = host_path(self.workspace, path)
            if target.is_dir():
                raise IsADirectoryError(f"{path} is a directory")
            if not target.exists():
                raise FileNotFoundError(f"no such file: {path}")
            if not target.is_file():
                raise SandboxError(f"{path} is not a regular file")
            size = target.stat().st_size
            if size > max_bytes:
                raise SandboxError(f"{path} is {size} bytes, more than the {max_bytes} byte limit")
            return target.read_bytes()

        return await asyncio.to_thread(read)

    async def write_file(self, path: str, data: bytes) -> None:
        def write() -> None:
            target = host_path(self.workspace, path)
            if target.is_dir():
                raise IsADirectoryError(f"{path} is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            host_path(self.workspace, str(target))  # the new parents must not lead outside either
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)

        await asyncio.to_thread(write)

    async def kill_processes(self) -> None:
        for pgid in list(self._groups):
            _killpg(pgid)
            self._groups.discard(pgid)
        # Processes a previous server started (it was killed) or that left their group: found by
        # the marker every command carries in its environment.
        await asyncio.to_thread(_kill_marked, self.session_id)

    async def is_alive(self) -> bool:
        return self._running and self.workspace.is_dir()

    async def stop(self) -> None:
        await self.kill_processes()
        self._running = False

    async def remove(self) -> None:
        await self.stop()

