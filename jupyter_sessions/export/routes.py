"""Handlers for export, Google Drive and feedback (paths relative to /jupyter-sessions/api).

`ROUTES` and `OPERATIONS` have the shapes of routes.ROUTES and openapi.OPERATIONS. The services
come from the tornado settings (see export.setup).
"""

from __future__ import annotations

import html
from typing import Literal

import tornado.web
from pydantic import BaseModel, ConfigDict, Field

from ..feedback import Feedback, FeedbackIn, FeedbackList, UnknownMessage
from ..models import Phase
from ..routes import SID, ApiError, BaseHandler, PREFIX
from . import FORMATS, content_disposition
from .drive import DriveError, DriveNotConnected
from .exporters import BrowserNotFound


class DriveExportIn(BaseModel):
    """What to save to Drive."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["markdown", "pdf", "ipynb", "json"] = "markdown"
    include_thinking: bool = False


class DriveFile(BaseModel):
    file_id: str = Field(description="Drive file id")
    name: str
    link: str | None = Field(default=None, description="webViewLink: opens the file in Drive")
    mime_type: str
    format: str


class DriveStatus(BaseModel):
    configured: bool = Field(description="the admin configured an OAuth client")
    connected: bool = Field(description="this user granted access (a refresh token is stored)")
    missing: list[str] = Field(default_factory=list, description="server settings still needed")
    scopes: list[str] | None = None
    connect_url: str | None = None


class ExportMixin:
    @property
    def export_service(self):
        svc = self.settings.get("jupyter_sessions_export")
        if svc is None:
            raise ApiError(503, "export is not set up on this server")
        return svc

    @property
    def drive(self):
        return self.settings["jupyter_sessions_drive"]

    @property
    def feedback(self):
        return self.settings["jupyter_sessions_feedback"]

    def api_url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{PREFIX}{path}"


def _bool_arg(handler, name: str) -> bool:
    raw = handler.get_query_argument(name, "false").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise ApiError(422, f"invalid value for: {name}", [{"field": name, "message": "true or false"}])


async def _render(handler, row, fmt: str, include_thinking: bool):
    try:
        return await handler.export_service.export(row, fmt, include_thinking)
    except BrowserNotFound as e:
        raise ApiError(503, str(e), {"install": "apt-get install chromium", "setting": "c.SessionsApp.chromium_path"}) from None


class ExportHandler(ExportMixin, BaseHandler):
    query_args = frozenset({"format", "include_thinking"})

    @tornado.web.authenticated
    async def get(self, sid: str) -> None:
        row = await self.session_row(sid)
        fmt = self.get_query_argument("format", "markdown").lower()
        if fmt == "md":
            fmt = "markdown"
        if fmt not in FORMATS:
            raise ApiError(422, "invalid value for: format",
                           [{"field": "format", "message": f"one of {', '.join(FORMATS)}"}])
        result = await _render(self, row, fmt, _bool_arg(self, "include_thinking"))
        self.set_header("Content-Disposition", content_disposition(result.filename))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        self.finish(result.body, set_content_type=result.mime_type)  # APIHandler would say JSON


class DriveExportHandler(ExportMixin, BaseHandler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        row = await self.session_row(sid)
        body = self.body(DriveExportIn)
        if row.phase != Phase.running.value:
            raise ApiError(409, f"the session is {row.phase}; saving to Google Drive needs a Running session "
                                "(resume it, or download the export instead)", {"phase": row.phase})
        drive = self.drive
        if not drive.config.configured:
            missing = drive.config.missing()
            raise ApiError(412, "Google Drive is not configured on this server: the admin must set "
                           + " and ".join(f"c.SessionsApp.drive_{m}" for m in missing),
                           {"missing": [f"drive_{m}" for m in missing]})
        status = await drive.status(self.owner)
        if not status["connected"]:
            raise ApiError(412, "Google Drive is not connected for you: connect it first (open connect_url)",
                           {"missing": ["drive_connection"], "connect_url": self.api_url("/drive/connect")})
        result = await _render(self, row, body.format, body.include_thinking)
        try:
            up = await drive.upload(self.owner, result.filename, result.body, result.mime_type.split(";")[0])
        except DriveNotConnected as e:
            raise ApiError(412, str(e), {"missing": ["drive_connection"],
                                         "connect_url": self.api_url("/drive/connect")}) from None
        except DriveError as e:
            what = (f"Google Drive refused the upload ({e.status}{', ' + e.reason if e.reason else ''}): {e.message}"
                    if e.status else e.message)
            raise ApiError(502, what, {"drive_status": e.status, "reason": e.reason}) from None
        self.send(DriveFile(file_id=up.file_id, name=up.name, link=up.link, mime_type=up.mime_type,
                            format=body.format), 201)


class DriveHandler(ExportMixin, BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        status = await self.drive.status(self.owner)
        url = self.api_url("/drive/connect") if status["configured"] and not status["connected"] else None
        self.send(DriveStatus(**status, connect_url=url))

    @tornado.web.authenticated
    async def delete(self) -> None:
        await self.drive.disconnect(self.owner)
        self.set_status(204)
        self.finish()


class DriveConnectHandler(ExportMixin, BaseHandler):
    """Start the OAuth flow: a redirect to Google's consent page (`?redirect=false`: the URL as JSON)."""

    query_args = frozenset({"redirect"})

    @tornado.web.authenticated
    async def get(self) -> None:
        drive = self.drive
        if not drive.config.configured:
            raise ApiError(412, "Google Drive is not configured on this server",
                           {"missing": [f"drive_{m}" for m in drive.config.missing()]})
        redirect_uri = drive.config.redirect_uri or (
            f"{self.request.protocol}://{self.request.host}{self.api_url('/drive/callback')}")
        url = drive.authorization_url(self.owner, redirect_uri)
        if _bool_arg(self, "redirect") if "redirect" in self.request.arguments else True:
            self.redirect(url)
        else:
            self.send({"url": url})


