"""Workflows: built-in and custom plans for the agent (Ambient's `.ambient/ambient.json` layout).

`loader` parses workflow strings, loads and places workflow folders; `service` applies them to
sessions (at provisioning, on resume, and when attached while Running).
"""

from __future__ import annotations

from .loader import (
    BUILTIN_DIR,
    AmbientManifest,
    Command,
    Loader,
    Workflow,
    WorkflowError,
    WorkflowIn,
    WorkflowInfo,
    WorkflowList,
    WorkflowSource,
    builtin_names,
    list_workflows,
    load_folder,
    parse_source,
)

#: Event types written by the workflow service.
WORKFLOW_ATTACHED = "WORKFLOW_ATTACHED"  # {name, id, source, kind, description, path, artifacts_dir, commands}
WORKFLOW_FAILED = "WORKFLOW_FAILED"  # {source, error}: the session keeps running without it

__all__ = [
    "BUILTIN_DIR",
    "WORKFLOW_ATTACHED",
    "WORKFLOW_FAILED",
    "AmbientManifest",
    "Command",
    "Loader",
    "Workflow",
    "WorkflowError",
    "WorkflowIn",
    "WorkflowInfo",
    "WorkflowList",
    "WorkflowSource",
    "builtin_names",
    "list_workflows",
    "load_folder",
    "parse_source",
]
