"""The SessionManager owns sessions: phases, sandboxes, repos, agents and recovery.

Handlers stay thin and call into this. Every phase change is an event committed before it is
broadcast; the manager keeps only runtime objects (sandbox, agent) in memory, so a restarted server
rebuilds everything else from the store.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Any

from pydantic import BaseModel, ConfigDict, Field

from . import events as ev
from .agent.context import AgentContext, ProviderSettings
from .catalogue import Catalogue, SpecError
from .events import EventLog
from .models import (
    RESTING_PHASES,
    AgentState,
    Phase,
    RepoSpec,
    Session,
    SessionSpec,
)
from .capacity import Capacity
from .lifecycle import Conflict, check
from .repos import CloneError, clone, repo_host, strip_userinfo
from .sandbox.base import Limits, Sandbox, SandboxBackend, SandboxError, SandboxUnavailable
from .store import SessionRow, Store, utcnow
from .workflows.service import SessionWorkflows
from .workspaces import WorkspaceAccess

DAY = 24 * 3600


class WorkspaceSettings(BaseModel):
    """A named scope of settings (feature flags, defaults, limits); unknown keys are a config error."""

    model_config = ConfigDict(extra="forbid")

    name: str
    inactivity_timeout: int = Field(default=DAY, ge=0)
    features: list[str] = Field(default_factory=list)
    default_model: str | None = None
    max_sandboxes: int = Field(default=0, ge=0, description="concurrent sandboxes in this workspace; 0 = no limit")
    groups: list[str] = Field(default_factory=list, description="JupyterHub groups whose members may use it; "
                              "empty = everyone (see workspaces.py)")
    allowed_repo_hosts: list[str] = Field(
        default_factory=list, description="hosts repos may be cloned from (e.g. github.com); 'local' allows server "
        "paths; empty = any")

    def check_repo(self, repo: RepoSpec, field_name: str = "repos") -> None:
        """SpecError (403) when this workspace does not allow cloning from the repo's host."""
        if not self.allowed_repo_hosts:
            return
        host = repo_host(repo.url)
        if host not in self.allowed_repo_hosts:
            allowed = ", ".join(self.allowed_repo_hosts)
            raise SpecError(field_name, f"workspace {self.name!r} allows repos only from: {allowed} (not {host})", 403)


@dataclass
class ManagerConfig:
    sandbox: str = "auto"
    workspaces_dir: Path = Path("workspaces")
    docker_image: str | None = None
    docker_url: str | None = None
    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 256
    network: bool = False
    max_file_mb: int = 1024
    backend_options: dict[str, dict] = field(default_factory=dict)  # per backend: swarm, kubernetes
    allow_local_repos: bool = True
    git_credentials: dict[str, str] = field(default_factory=dict)
    clone_timeout: int = 300
    per_user_sessions: bool = False
    watch_interval: float = 5.0  # seconds between sandbox liveness / inactivity checks
    max_sandboxes_per_user: int = 0  # 0 = no limit

    def limits(self) -> Limits:
        return Limits(memory=self.memory, cpus=self.cpus, pids=self.pids, network=self.network,
                      max_file_mb=self.max_file_mb)


class SessionNotFound(KeyError):
    pass


@dataclass
class Runtime:
    """In-memory parts of a live session."""

    sandbox: Sandbox | None = None
    agent: Any = None
    posted: set[str] = field(default_factory=set)  # message ids handed to the agent
    watchdog: asyncio.Task | None = None
    last_activity: float = field(default_factory=time.monotonic)


def new_session_id() -> str:
    return "s-" + secrets.token_hex(6)


def to_session(row: SessionRow) -> Session:
    return Session(
        id=row.id,
        display_name=row.display_name,
        phase=Phase(row.phase),
        agent_state=AgentState(row.agent_state) if row.agent_state else None,
        spec=SessionSpec.model_validate(row.spec),
        owner=row.owner,
        sandbox=row.sandbox,
        isolated=bool(row.isolated),
        created=row.created,
        started=row.started,
        stopped=row.stopped,
        reason=row.reason,
        last_seq=row.last_seq,
    )


