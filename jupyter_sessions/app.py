"""The server extension: configuration (traitlets) and wiring of store, manager and handlers.

Everything an admin may set lives here as `c.SessionsApp.<name>`; see the README's Configuration
section. Keys default to the environment so that a hub admin can set them in the single-user image
without users ever seeing them through the API.
"""

from __future__ import annotations

import os
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from .agent.context import ProviderSettings
from .catalogue import BUILTIN_MODELS, Catalogue
from .events import EventLog
from .export import ExportConfig
from .export import setup as setup_services
from .export.drive import DriveConfig
from .tracing import LangfuseSettings
from .manager import ManagerConfig, SessionManager, WorkspaceSettings
from .models import ModelInfo
from .store import SessionRow, Store


class SessionsApp(ExtensionApp):
    """Agent sessions for Jupyter."""

    name = "jupyter_sessions"
    load_other_extensions = True

    sandbox = Enum(
        ["auto", "docker", "local", "swarm", "kubernetes"],
        default_value="auto",
        help="Sandbox backend: docker (isolated containers), local (host subprocesses, no isolation), swarm "
        "(one Docker Swarm service per session), kubernetes (one pod per session; see docs/scale-out.md), "
        "or auto (docker when an engine is reachable, else local).",
    ).tag(config=True)
    database_url = Unicode(help="SQLAlchemy URL of the session store (SQLite file in the Jupyter data dir by default).").tag(config=True)
    data_dir = Unicode(help="Folder for the default database and the session workspaces.").tag(config=True)
    docker_image = Unicode("", help="Sandbox image; empty = the project's own image, built offline on first use.").tag(config=True)
    docker_url = Unicode("", help="Docker engine URL (default: DOCKER_HOST or the local unix socket).").tag(config=True)
    sandbox_memory = Unicode("1g", help="Memory limit of a docker sandbox.").tag(config=True)
    sandbox_cpus = Float(1.0, help="CPU limit of a docker sandbox.").tag(config=True)
    sandbox_pids = Int(256, help="Process limit of a docker sandbox.").tag(config=True)
    sandbox_max_file_mb = Int(1024, help="Largest file (MiB) a sandbox command may write; bigger writes fail.").tag(config=True)
    sandbox_network = Bool(False, help="Give docker sandboxes network access (off: --network none).").tag(config=True)
    swarm = Dict(
        help="Swarm backend options: constraints (list), reservation (fraction of the limits), volume_driver, "
        "volume_options, network_per_session, node_engines, start_timeout. See docs/scale-out.md.",
    ).tag(config=True)
    kubernetes = Dict(
        help="Kubernetes backend options: namespace, image, kube_config, context, in_cluster, workspace_mode "
        "(pvc|shared), storage_class, workspace_size, workspace_claim, node_selector, ... See docs/scale-out.md.",
    ).tag(config=True)
    default_model = Unicode("claude-sonnet-4-5", help="Model used when a session names none.").tag(config=True)
    models = List(Dict(), help="Extra or overriding model entries (ModelInfo fields, plus server-side only "
                  "base_url, api_key or api_key_env to re-point a model, e.g. at a proxy).").tag(config=True)
    hidden_models = List(Unicode(), help="Model ids to hide from every workspace.").tag(config=True)
    workspaces = Dict(
        help="Named workspaces: {name: {inactivity_timeout: s, features: [...], default_model: id, "
        "groups: [hub groups; empty = everyone]}}. 'default' always exists.",
    ).tag(config=True)
    allow_local_repos = Bool(True, help="Allow repos (and workflows) given as a local path on the server.").tag(config=True)
    workflow_dirs = List(Unicode(), help="Folders whose sub-folders (each with .ambient/ambient.json) are offered "
                         "as named workflows next to the built-ins (bugfix, triage, spec-writing).").tag(config=True)
    hub_groups = Bool(True, help="On JupyterHub, open workspaces that list `groups` only to members of those hub "
                      "groups (read from the hub API, or from $JUPYTER_SESSIONS_GROUPS).").tag(config=True)
    hub_groups_ttl = Float(60.0, help="Seconds the user's hub groups are cached.").tag(config=True)
    git_credentials = Dict(
        help="host -> token used (server-side only) to clone https repos from that host."
    ).tag(config=True)
    per_user_sessions = Bool(
        False, help="Scope sessions to the authenticated user's name (for servers with a multi-user identity "
        "provider). Off: the server's owner (JUPYTERHUB_USER or the OS user) owns every session.",
    ).tag(config=True)
    max_sandboxes_per_user = Int(
        0, help="Sandboxes one user may run at once (0 = no limit); more sessions wait in Pending. "
        "Per-workspace limits: workspaces = {name: {max_sandboxes: N}}.",
    ).tag(config=True)
    watch_interval = Float(5.0, help="Seconds between checks for dead sandboxes and inactive sessions.").tag(config=True)
    clone_timeout = Int(300, help="Seconds a repo clone may take.").tag(config=True)
    anthropic_api_key = Unicode(help="Anthropic API key (default: $ANTHROPIC_API_KEY).").tag(config=True)
    anthropic_base_url = Unicode(help="Anthropic API base URL (default: $ANTHROPIC_BASE_URL).").tag(config=True)
    gemini_api_key = Unicode(help="Gemini API key (default: $GEMINI_API_KEY or $GOOGLE_API_KEY).").tag(config=True)
    gemini_base_url = Unicode(help="Gemini API base URL (default: $GOOGLE_GEMINI_BASE_URL).").tag(config=True)
    model_stream_idle_timeout = Float(
        120.0, help="Seconds without a byte from the model API before a stream counts as broken (and is retried).",
    ).tag(config=True)
    chromium_path = Unicode("", help="Chromium for PDF export (default: `chromium` on PATH).").tag(config=True)
    export_max_output_chars = Int(2000, help="Tool output longer than this is cut in exports, with a note.").tag(config=True)
    langfuse_public_key = Unicode(help="Langfuse public key (default: $LANGFUSE_PUBLIC_KEY); no keys = no tracing.").tag(config=True)
    langfuse_secret_key = Unicode(help="Langfuse secret key (default: $LANGFUSE_SECRET_KEY).").tag(config=True)
    langfuse_base_url = Unicode(help="Langfuse URL (default: $LANGFUSE_BASE_URL or $LANGFUSE_HOST).").tag(config=True)
    langfuse_environment = Unicode("", help="Langfuse environment tag for traces.").tag(config=True)
    drive_client_id = Unicode("", help="Google OAuth client id for Drive export.").tag(config=True)
    drive_client_secret = Unicode("", help="Google OAuth client secret for Drive export.").tag(config=True)
    drive_auth_uri = Unicode("https://accounts.google.com/o/oauth2/v2/auth", help="Google OAuth consent URL.").tag(config=True)
    drive_token_uri = Unicode("https://oauth2.googleapis.com/token", help="Google OAuth token URL.").tag(config=True)
    drive_api_root = Unicode("https://www.googleapis.com/", help="Drive API root URL.").tag(config=True)
    drive_folder_id = Unicode("", help="Upload into this Drive folder (default: My Drive).").tag(config=True)
    drive_redirect_uri = Unicode("", help="OAuth redirect URI (default: this server's .../drive/callback).").tag(config=True)
    replay_dir = Unicode("", help="Folder of recorded transcripts; enables the offline `replay` model.").tag(config=True)
    enable_replay = Bool(False, help="Offer the offline `replay` model (a recorded demo transcript).").tag(config=True)

    @default("data_dir")
    def _data_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "jupyter_sessions")

    @default("database_url")
    def _database_url(self) -> str:
        return f"sqlite:///{Path(self.data_dir) / 'sessions.db'}"

    @default("anthropic_api_key")
    def _anthropic_key(self) -> str:
        return os.environ.get("ANTHROPIC_API_KEY", "")

    @default("anthropic_base_url")
    def _anthropic_url(self) -> str:
        return os.environ.get("ANTHROPIC_BASE_URL", "")

    @default("gemini_api_key")
    def _gemini_key(self) -> str:
        return os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY", "")

    @default("langfuse_public_key")
    def _lf_public(self) -> str:
        return os.environ.get("LANGFUSE_PUBLIC_KEY", "")

    @default("langfuse_secret_key")
    def _lf_secret(self) -> str:
        return os.environ.get("LANGFUSE_SECRET_KEY", "")

    @default("langfuse_base_url")
    def _lf_url(self) -> str:
        return os.environ.get("LANGFUSE_BASE_URL") or os.environ.get("LANGFUSE_HOST", "")

    @default("gemini_base_url")
    def _gemini_url(self) -> str:
        return os.environ.get("GOOGLE_GEMINI_BASE_URL", "")

    # -------------------------------------------------------------------------------------------
    def catalogue(self) -> Catalogue:
        models = {m.id: m for m in BUILTIN_MODELS}
        if self.enable_replay or self.replay_dir:
            models["replay"] = ModelInfo(id="replay", label="Replay (recorded, offline)", provider="replay",
                                         max_temperature=2.0, max_output_tokens=1_000_000)
        endpoints: dict[str, dict[str, str]] = {}
        for entry in self.models:
            entry = dict(entry)
            # re-pointing stays server-side: base_url / api_key / api_key_env never enter ModelInfo
            key_env = entry.pop("api_key_env", None)
            endpoint = {"base_url": entry.pop("base_url", None) or "",
                        "api_key": entry.pop("api_key", None) or (os.environ.get(key_env, "") if key_env else "")}
            base = models.get(entry.get("id", ""))
            merged = {**(base.model_dump() if base else {}), **entry}
            models[merged["id"]] = ModelInfo(**merged)
            if any(endpoint.values()):
                endpoints[merged["id"]] = {k: v for k, v in endpoint.items() if v}
        for hidden in self.hidden_models:
            models.pop(hidden, None)
            endpoints.pop(hidden, None)
        return Catalogue(list(models.values()), self.default_model, endpoints)

    def workspace_settings(self) -> dict[str, WorkspaceSettings]:
        spaces = {name: WorkspaceSettings(name=name, **cfg) for name, cfg in self.workspaces.items()}
        spaces.setdefault("default", WorkspaceSettings(name="default"))
        return spaces

    def provider_settings(self) -> ProviderSettings:
        return ProviderSettings(
            anthropic_api_key=self.anthropic_api_key or None,
            anthropic_base_url=self.anthropic_base_url or None,
            gemini_api_key=self.gemini_api_key or None,
            gemini_base_url=self.gemini_base_url or None,
            replay_dir=self.replay_dir or None,
            stream_idle_timeout=self.model_stream_idle_timeout,
        )

    def initialize_settings(self) -> None:
        store = Store(self.database_url)
        config = ManagerConfig(
            sandbox=self.sandbox,
            workspaces_dir=Path(self.data_dir) / "workspaces",
            docker_image=self.docker_image or None,
            docker_url=self.docker_url or None,
            memory=self.sandbox_memory,
            cpus=self.sandbox_cpus,
            pids=self.sandbox_pids,
            network=self.sandbox_network,
            max_file_mb=self.sandbox_max_file_mb,
            backend_options={"swarm": dict(self.swarm), "kubernetes": dict(self.kubernetes)},
            allow_local_repos=self.allow_local_repos,
            git_credentials=dict(self.git_credentials),
            clone_timeout=self.clone_timeout,
            per_user_sessions=self.per_user_sessions,
            watch_interval=self.watch_interval,
            max_sandboxes_per_user=self.max_sandboxes_per_user,
        )
        self.manager = SessionManager(
            config=config,
            store=store,
            events=EventLog(store),
            catalogue=self.catalogue(),
            workspaces=self.workspace_settings(),
            providers=self.provider_settings(),
            log=self.log,
        )
        self.settings["jupyter_sessions_manager"] = self.manager
        self.services = setup_services(self.settings, self.manager, self.export_config())
        self.manager.on_agent_start.append(self.services.tracing.watch)
        self.manager.on_started.append(self.services.start)
        self.manager.workflows.loader.workflow_dirs = tuple(self.workflow_dirs)
        if self.hub_groups:
            from .hub import HubGroups

            self.manager.access.groups = HubGroups.from_env(ttl=self.hub_groups_ttl)
        self._export_server_env()
        self._register_snapshot_refresh()

    def _register_snapshot_refresh(self) -> None:
        """On every notebook save, rewrite chat widgets' Markdown snapshots from the event log, so a
        saved notebook shows the whole transcript (on GitHub, in nbconvert) even for turns that
        finished after the cell did."""
        if self.serverapp is None:
            return
        from .widgets.snapshot import refresh_notebook

        store, manager = self.manager.store, self.manager

        def refresh(model, path, contents_manager, **kwargs):
            if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
                return

            def events(sid: str):
                row = None
                try:
                    with store._sessions() as db:
                        row = db.get(SessionRow, sid)
                except Exception:
                    return None
                if row is None or (manager.per_user and row.owner != manager.server_owner):
                    return None
                return store.events_sync(sid) or None

            refresh_notebook(model["content"], events)

        self.serverapp.contents_manager.register_pre_save_hook(refresh)

    def _export_server_env(self) -> None:
        """Tell kernels this server starts where the API is (they inherit the server's environment).

        `jupyter_sessions.client` reads these; under JupyterHub the base URL carries `/user/<name>/`.
        """
        if self.serverapp is None:
            return
        base = self.serverapp.base_url
        os.environ["JUPYTER_SESSIONS_BASE_URL"] = base
        scheme = "https" if self.serverapp.certfile else "http"
        ip = self.serverapp.ip
        host = "127.0.0.1" if ip in ("", "0.0.0.0", "*", "localhost") else (f"[{ip}]" if ":" in ip else ip)
        os.environ["JUPYTER_SESSIONS_SERVER_URL"] = f"{scheme}://{host}:{self.serverapp.port}{base}"
        token = getattr(self.serverapp.identity_provider, "token", "") or ""
        if token:
            os.environ["JUPYTER_SESSIONS_TOKEN"] = token

    def export_config(self) -> ExportConfig:
        langfuse = LangfuseSettings(
            public_key=self.langfuse_public_key or None, secret_key=self.langfuse_secret_key or None,
            base_url=self.langfuse_base_url or None, environment=self.langfuse_environment or None)
        drive = DriveConfig(
            client_id=self.drive_client_id or None, client_secret=self.drive_client_secret or None,
            auth_uri=self.drive_auth_uri, token_uri=self.drive_token_uri, api_root=self.drive_api_root,
            folder_id=self.drive_folder_id or None, redirect_uri=self.drive_redirect_uri or None)
        return ExportConfig(chromium_path=self.chromium_path or None, max_args_chars=self.export_max_output_chars,
                            max_result_chars=self.export_max_output_chars, langfuse=langfuse, drive=drive)

    def initialize_handlers(self) -> None:
        from .routes import handlers

        self.handlers.extend(handlers(self.serverapp.base_url if self.serverapp else "/"))

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        await self.manager.ensure_started()

    async def stop_extension(self) -> None:
        await self.services.close()
        await self.manager.shutdown()
