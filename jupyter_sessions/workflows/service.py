"""Applying workflows to sessions: at provisioning, on resume, and when attached later.

The session's `spec.workflow` (the normalized workflow string) is the truth; the workflow's files
live in the workspace at `/workspace/workflows/<id>`, so a resumed or recovered session reloads its
workflow from there without cloning again. Attaching is allowed in every phase but Stopping: while
Running it takes effect at once (new system prompt from the next model step, then the startup
prompt as a message); before that, or while stopped, it is applied when the agent next starts.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..catalogue import SpecError
from ..lifecycle import Conflict
from ..models import Phase, SessionSpec
from . import WORKFLOW_ATTACHED, WORKFLOW_FAILED
from .loader import PLACED_UNDER, Loader, Workflow, WorkflowError, WorkflowSource

if TYPE_CHECKING:  # pragma: no cover
    from ..manager import SessionManager

SOURCE_MARK = ".jupyter-sessions-source"  # in a placed workflow folder: the source it came from


class SessionWorkflows:
    """The manager's helper for workflows (one per SessionManager)."""

    def __init__(self, manager: SessionManager):
        self.m = manager
        cfg = manager.config
        self.loader = Loader(allow_local=cfg.allow_local_repos, credentials=dict(cfg.git_credentials),
                             clone_timeout=cfg.clone_timeout)
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, sid: str) -> asyncio.Lock:
        return self._locks.setdefault(sid, asyncio.Lock())

    # validation ---------------------------------------------------------------------------------
    def parse(self, text: str) -> WorkflowSource:
        """Parse and (for built-ins and folders) load; SpecError(422) says what is wrong."""
        try:
            src = self.loader.check(text)
        except WorkflowError as e:
            raise SpecError("workflow", str(e)) from None
        if src.kind == "git":
            parts = urlsplit(src.value) if "://" in src.value else None
            if parts is not None and parts.password:
                raise SpecError("workflow", "do not put a token in the workflow URL; the server's admin sets "
                                "git credentials per host (c.SessionsApp.git_credentials)")
        return src

    def normalize(self, text: str | None) -> str | None:
        """The string stored in the spec (built-in aliases resolved), validated."""
        if text is None or not text.strip():
            return None
        return self.parse(text).text

    # at agent start -----------------------------------------------------------------------------
    async def prepare(self, sid: str, sandbox, *, fresh: bool) -> tuple[Workflow | None, bool]:
        """The session's workflow for a starting agent: (workflow, newly attached).

        fresh (first provisioning): fetch and place it. Otherwise reload the placed copy, and fetch
        it only when the copy is missing or from another source (attached while stopped).
        A failure is a WORKFLOW_FAILED event; the session runs without the workflow.
        """
        async with self._lock(sid):
            row = await self.m.store.get_session(sid)
            text = (row.spec or {}).get("workflow") if row is not None else None
            if not text:
                return None, False
            workspace = self.m.workspace_path(sid)
            if not fresh:
                wf = await asyncio.to_thread(self._load_placed, text, workspace)
                if wf is not None:
                    return wf, False
            try:
                wf = await self._place(sid, text, sandbox)
            except WorkflowError as e:
                await self.m.events.append(sid, WORKFLOW_FAILED, {"source": _shown(text), "error": str(e)})
                return None, False
            await self.m.events.append(sid, WORKFLOW_ATTACHED, wf.event_data())
            return wf, True

    def _load_placed(self, text: str, workspace: Path) -> Workflow | None:
        try:
            src = self.loader.parse(text)
            mark = workspace / PLACED_UNDER / src.id / SOURCE_MARK
            if not mark.is_file() or mark.read_text().strip() != src.text:
                return None
            return self.loader.load_placed(text, workspace)
        except (WorkflowError, OSError):
            return None

    async def _place(self, sid: str, text: str | WorkflowSource, sandbox) -> Workflow:
        workspace = self.m.workspace_path(sid)
        wf = await self.loader.materialize(text, workspace)
        (wf.root / SOURCE_MARK).write_text(wf.source.text + "\n")
        if sandbox is not None:
            await sandbox.adopt(wf.root)
            if wf.artifacts_dir:
                await sandbox.adopt(workspace / wf.artifacts_dir.split("/", 1)[0])
        return wf

    async def send_startup(self, sid: str, wf: Workflow) -> None:
        """The workflow's startupPrompt as a user message marked `workflow_startup` (UIs may fold it)."""
        if wf.startup_prompt:
            await self.m.post_message(sid, wf.startup_prompt, workflow_startup=wf.id)

    # attach -------------------------------------------------------------------------------------
    async def attach(self, sid: str, text: str) -> Workflow | None:
        """Select a workflow for a session; returns the workflow when it took effect at once (Running)."""
        src = self.parse(text)
        row = await self.m.get(sid)
        _check_phase(row.phase)
        if not self._agent_running(sid, row.phase):
            async with self._lock(sid):
                row = await self.m.get(sid)
                _check_phase(row.phase)
                if not self._agent_running(sid, row.phase):
                    spec = SessionSpec.model_validate(row.spec)
                    spec.workflow = src.text
                    await self.m.store.update_session(sid, spec=spec.model_dump(mode="json"))
                    self.m.events.touch(sid)
                    return None  # applied when the agent starts (prepare)
        async with self.m._lock(sid), self._lock(sid):
            wf = await self._attach_running(sid, src)
        await self.send_startup(sid, wf)
        return wf

    def _agent_running(self, sid: str, phase: str) -> bool:
        rt = self.m._runtimes.get(sid)
        return phase == Phase.running.value and rt is not None and rt.agent is not None

    async def _attach_running(self, sid: str, src: WorkflowSource) -> Workflow:
        row = await self.m.get(sid)
        _check_phase(row.phase)
        rt = self.m._runtimes.get(sid)
        if row.phase != Phase.running.value or rt is None or rt.agent is None:
            raise Conflict(f"cannot attach a workflow: the session is {row.phase}; try again")
        try:
            wf = await self._place(sid, src, rt.sandbox)
        except WorkflowError as e:
            raise SpecError("workflow", str(e)) from None
        spec = SessionSpec.model_validate(row.spec)
        spec.workflow = src.text
        await self.m.events.append(sid, WORKFLOW_ATTACHED, {**wf.event_data(), "while_running": True},
                                   spec=spec.model_dump(mode="json"))
        ctx = rt.agent.ctx
        ctx.system_prompt = wf.prompt_section()
        ctx.workflow = wf
        ctx.spec.workflow = src.text
        return wf


def _check_phase(phase: str) -> None:
    if phase == Phase.stopping.value:
        raise Conflict("cannot attach a workflow: the session is Stopping; wait until it is Stopped, "
                       "then attach it (it applies on resume)")


def _shown(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme and "@" in parts.netloc:
        return text.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)
    return text
