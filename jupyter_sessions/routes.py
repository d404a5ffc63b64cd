"""REST and websocket handlers under `{base_url}jupyter-sessions/api`.

Handlers are thin: parse with pydantic, call the SessionManager, serialize. Every verb is
authenticated (`@tornado.web.authenticated`, `@ws_authenticated` for the stream) and every error is
JSON `{"error": ..., "detail": ...}`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.handler import ExtensionHandlerMixin
from pydantic import BaseModel, ValidationError
from tornado import websocket

from .catalogue import SpecError
from .lifecycle import Conflict, check
from .manager import SessionManager, SessionNotFound, to_session
from .models import (
    AnswerIn,
    EventList,
    MessageAccepted,
    MessageIn,
    ModelList,
    RepoSpec,
    SessionChange,
    SessionList,
    SessionPatch,
    SessionSpec,
)
from .openapi import openapi_document
from .sandbox.base import SandboxUnavailable
from .workflows import WorkflowIn, WorkflowList, list_workflows

PREFIX = "jupyter-sessions/api"
SID = r"(?P<sid>[^/]+)"


class ApiError(tornado.web.HTTPError):
    def __init__(self, status: int, error: str, detail: Any = None):
        super().__init__(status, error)
        self.error = error
        self.detail = detail


def _validation_detail(exc: ValidationError) -> tuple[str, list[dict]]:
    detail = [
        {"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    fields = ", ".join(dict.fromkeys(d["field"] for d in detail))
    return f"invalid value for: {fields}", detail


def owner_of(handler: JupyterHandler) -> str:
    """Whose sessions a request sees.

    A Jupyter server belongs to one person (on JupyterHub, one single-user server per user), and
    token logins get a fresh anonymous identity per request, so by default the server's owner owns
    every session. Servers with a real multi-user identity provider set `per_user_sessions`.
    """
    manager: SessionManager = handler.settings["jupyter_sessions_manager"]
    if manager.per_user:
        user = handler.current_user
        return getattr(user, "username", None) or str(user)
    return manager.server_owner


class JsonErrors:
    """Errors as JSON `{"error", "detail"}` for every handler of this API, websocket included."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            error, detail = exc.error, exc.detail
        elif status_code == 403 and not self.current_user:
            error, detail = "authentication required: send 'Authorization: token <server token>' or log in", None
        elif isinstance(exc, tornado.web.HTTPError):
            error, detail = exc.log_message or self._reason, None
        else:
            error, detail = "internal error", None
            status_code = 500
        if status_code == 405:  # RFC 9110: say which methods do work
            allowed = [m for m in ("GET", "POST", "PATCH", "DELETE", "PUT") if m.lower() in type(self).__dict__]
            self.set_header("Allow", ", ".join(allowed))
            error = f"method {self.request.method} is not allowed here; use {' or '.join(allowed)}"
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": error, "detail": detail}))


