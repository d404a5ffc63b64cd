"""Export a session (Markdown, PDF, ipynb, raw JSON; Google Drive), plus the services that sit
beside it: Langfuse tracing and feedback.

`setup(settings, manager, config)` builds the services and puts them in the tornado settings
(`jupyter_sessions_export`, `..._feedback`, `..._tracing`, `..._drive`) where export/routes.py finds
them; `Services.start()` runs the feedback outbox and `Services.close()` flushes Langfuse.
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Literal

from ..tracing import LangfuseSettings

Format = Literal["markdown", "pdf", "ipynb", "json"]
FORMATS = ("markdown", "pdf", "ipynb", "json")


@dataclass
class ExportConfig:
    """Settings of export, Drive, tracing and feedback (from SessionsApp traitlets)."""

    chromium_path: str | None = None
    max_args_chars: int = 2000
    max_result_chars: int = 2000
    max_lines: int = 200
    pdf_concurrency: int = 2
    langfuse: LangfuseSettings = field(default_factory=LangfuseSettings)
    drive: "DriveConfig" = None  # type: ignore[assignment]
    feedback_retry_base: float = 2.0
    feedback_retry_max: float = 3600.0
    feedback_max_attempts: int = 30

    def __post_init__(self) -> None:
        if self.drive is None:
            from .drive import DriveConfig

            self.drive = DriveConfig()


# -- download names ---------------------------------------------------------------------------
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def safe_filename(name: str, ext: str, fallback: str = "session") -> str:
    """A file name without path characters, controls or leading dots; at most 120 characters."""
    base = unicodedata.normalize("NFC", name or "")
    base = _UNSAFE.sub("-", base)
    base = re.sub(r"\s+", " ", base).strip(" .-")
    base = base[:120].rstrip(" .-") or fallback
    return base + ext


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII `filename` fallback plus `filename*=UTF-8''...` for the real name."""
    stem, dot, ext = filename.rpartition(".") if "." in filename.lstrip(".") else (filename, "", "")
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    ascii_stem = re.sub(r'[^A-Za-z0-9._ ()\[\]+-]+', "_", ascii_stem).strip(" _.") or "download"
    ascii_ext = re.sub(r"[^A-Za-z0-9]+", "", ext)
    ascii_name = ascii_stem + ("." + ascii_ext if ascii_ext else "")
    quoted = urllib.parse.quote(filename, safe="")
    return f'{disposition}; filename="{ascii_name}"; filename*=UTF-8\'\'{quoted}'


@dataclass
class ExportResult:
    body: bytes
    mime_type: str
    filename: str


class ExportService:
    """Loads a session's events and renders them in a format."""

    def __init__(self, manager, config: ExportConfig, secrets: Callable[[], list[str]] | None = None):
        self.manager = manager
        self.config = config
        self._secrets = secrets or (lambda: [])
        self._pdf_slots = asyncio.Semaphore(max(1, config.pdf_concurrency))

    def secrets(self) -> list[str]:
        m = self.manager
        out = list(self._secrets())
        providers = getattr(m, "providers", None)
        if providers is not None and hasattr(providers, "secrets"):
            out += providers.secrets()
        out += list(getattr(getattr(m, "config", None), "git_credentials", {}).values())
        out += self.config.langfuse.secrets() + self.config.drive.secrets()
        return [s for s in out if s]

    async def events(self, sid: str) -> list[dict]:
        out: list[dict] = []
        after = 0
        while batch := await self.manager.events.replay(sid, after):
            out += [e.model_dump(mode="json") for e in batch]
            after = batch[-1].seq
        return out

    async def export(self, row, fmt: str, include_thinking: bool = False) -> ExportResult:
        from .notebook import NotebookOptions, SessionFacts, session_document

        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
        events = await self.events(row.id)
        facts = SessionFacts.from_row(row)
        secrets = self.secrets()
        if fmt == "json":
            doc = session_document(facts, events, secrets)
            body = json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
            return ExportResult(body, "application/json", safe_filename(row.display_name, ".json", row.id))
        opts = NotebookOptions(include_thinking=include_thinking, max_args_chars=self.config.max_args_chars,
                               max_result_chars=self.config.max_result_chars, max_lines=self.config.max_lines,
                               open_details=fmt == "pdf", secrets=secrets)
        if fmt == "pdf":
            async with self._pdf_slots:  # each PDF is a Chromium process: a few at a time
                return await asyncio.to_thread(self._render, events, facts, opts, fmt, row)
        return await asyncio.to_thread(self._render, events, facts, opts, fmt, row)

    def _render(self, events, facts, opts, fmt, row) -> ExportResult:
        from .exporters import render
        from .notebook import build_notebook

        nb = build_notebook(events, facts, opts)
        body, mime, ext = render(nb, fmt, chromium_path=self.config.chromium_path)
        return ExportResult(body, mime, safe_filename(facts.display_name, ext, row.id))


@dataclass
class Services:
    export: ExportService
    tracing: "Tracing"
    feedback: "FeedbackService"
    drive: "DriveService"

    def start(self) -> None:
        self.feedback.start()

    async def close(self) -> None:
        await self.feedback.stop()
        await self.tracing.close()


def setup(settings: dict, manager, config: ExportConfig) -> Services:
    """Build the services for `manager` and register them in the tornado `settings`."""
    from ..feedback import FeedbackService
    from ..tracing import TraceInfo, Tracing
    from .drive import DriveService

    async def info(sid: str) -> TraceInfo:
        return TraceInfo.from_row(await manager.get(sid))

    export = ExportService(manager, config)
    tracing = Tracing(config.langfuse, manager.events, info, secrets=export.secrets())
    feedback = FeedbackService(manager.store, manager.events, tracing.client, base_delay=config.feedback_retry_base,
                               max_delay=config.feedback_retry_max, max_attempts=config.feedback_max_attempts)
    drive = DriveService(config.drive, manager.store)
    services = Services(export=export, tracing=tracing, feedback=feedback, drive=drive)
    settings["jupyter_sessions_export"] = export
    settings["jupyter_sessions_tracing"] = tracing
    settings["jupyter_sessions_feedback"] = feedback
    settings["jupyter_sessions_drive"] = drive
    settings["jupyter_sessions_services"] = services
    return services


from ..feedback import FeedbackService  # noqa: E402  (type names for Services)
from ..tracing import Tracing  # noqa: E402
from .drive import DriveConfig, DriveService  # noqa: E402
