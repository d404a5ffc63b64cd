"""The OpenAPI 3.1 document of the API, generated from the pydantic models.

`OPERATIONS` is the one list of what the API offers; a test checks it against the tornado routes so
the document cannot drift from the handlers.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import __version__
from .workflows.loader import WorkflowIn, WorkflowList
from .workspaces import WorkspaceList
from .models import (
    AnswerIn,
    ErrorBody,
    Event,
    EventList,
    MessageAccepted,
    MessageIn,
    ModelList,
    RepoSpec,
    Session,
    SessionChange,
    SessionList,
    SessionPatch,
    SessionSpec,
)

# (method, path, summary, request model, success status, response model or None)
OPERATIONS: list[tuple[str, str, str, type[BaseModel] | None, int, type[BaseModel] | None]] = [
    ("get", "/models", "Models the caller's workspace may use", None, 200, ModelList),
    ("get", "/workspaces", "Workspaces the caller may use (on JupyterHub: granted by hub groups)", None, 200,
     WorkspaceList),
    ("get", "/workflows", "Named workflows (built-in and the admin's); any folder or git URL works too", None, 200,
     WorkflowList),
    ("get", "/sessions", "List the caller's sessions", None, 200, SessionList),
    ("post", "/sessions", "Create a session (Pending, then Creating, then Running)", SessionSpec, 201, Session),
    ("get", "/sessions/watch", "Websocket: the caller's sessions (a snapshot), then each one that changes or is "
     "deleted (one SessionChange per message)", None, 101, SessionChange),
    ("get", "/sessions/{id}", "One session", None, 200, Session),
    ("patch", "/sessions/{id}", "Rename a session", SessionPatch, 200, Session),
    ("delete", "/sessions/{id}", "Delete a session, its sandbox, workspace and events", None, 204, None),
    ("post", "/sessions/{id}/repos", "Attach a repository", RepoSpec, 202, Session),
    ("post", "/sessions/{id}/workflow", "Attach or switch the workflow (takes effect at once while Running)",
     WorkflowIn, 202, Session),
    ("post", "/sessions/{id}/messages", "Send a message to the agent", MessageIn, 202, MessageAccepted),
    ("post", "/sessions/{id}/answers", "Answer the agent's pending question", AnswerIn, 202, Session),
    ("post", "/sessions/{id}/stop", "Stop the session (resumable)", None, 202, Session),
    ("post", "/sessions/{id}/resume", "Resume a stopped, completed or failed session", None, 202, Session),
    ("post", "/sessions/{id}/clone", "New session with the same configuration, repos and workflow; no history",
     None, 201, Session),
    ("get", "/sessions/{id}/events", "Events with seq > after (replay)", None, 200, EventList),
    ("get", "/sessions/{id}/stream", "Websocket: replay from after, then follow live (one Event per message)",
     None, 101, Event),
    ("get", "/openapi.json", "This document", None, 200, None),
]

_ERRORS = {
    "400": "malformed request",
    "403": "not authenticated",
    "404": "no such session",
    "409": "the operation does not fit the session's phase",
    "422": "invalid input; `detail` names each field",
    "412": "a precondition is missing (e.g. Google Drive not configured or not connected)",
    "502": "an upstream service refused (e.g. Google Drive)",
    "503": "a backend is unavailable (sandbox engine, browser for PDF)",
}


def all_operations() -> list:
    """OPERATIONS plus the feature modules' (export, feedback, Drive)."""
    from .export.routes import OPERATIONS as EXPORT_OPERATIONS

    return OPERATIONS + EXPORT_OPERATIONS


@lru_cache(maxsize=8)
def openapi_document(base_url: str = "/") -> dict:
    operations = all_operations()
    models = {ErrorBody, *(op[3] for op in operations if op[3]), *(op[5] for op in operations if op[5])}
    _, schemas = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    ref = lambda m: {"$ref": f"#/components/schemas/{m.__name__}"}  # noqa: E731
    paths: dict[str, dict] = {}
    for method, path, summary, req, status, resp in operations:
        op: dict = {"summary": summary, "operationId": f"{method}_{path}".replace("/", "_").strip("_"),
                    "responses": {}}
        params = []
        if "{id}" in path:
            params.append({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}})
        if path.endswith(("/events", "/stream")):
            params.append({"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}})
        if path.endswith("/events"):
            params.append({"name": "limit", "in": "query",
                           "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}})
        if path == "/models":
            params.append({"name": "workspace", "in": "query", "schema": {"type": "string"},
                           "description": "default: the caller's primary workspace (see GET /workspaces)"})
        if path.endswith("/export") and method == "get":
            params.append({"name": "format", "in": "query",
                           "schema": {"type": "string", "enum": ["markdown", "pdf", "ipynb", "json"],
                                      "default": "markdown"}})
            params.append({"name": "include_thinking", "in": "query", "schema": {"type": "boolean", "default": False}})
        if path == "/drive/connect":
            params.append({"name": "redirect", "in": "query", "schema": {"type": "string"}})
        if params:
            op["parameters"] = params
        if req is not None:
            # A body whose every field has a default may be left out (POST /sessions with defaults).
            required = bool(req.model_json_schema().get("required"))
            op["requestBody"] = {"required": required, "content": {"application/json": {"schema": ref(req)}}}
        ok: dict = {"description": {101: "Switching protocols", 302: "Redirect"}.get(status, "OK")}
        if resp is not None:
            ok["content"] = {"application/json": {"schema": ref(resp)}}
        elif path.endswith("/export") and method == "get":  # a file download, not JSON
            ok["content"] = {m: {"schema": {"type": "string", "format": "binary"}} for m in
                             ("text/markdown", "application/pdf", "application/x-ipynb+json", "application/json")}
        op["responses"][str(status)] = ok
        for code, text in _ERRORS.items():
            op["responses"][code] = {"description": text,
                                     "content": {"application/json": {"schema": ref(ErrorBody)}}}
        if path == "/drive/callback":  # a page for the browser that Google redirects back
            html = {"text/html": {"schema": {"type": "string"}}}
            op["responses"]["200"]["content"] = html
            op["responses"]["400"] = {"description": "Google's answer was unusable (HTML page)", "content": html}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "jupyter-sessions", "version": __version__,
                 "description": "Agent sessions for Jupyter: REST + websocket API."},
        "servers": [{"url": f"{base_url.rstrip('/')}/jupyter-sessions/api"}],
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization",
                                          "description": "`token <jupyter server token>`"}},
        },
        "security": [{"token": []}],
    }