class BaseHandler(JsonErrors, ExtensionHandlerMixin, APIHandler):
    """JSON in, JSON out, errors as {"error", "detail"}."""

    @property
    def manager(self) -> SessionManager:
        return self.settings["jupyter_sessions_manager"]

    @property
    def owner(self) -> str:
        return owner_of(self)

    #: query arguments this handler reads; anything else is a 422 (as unknown body fields are)
    query_args: frozenset[str] = frozenset()

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        # token/_xsrf are Jupyter's own; a bare number is JupyterLab's cache-buster (`?1732540000000`)
        unknown = {k for k in self.request.query_arguments if not k.isdigit()} - self.query_args - {"token", "_xsrf"}
        if unknown and self.current_user:
            names = ", ".join(sorted(unknown))
            raise ApiError(422, f"unknown query argument: {names}", [{"field": n, "message": "not accepted here"}
                                                                     for n in sorted(unknown)])
        await self.manager.ensure_started()

    def body(self, model: type[BaseModel]) -> Any:
        raw = self.request.body or b"{}"
        try:
            return model.model_validate_json(raw)
        except ValidationError as e:
            error, detail = _validation_detail(e)
            raise ApiError(422, error, detail) from None

    def send(self, model: BaseModel | dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(model.model_dump_json() if isinstance(model, BaseModel) else json.dumps(model))

    async def session_row(self, sid: str):
        try:
            return await self.manager.get(sid, owner=self.owner)
        except SessionNotFound:
            raise ApiError(404, f"no session {sid}", {"id": sid}) from None

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[override]
        if isinstance(value, ApiError):
            return
        super().log_exception(typ, value, tb)

    async def call(self, coro):
        """Map manager exceptions to HTTP errors."""
        try:
            return await coro
        except SessionNotFound as e:
            raise ApiError(404, f"no session {e.args[0]}", {"id": e.args[0]}) from None
        except SpecError as e:
            raise ApiError(e.status, f"{e.field}: {e.message}", [{"field": e.field, "message": e.message}]) from None
        except Conflict as e:
            raise ApiError(409, str(e)) from None
        except SandboxUnavailable as e:
            raise ApiError(503, str(e)) from None


class ModelsHandler(BaseHandler):
    query_args = frozenset({"workspace"})

    @tornado.web.authenticated
    async def get(self) -> None:
        m = self.manager
        # no workspace named: the caller's primary one (on JupyterHub, granted by the user's groups)
        ws = await self.call(m.access.resolve(self.get_query_argument("workspace", None) or None, 404))
        models = m.catalogue.visible(set(ws.features))
        default = ws.default_model or m.catalogue.default_model
        self.send(ModelList(models=[x.model_copy(update={"default": x.id == default}) for x in models],
                            default_model=default))


class WorkspacesHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.send(await self.call(self.manager.access.listing()))


class WorkflowsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        dirs = self.manager.workflows.loader.workflow_dirs
        flows = await asyncio.to_thread(list_workflows, dirs)
        self.send(WorkflowList(workflows=[w.info() for w in flows]))


class SessionWorkflowHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        await self.session_row(sid)
        body = self.body(WorkflowIn)
        await self.call(self.manager.workflows.attach(sid, body.workflow))
        self.send(to_session(await self.session_row(sid)), 202)


class SessionsHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        rows = await self.manager.list(owner=self.owner)
        self.send(SessionList(sessions=[to_session(r) for r in rows]))

    @tornado.web.authenticated
    async def post(self) -> None:
        spec = self.body(SessionSpec)
        row = await self.call(self.manager.create(spec, owner=self.owner))
        self.set_header("Location", self.request.path.rstrip("/") + "/" + row.id)
        self.send(to_session(row), 201)


class SessionHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self, sid: str) -> None:
        self.send(to_session(await self.session_row(sid)))

    @tornado.web.authenticated
    async def patch(self, sid: str) -> None:
        await self.session_row(sid)
        patch = self.body(SessionPatch)
        await self.call(self.manager.rename(sid, patch.display_name))
        self.send(to_session(await self.session_row(sid)))

    @tornado.web.authenticated
    async def delete(self, sid: str) -> None:
        await self.session_row(sid)
        await self.call(self.manager.delete(sid))
        self.set_status(204)
        self.finish()


class ReposHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        await self.session_row(sid)
        repo = self.body(RepoSpec)
        await self.call(self.manager.add_repo(sid, repo))
        self.send(to_session(await self.session_row(sid)), 202)


class MessagesHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        await self.session_row(sid)
        msg = self.body(MessageIn)
        message_id = await self.call(self.manager.post_message(sid, msg.text))
        self.send(MessageAccepted(message_id=message_id), 202)


class AnswersHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        await self.session_row(sid)
        body = self.body(AnswerIn)
        try:
            await self.call(self.manager.answer(sid, body.tool_call_id, body.answers))
        except ValueError as e:  # questions.AnswerError
            raise ApiError(422, str(e), [{"field": "answers", "message": str(e)}]) from None
        self.send(to_session(await self.session_row(sid)), 202)


class StopHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        row = await self.session_row(sid)
        if row.phase == "Stopping":
            raise ApiError(409, "cannot stop: the session is already Stopping")
        await self.call(_check("stop", row.phase))
        asyncio.ensure_future(self.manager.stop(sid))  # Stopping may take a grace period: 202 now
        await asyncio.sleep(0)
        self.send(to_session(await self.session_row(sid)), 202)


class CloneHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        await self.session_row(sid)
        row = await self.call(self.manager.clone(sid, owner=self.owner))
        self.send(to_session(row), 201)


class ResumeHandler(BaseHandler):
    @tornado.web.authenticated
    async def post(self, sid: str) -> None:
        await self.session_row(sid)
        await self.call(self.manager.resume(sid))
        self.send(to_session(await self.session_row(sid)), 202)