class DriveCallbackHandler(ExportMixin, BaseHandler):
    """Google sends the browser back here with ?code&state (or ?error)."""

    # what Google's authorization server may add to the redirect
    query_args = frozenset({"code", "state", "error", "error_description", "error_uri", "scope", "authuser",
                            "prompt", "hd", "iss", "session_state"})

    @tornado.web.authenticated
    async def get(self) -> None:
        error = self.get_query_argument("error", "")
        code, state = self.get_query_argument("code", ""), self.get_query_argument("state", "")
        ok, message = False, ""
        if error:
            message = f"Google Drive was not connected: {error}"
        elif not code or not state:
            message = "Google Drive was not connected: the answer from Google had no code"
        else:
            try:
                await self.drive.complete(self.owner, state, code)
                ok, message = True, "Google Drive is connected. You can close this window."
            except DriveNotConnected as e:
                message = f"Google Drive was not connected: {e}"
        self.set_status(200 if ok else 400)
        self.finish(set_content_type="text/html; charset=utf-8", chunk=f"<!doctype html><meta charset=utf-8><title>Google Drive</title><p id=status "
                    f"data-ok={'true' if ok else 'false'}>{html.escape(message)}</p>"
                    "<script>window.opener && window.opener.postMessage({jupyterSessionsDrive: "
                    f"{'true' if ok else 'false'}}}, window.location.origin);</script>")


class FeedbackHandler(ExportMixin, BaseHandler):
    @tornado.web.authenticated
    async def get(self, sid: str) -> None:
        await self.session_row(sid)
        self.send(FeedbackList(feedback=await self.feedback.list(sid)))

    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        row = await self.session_row(sid)
        body = self.body(FeedbackIn)
        try:
            fb = await self.feedback.record(row, body, self.owner)
        except UnknownMessage:
            raise ApiError(422, f"invalid value for: message_id (no agent message {body.message_id} in this session)",
                           [{"field": "message_id", "message": "not an agent message of this session"}]) from None
        self.send(fb, 200 if fb.created != fb.updated else 201)


ROUTES: list[tuple[str, type]] = [
    (rf"/sessions/{SID}/export", ExportHandler),
    (rf"/sessions/{SID}/export/drive", DriveExportHandler),
    (rf"/sessions/{SID}/feedback", FeedbackHandler),
    (r"/drive", DriveHandler),
    (r"/drive/connect", DriveConnectHandler),
    (r"/drive/callback", DriveCallbackHandler),
]

# (method, path, summary, request model, success status, response model or None)
OPERATIONS: list[tuple[str, str, str, type[BaseModel] | None, int, type[BaseModel] | None]] = [
    ("get", "/sessions/{id}/export",
     "Download the transcript: ?format=markdown|pdf|ipynb|json&include_thinking=false (a file, not JSON; "
     "503 when PDF has no browser)", None, 200, None),
    ("post", "/sessions/{id}/export/drive",
     "Save an export to the user's Google Drive (409 unless Running, 412 when Drive is not configured or "
     "connected, 502 when Drive refuses)", DriveExportIn, 201, DriveFile),
    ("get", "/sessions/{id}/feedback", "Ratings given in this session", None, 200, FeedbackList),
    ("post", "/sessions/{id}/feedback",
     "Rate an agent message up or down (201 new, 200 changed); sent to Langfuse as a score on its run's trace",
     FeedbackIn, 201, Feedback),
    ("get", "/drive", "Google Drive: configured? connected for this user?", None, 200, DriveStatus),
    ("delete", "/drive", "Forget this user's Google Drive grant", None, 204, None),
    ("get", "/drive/connect", "Start connecting Google Drive (redirects to Google's consent page)", None, 302, None),
    ("get", "/drive/callback", "OAuth redirect target (HTML page for the browser)", None, 200, None),
]