class SessionManager:
    def __init__(
        self,
        *,
        config: ManagerConfig,
        store: Store,
        events: EventLog,
        catalogue: Catalogue,
        workspaces: dict[str, WorkspaceSettings],
        providers: ProviderSettings,
        log: logging.Logger | None = None,
    ):
        self.config = config
        self.store = store
        self.events = events
        self.catalogue = catalogue
        self.workspaces = workspaces
        self.providers = providers
        self.log = log or logging.getLogger("jupyter_sessions")
        self._runtimes: dict[str, Runtime] = {}
        self._backends: dict[str, SandboxBackend] = {}
        self._started: asyncio.Task | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._provisioning: dict[str, asyncio.Task] = {}
        #: hooks: (session id, seq to follow from) before an agent starts; and after start-up
        self.on_agent_start: list[Callable[[str, int], Any]] = []
        self.on_started: list[Callable[[], Any]] = []
        self.capacity = Capacity(config.max_sandboxes_per_user,
                                 {name: w.max_sandboxes for name, w in workspaces.items()})
        self.per_user = config.per_user_sessions
        self.access = WorkspaceAccess(workspaces)  # the app adds hub groups on JupyterHub
        self.workflows = SessionWorkflows(self)
        self.server_owner = os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
        # Labels this server's sandboxes so orphan clean-up never touches another server's.
        self.instance = hashlib.sha256(str(config.workspaces_dir.resolve()).encode()).hexdigest()[:12]

    # start-up and shutdown -------------------------------------------------------------------
    async def ensure_started(self) -> None:
        """Migrate the store, recover sessions a previous server left, clean orphans (once)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await self.store.migrate()
        self.config.workspaces_dir.mkdir(parents=True, exist_ok=True)
        rows = await self.store.list_sessions()
        live = {r.id for r in rows}
        await self._remove_orphans(live, {r.sandbox for r in rows})
        # Running sandboxes exist already: count them before anything queued may take their slots.
        for row in rows:
            if row.phase == Phase.running.value:
                self.capacity.reserve(row.id, row.owner, SessionSpec.model_validate(row.spec).workspace)
        order = [Phase.stopping, Phase.running, Phase.creating, Phase.pending]
        for phase in order:
            for row in sorted((r for r in rows if r.phase == phase.value), key=lambda r: r.created):
                self._spawn(self._recover(row.id, phase))
        for hook in self.on_started:
            hook()

    async def _remove_orphans(self, live: set[str], backends: set[str]) -> None:
        """Sandboxes and workspaces whose session is gone (a crash mid-delete, a wiped database)."""
        if self.config.sandbox in ("docker", "auto"):
            backends = backends | {"docker"}
        elif self.config.sandbox != "local":
            backends = backends | {self.config.sandbox}
        for name in backends:
            try:
                backend = await self._backend(name)
                removed = await backend.cleanup_orphans(live)
                if removed:
                    self.log.info("jupyter-sessions removed orphan %s sandboxes: %s", name, removed)
            except Exception as e:  # an engine that is down now must not stop the server
                self.log.warning("jupyter-sessions could not check %s sandboxes: %s", name, e)
        for path in self.config.workspaces_dir.iterdir():
            if path.is_dir() and path.name not in live:
                self.log.info("jupyter-sessions removed orphan workspace %s", path)
                await asyncio.to_thread(shutil.rmtree, path, True)

    async def shutdown(self) -> None:
        """Server exit: stop agents, leave sandboxes and phases for the next start to recover."""
        for task in list(self._tasks):
            task.cancel()
        for rt in list(self._runtimes.values()):
            if rt.agent is not None and hasattr(rt.agent, "close"):
                try:
                    await asyncio.wait_for(rt.agent.close(), 5)
                except Exception:
                    pass
        for backend in self._backends.values():
            await backend.close()
        await self.store.close()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _lock(self, sid: str) -> asyncio.Lock:
        return self._locks.setdefault(sid, asyncio.Lock())

    # backends -------------------------------------------------------------------------------
    async def _backend(self, name: str) -> SandboxBackend:
        if name not in self._backends:
            from .sandbox import make_backend

            kwargs: dict[str, Any] = {}
            if name != "local":  # make_backend drops what a backend does not take
                kwargs = {"image": self.config.docker_image, "docker_url": self.config.docker_url,
                          "memory": self.config.memory, "cpus": self.config.cpus, "pids": self.config.pids,
                          "network": self.config.network, "max_file_mb": self.config.max_file_mb,
                          "instance": self.instance, **self.config.backend_options.get(name, {})}
            self._backends[name] = make_backend(name, **kwargs)
        return self._backends[name]

    async def choose_backend(self) -> tuple[str, SandboxBackend]:
        """The backend new sessions use; `auto` prefers docker when an engine answers."""
        if self.config.sandbox == "auto":
            docker = await self._backend("docker")
            try:
                await docker.check()
                return "docker", docker
            except SandboxUnavailable:
                return "local", await self._backend("local")
        backend = await self._backend(self.config.sandbox)
        return self.config.sandbox, backend

    # queries --------------------------------------------------------------------------------
    async def get(self, sid: str, owner: str | None = None) -> SessionRow:
        row = await self.store.get_session(sid)
        if row is None or (owner is not None and row.owner != owner):
            raise SessionNotFound(sid)
        return row

    async def list(self, owner: str | None = None) -> list[SessionRow]:
        return await self.store.list_sessions(owner)

    def workspace_of(self, spec: SessionSpec) -> WorkspaceSettings:
        return self.workspaces.get(spec.workspace) or self.workspaces["default"]

    def workspace_path(self, sid: str) -> Path:
        return self.config.workspaces_dir / sid

    def inactivity_timeout(self, spec: SessionSpec) -> int:
        """The session's own value, then its workspace's, then 24 h."""
        if spec.inactivity_timeout is not None:
            return spec.inactivity_timeout
        return self.workspace_of(spec).inactivity_timeout

    # create ---------------------------------------------------------------------------------
    async def create(self, spec: SessionSpec, owner: str) -> SessionRow:
        """Validate, store as Pending, and provision in the background."""
        # no workspace named: the owner's primary one (group-granted on JupyterHub); no model: its default
        space = await self.access.resolve(spec.workspace if "workspace" in spec.model_fields_set else None)
        updates: dict[str, Any] = {"workspace": space.name, "workflow": self.workflows.normalize(spec.workflow)}
        if "model" not in spec.model_fields_set:
            updates["model"] = space.default_model or self.catalogue.default_model
        spec = spec.model_copy(update=updates)
        self.catalogue.validate_spec(spec, set(space.features))
        for i, repo in enumerate(spec.repos):
            space.check_repo(repo, f"repos.{i}.url")
        if self.config.sandbox != "auto":
            backend = await self._backend(self.config.sandbox)
            await backend.check()  # SandboxUnavailable -> clear 503 before anything is stored
            name = self.config.sandbox
        else:
            name, backend = await self.choose_backend()
        sid = new_session_id()
        auto_name = spec.display_name is None
        display = spec.display_name or (
            _name_from_text(spec.initial_prompt) if spec.initial_prompt else f"Session {sid[2:8]}"
        )
        row = SessionRow(
            id=sid, owner=owner, display_name=display, phase=Phase.pending.value, agent_state=None,
            spec=spec.model_dump(mode="json"), sandbox=name, isolated=int(backend.isolated),
            created=utcnow(), last_seq=0, state={"auto_name": auto_name and not spec.initial_prompt},
        )
        await self.store.insert_session(row)
        await self._phase(sid, Phase.pending, "session created")
        self._start_provisioning(sid, first=True)
        return await self.get(sid)

    async def clone(self, sid: str, owner: str) -> SessionRow:
        """A new session with the same configuration, repos and workflow; no chat history."""
        row = await self.get(sid)
        spec = SessionSpec.model_validate(row.spec)
        copy = spec.model_copy(update={
            "display_name": _copy_name(row.display_name), "initial_prompt": None, "complete_when_done": False})
        new = await self.create(copy, owner)
        await self.events.append(new.id, "SESSION_CLONED", {"source": sid})
        return new

    async def _phase(self, sid: str, phase: Phase, reason: str, **values: Any) -> None:
        now = utcnow()
        if phase is Phase.running:
            values.setdefault("started", now)
        if phase in RESTING_PHASES:
            values.setdefault("stopped", now)
            values.setdefault("agent_state", None)
        if phase in (Phase.stopped, Phase.failed, Phase.completed):
            values.setdefault("reason", reason)
        elif phase in (Phase.pending, Phase.creating, Phase.running):
            values.setdefault("reason", None)
        await self.events.append(sid, ev.PHASE_CHANGED, {"phase": phase.value, "reason": reason},
                                 phase=phase.value, **values)

    def _start_provisioning(self, sid: str, *, first: bool) -> None:
        task = self._spawn(self._provision(sid, first=first))
        self._provisioning[sid] = task
        task.add_done_callback(lambda t: self._provisioning.pop(sid, None) if self._provisioning.get(sid) is t else None)

    async def _provision(self, sid: str, *, first: bool) -> None:
        """Creating: workspace, clones (first time only), sandbox start, agent start -> Running.

        Cancellable: Stop and Delete cancel it and clean up after it.
        """
        async with self._lock(sid):
            row = await self.store.get_session(sid)
            if row is None:
                return
            spec = SessionSpec.model_validate(row.spec)
            await self.capacity.acquire(sid, row.owner, spec.workspace, lambda why: self._waiting(sid, why))
            try:
                if not await self._provision_locked(sid, row, spec, first=first):
                    await self.capacity.release(sid)
            except BaseException:
                await self.capacity.release(sid)
                raise

    async def _waiting(self, sid: str, reason: str) -> None:
        await self.events.append(sid, "CAPACITY_WAIT", {"reason": reason}, reason=reason)

    async def _provision_locked(self, sid: str, row: SessionRow, spec: SessionSpec, *, first: bool) -> bool:
        """The body of _provision, holding the session lock and a capacity slot; True = Running."""
        if row.phase != Phase.creating.value:
            await self._phase(sid, Phase.creating, "provisioning the sandbox" if first else "resuming")
        workspace = self.workspace_path(sid)
        workspace.mkdir(parents=True, exist_ok=True)
        try:
            backend = await self._backend(row.sandbox)
            await backend.check()
        except SandboxError as e:
            await self._phase(sid, Phase.failed, f"sandbox unavailable: {e}")
            return False
        if not backend.isolated and first:
            await self.events.append(sid, ev.SANDBOX_WARNING, {
                "message": "local sandbox: the agent's tools run on the server host without isolation"})
        if first:
            for repo in spec.repos:
                await self._clone(sid, repo)
        sandbox = backend.sandbox(sid, workspace, self.config.limits())
        rt = self._runtimes[sid] = Runtime(sandbox=sandbox)
        if not await self._start_sandbox(sid, rt):
            return False
        await self._phase(sid, Phase.running, "sandbox ready")
        await self._start_agent(sid, rt, spec, initial=first)
        return True

    async def _start_sandbox(self, sid: str, rt: Runtime) -> bool:
        """Start (or re-attach to) the sandbox; on failure the session is Failed with the cause."""
        try:
            info = await rt.sandbox.start()
            await rt.sandbox.adopt(self.workspace_path(sid))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # engine errors of any shape end in a true phase
            if not isinstance(e, SandboxError):
                self.log.exception("sandbox start failed for %s", sid)
            self._runtimes.pop(sid, None)
            await self._phase(sid, Phase.failed, f"sandbox could not start: {e}")
            return False
        await self.events.append(sid, ev.SANDBOX_STARTED, {
            "backend": info.backend, "isolated": info.isolated, "ref": info.ref})
        rt.watchdog = self._spawn(self._watch(sid, rt))
        return True

    async def _clone(self, sid: str, repo: RepoSpec) -> bool:
        dest = self.workspace_path(sid) / "repos" / repo.folder()
        shown = strip_userinfo(repo.url)
        try:
            result = await clone(repo, dest, credentials=self.config.git_credentials,
                                 allow_local=self.config.allow_local_repos, timeout=self.config.clone_timeout)
        except CloneError as e:
            await self.events.append(sid, ev.REPO_CLONE_FAILED, {
                "url": shown, "branch": repo.branch, "error": str(e)})
            return False
        await self.events.append(sid, ev.REPO_CLONED, {
            "url": shown, "branch": result.branch, "commit": result.commit,
            "path": f"/workspace/repos/{dest.name}"})
        return True

    # agent ----------------------------------------------------------------------------------
    async def _start_agent(self, sid: str, rt: Runtime, spec: SessionSpec, *, initial: bool) -> None:
        try:
            from .agent.loop import Agent
        except ImportError:  # the engine is optional in a partial install
            await self.events.append(sid, ev.AGENT_STATE_CHANGED, {"state": "idle"}, agent_state="idle")
            return
        last_seq = (await self.get(sid)).last_seq
        for hook in self.on_agent_start:  # e.g. tracing follows the log from here
            hook(sid, last_seq)
        info = self.catalogue.get(spec.model)
        workflow, attached = await self.workflows.prepare(sid, rt.sandbox, fresh=initial)
        ctx = AgentContext(
            session_id=sid, spec=spec, model=info, thinking=self.catalogue.effective_thinking(spec),
            sandbox=rt.sandbox, events=self.events, store=self.store,
            providers=self.catalogue.provider_settings(spec.model, self.providers),
            request_stop=lambda reason: self._request_stop(sid, reason),
            on_run_finished=lambda: self._run_finished(sid),
            system_prompt=workflow.prompt_section() if workflow else None, workflow=workflow,
        )
        rt.agent = Agent(ctx)
        await rt.agent.start()
        for message_id, text in await self._undelivered(sid):  # sent while no agent was listening
            if message_id not in rt.posted:
                rt.posted.add(message_id)
                rt.agent.post_message(text, message_id)
        if workflow is not None and attached:
            await self.workflows.send_startup(sid, workflow)
        if initial and spec.initial_prompt:
            await self.post_message(sid, spec.initial_prompt)

    async def _request_stop(self, sid: str, reason: str) -> None:
        self._spawn(self.stop(sid, reason=reason))

    async def _run_finished(self, sid: str) -> None:
        rt = self._runtimes.get(sid)
        if rt is not None:
            rt.last_activity = time.monotonic()
        row = await self.store.get_session(sid)
        if row is not None and SessionSpec.model_validate(row.spec).complete_when_done:
            self._spawn(self.stop(sid, reason="the agent finished its work", final=Phase.completed))

    async def post_message(self, sid: str, text: str, **meta: Any) -> str:
        """meta: extra USER_MESSAGE fields, e.g. workflow_startup=<id> for a workflow's startup prompt."""
        row = await self.get(sid)
        check("message", row.phase)
        message_id = "m-" + secrets.token_hex(6)
        await self.events.append(sid, "USER_MESSAGE", {"message_id": message_id, "text": text, "status": "queued",
                                                       **meta})
        rt = self._runtimes.get(sid)
        if rt is not None:
            rt.last_activity = time.monotonic()
        if rt is not None and rt.agent is not None:
            rt.posted.add(message_id)
            rt.agent.post_message(text, message_id)
        # else: the USER_MESSAGE event is the queue; _start_agent delivers it
        return message_id

    async def _undelivered(self, sid: str) -> list[tuple[str, str]]:
        """USER_MESSAGEs without a MESSAGE_DELIVERED, in order: the event log is the queue."""
        pending: dict[str, str] = {}
        after = 0
        while batch := await self.events.replay(sid, after):
            for e in batch:
                if e.type == "USER_MESSAGE":
                    pending[e.data["message_id"]] = e.data["text"]
                elif e.type == "MESSAGE_DELIVERED":
                    pending.pop(e.data.get("message_id"), None)
            after = batch[-1].seq
        return list(pending.items())

    async def answer(self, sid: str, tool_call_id: str, answers: list) -> None:
        row = await self.get(sid)
        check("answer", row.phase)
        rt = self._runtimes.get(sid)
        if rt is None or rt.agent is None:
            raise Conflict("the agent is still starting; try again in a moment")
        rt.last_activity = time.monotonic()
        await rt.agent.answer(tool_call_id, answers)

    # watchdog -------------------------------------------------------------------------------
    async def _watch(self, sid: str, rt: Runtime) -> None:
        """While Running: notice a dead sandbox (-> Failed) and inactivity (-> Stopped)."""
        while True:
            await asyncio.sleep(self.config.watch_interval)
            if self._runtimes.get(sid) is not rt:
                return
            try:
                alive = await rt.sandbox.is_alive()
            except Exception as e:  # the engine itself is unreachable
                alive, cause = False, f"the sandbox engine is unreachable: {e}"
            else:
                cause = "the sandbox stopped unexpectedly (killed from outside or out of memory)"
            if not alive:
                cause = await self._death_cause(rt, cause)
                self._spawn(self.stop(sid, reason=cause, final=Phase.failed))
                return
            row = await self.store.get_session(sid)
            if row is None or row.phase != Phase.running.value:
                continue
            if row.agent_state == AgentState.working.value:
                rt.last_activity = time.monotonic()
                continue
            limit = self.inactivity_timeout(SessionSpec.model_validate(row.spec))
            if limit and time.monotonic() - rt.last_activity > limit:
                self._spawn(self.stop(sid, reason=f"inactivity: idle for more than {limit} s"))
                return

    async def _death_cause(self, rt: Runtime, default: str) -> str:
        explain = getattr(rt.sandbox, "death_cause", None)
        if explain is None:
            return default
        try:
            return await explain() or default
        except Exception:
            return default

    # operations -----------------------------------------------------------------------------
    async def rename(self, sid: str, name: str) -> None:
        row = await self.get(sid)
        await self.events.append(sid, ev.SESSION_RENAMED, {"display_name": name}, display_name=name,
                                 state={**row.state, "auto_name": False})

    async def add_repo(self, sid: str, repo: RepoSpec) -> bool:
        row = await self.get(sid)
        check("add_repo", row.phase)
        spec = SessionSpec.model_validate(row.spec)
        self.workspace_of(spec).check_repo(repo, "url")
        if repo.folder() in {r.folder() for r in spec.repos}:
            raise SpecError("name", f"the session already has a repo in repos/{repo.folder()}; give this one a 'name'", 409)
        async with self._lock(sid):
            row = await self.get(sid)
            check("add_repo", row.phase)
            spec = SessionSpec.model_validate(row.spec)
            spec.repos.append(repo)
            await self.store.update_session(sid, spec=spec.model_dump(mode="json"))
            self.events.touch(sid)
            ok = await self._clone(sid, repo)
            rt = self._runtimes.get(sid)
            if ok and rt and rt.sandbox:
                await rt.sandbox.adopt(self.workspace_path(sid) / "repos" / repo.folder())
            return ok

    async def stop(self, sid: str, *, reason: str = "stopped by the user", final: Phase = Phase.stopped) -> None:
        """Active -> Stopping -> Stopped (or Completed/Failed); cancels provisioning if under way."""
        row = await self.get(sid)
        if row.phase == Phase.stopping.value:
            raise Conflict("cannot stop: the session is already Stopping")
        check("stop", row.phase)
        await self._cancel_provisioning(sid)
        async with self._lock(sid):
            row = await self.get(sid)
            if row.phase not in {p.value for p in (Phase.pending, Phase.creating, Phase.running)}:
                return  # someone else finished it while we waited
            await self._phase(sid, Phase.stopping, reason)
            rt = self._runtimes.pop(sid, None)
            await self._teardown(sid, rt, reason)
            await self._phase(sid, final, reason)

    async def _cancel_provisioning(self, sid: str) -> None:
        task = self._provisioning.pop(sid, None)
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def _teardown(self, sid: str, rt: Runtime | None, reason: str) -> None:
        """Stop the agent (repairing dangling tool calls), kill sandbox processes, stop the sandbox."""
        if rt is None:  # provisioning was cancelled before the runtime existed, or a restart
            row = await self.store.get_session(sid)
            if row is None:
                return
            backend = await self._backend(row.sandbox)
            rt = Runtime(sandbox=backend.sandbox(sid, self.workspace_path(sid), self.config.limits()))
        if rt.watchdog is not None and rt.watchdog is not asyncio.current_task():
            rt.watchdog.cancel()
        if rt.agent is not None:
            try:
                await asyncio.wait_for(rt.agent.shutdown(reason), 30)
            except Exception:
                self.log.exception("agent shutdown failed")
        if rt.sandbox is not None:
            for step in (rt.sandbox.kill_processes, rt.sandbox.stop):
                try:
                    await step()
                except Exception as e:  # gone already: nothing left to stop
                    self.log.debug("sandbox %s of %s: %s", step.__name__, sid, e)
        await self.capacity.release(sid)

    async def resume(self, sid: str) -> SessionRow:
        """Stopped/Completed/Failed -> Creating -> Running with history and workspace."""
        async with self._lock(sid):
            row = await self.get(sid)
            check("resume", row.phase)
            await self._phase(sid, Phase.pending, "resume requested")
        self._start_provisioning(sid, first=False)
        return await self.get(sid)

    async def delete(self, sid: str) -> None:
        """Stop if needed, then remove the sandbox, the workspace and every row."""
        row = await self.get(sid)
        await self._cancel_provisioning(sid)
        async with self._lock(sid):
            rt = self._runtimes.pop(sid, None)
            await self._teardown(sid, rt, "session deleted")
            try:
                backend = await self._backend(row.sandbox)
                sandbox = rt.sandbox if rt and rt.sandbox else backend.sandbox(
                    sid, self.workspace_path(sid), self.config.limits())
                await sandbox.remove()
            except Exception as e:
                self.log.warning("sandbox removal for %s failed (orphan clean-up will retry): %s", sid, e)
            await asyncio.to_thread(shutil.rmtree, self.workspace_path(sid), True)
            await self.store.delete_session(sid)
            self.events.close_session(sid)
        self._locks.pop(sid, None)

    # recovery -------------------------------------------------------------------------------
    async def _recover(self, sid: str, phase: Phase) -> None:
        """Finish what a previous server left half-done: every session ends in a true phase."""
        try:
            if phase is Phase.stopping:
                async with self._lock(sid):
                    await self._teardown(sid, None, "server restart")
                    await self._phase(sid, Phase.stopped, "stop finished after a server restart")
            elif phase is Phase.running:
                await self._reattach(sid)
            else:
                row = await self.get(sid)
                self._start_provisioning(sid, first=row.started is None)
        except SessionNotFound:
            return
        except Exception as e:
            self.log.exception("recovery of %s failed", sid)
            await self._phase(sid, Phase.failed, f"could not recover after a server restart: {e}")

    async def _reattach(self, sid: str) -> None:
        """A Running session whose server died: re-attach its sandbox and restart its agent."""
        async with self._lock(sid):
            row = await self.get(sid)
            spec = SessionSpec.model_validate(row.spec)
            await self.events.append(sid, ev.SANDBOX_WARNING, {"message": "server restarted; re-attaching the sandbox"})
            backend = await self._backend(row.sandbox)
            rt = self._runtimes[sid] = Runtime(sandbox=backend.sandbox(sid, self.workspace_path(sid), self.config.limits()))
            await self.capacity.acquire(sid, row.owner, spec.workspace, lambda why: self._waiting(sid, why))
            if not await self._start_sandbox(sid, rt):
                await self.capacity.release(sid)
                return
            # Whatever ran for the dead server's agent has no one to report to: end it.
            try:
                await rt.sandbox.kill_processes()
            except SandboxError as e:
                self.log.warning("could not clear old processes of %s: %s", sid, e)
            await self._start_agent(sid, rt, spec, initial=False)


def _copy_name(name: str) -> str:
    return (name[:93] + " (copy)") if not name.endswith(" (copy)") else name


def _name_from_text(text: str) -> str:
    line = " ".join(text.strip().split())
    return (line[:57] + "...") if len(line) > 60 else (line or "Untitled session")