class EventsHandler(BaseHandler):
    query_args = frozenset({"after", "limit"})
    @tornado.web.authenticated
    async def get(self, sid: str) -> None:
        row = await self.session_row(sid)
        after, limit = self._int_arg("after", 0), self._int_arg("limit", 1000)
        if not 1 <= limit <= 1000:
            raise ApiError(422, "invalid value for: limit", [{"field": "limit", "message": "between 1 and 1000"}])
        events = await self.manager.events.replay(sid, after, limit)
        self.send(EventList(events=events, last_seq=row.last_seq))

    def _int_arg(self, name: str, default: int) -> int:
        raw = self.get_query_argument(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(422, f"invalid value for: {name}", [{"field": name, "message": "an integer"}]) from None
        if value < 0:
            raise ApiError(422, f"invalid value for: {name}", [{"field": name, "message": "must be >= 0"}])
        return value


async def _check(operation: str, phase: str) -> None:
    check(operation, phase)


class OpenAPIHandler(BaseHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        self.send(openapi_document(self.base_url))


class PushSocket(JsonErrors, ExtensionHandlerMixin, WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """A one-way websocket: once open, `_pump` writes until it ends or the client goes away.
    Clients act through the REST API; what they send here is ignored."""

    _task: asyncio.Task | None = None

    @property
    def manager(self) -> SessionManager:
        return self.settings["jupyter_sessions_manager"]

    def open(self, *args: str) -> None:  # type: ignore[override]
        super().open(*args)  # WebSocketMixin: keep-alive pings
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        raise NotImplementedError

    def on_message(self, message: str | bytes) -> None:
        """One-way: ignored."""

    def on_close(self) -> None:
        super().on_close()
        if self._task is not None:
            self._task.cancel()


class StreamHandler(PushSocket):
    """Replay from `after`, then follow live; one JSON event per message."""

    @ws_authenticated
    async def get(self, sid: str) -> None:
        await self.manager.ensure_started()
        try:
            await self.manager.get(sid, owner=owner_of(self))
        except SessionNotFound:
            raise tornado.web.HTTPError(404, f"no session {sid}") from None
        try:
            self._after = max(0, int(self.get_query_argument("after", "0")))
        except ValueError:
            raise tornado.web.HTTPError(400, "after must be an integer") from None
        self._sid = sid
        await super().get(sid)

    async def _pump(self) -> None:
        try:
            async for event in self.manager.events.follow(self._sid, self._after):
                await self.write_message(event.model_dump_json())
        except (websocket.WebSocketClosedError, asyncio.CancelledError):
            return
        self.close(1000, "session deleted")


class WatchHandler(PushSocket):
    """The caller's session list, live: a snapshot, then each session whose row changed (phase,
    agent state, name, spec), or its deletion. Replaces polling GET /sessions in list views."""

    @ws_authenticated
    async def get(self) -> None:
        await self.manager.ensure_started()
        self._owner = owner_of(self)
        await super().get()

    async def _pump(self) -> None:
        watch = self.manager.events.watch()  # before the snapshot: nothing between is missed
        try:
            rows = await self.manager.list(owner=self._owner)
            known = {r.id for r in rows}
            await self._send(SessionChange(type="snapshot", sessions=[to_session(r) for r in rows]))
            while True:
                for sid in sorted(await watch.next()):
                    try:
                        row = await self.manager.get(sid, owner=self._owner)
                    except SessionNotFound:  # deleted, or someone else's (never shown, never named)
                        if sid in known:
                            known.discard(sid)
                            await self._send(SessionChange(type="deleted", id=sid))
                        continue
                    known.add(sid)
                    await self._send(SessionChange(type="changed", session=to_session(row)))
        except (websocket.WebSocketClosedError, asyncio.CancelledError):
            return
        finally:
            self.manager.events.unwatch(watch)

    async def _send(self, change: SessionChange) -> None:
        # only the fields this kind of change has; a session inside keeps its nulls, as in GET
        await self.write_message(json.dumps({k: v for k, v in change.model_dump(mode="json").items()
                                             if v is not None}))


ROUTES: list[tuple[str, type]] = [
    (r"/models", ModelsHandler),
    (r"/workspaces", WorkspacesHandler),
    (r"/workflows", WorkflowsHandler),
    (r"/sessions", SessionsHandler),
    (r"/sessions/watch", WatchHandler),  # before /sessions/{id}; ids are "s-<hex>", never "watch"
    (rf"/sessions/{SID}", SessionHandler),
    (rf"/sessions/{SID}/repos", ReposHandler),
    (rf"/sessions/{SID}/workflow", SessionWorkflowHandler),
    (rf"/sessions/{SID}/messages", MessagesHandler),
    (rf"/sessions/{SID}/answers", AnswersHandler),
    (rf"/sessions/{SID}/stop", StopHandler),
    (rf"/sessions/{SID}/resume", ResumeHandler),
    (rf"/sessions/{SID}/clone", CloneHandler),
    (rf"/sessions/{SID}/events", EventsHandler),
    (rf"/sessions/{SID}/stream", StreamHandler),
    (r"/openapi.json", OpenAPIHandler),
]


def all_routes() -> list[tuple[str, type]]:
    """This module's routes plus the feature modules' (export, feedback, Drive)."""
    from .export.routes import ROUTES as EXPORT_ROUTES

    return ROUTES + EXPORT_ROUTES


def handlers(base_url: str = "/") -> list[tuple[str, type]]:
    """Tornado patterns relative to the server's base_url (ExtensionApp prepends it)."""
    return [(f"/{PREFIX}{path}/?", handler) for path, handler in all_routes()]
