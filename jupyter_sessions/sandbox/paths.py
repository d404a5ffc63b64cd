"""Workspace confinement: the one rule every backend applies to file paths.

A path is allowed when, after resolving `..` and every symlink, it is /workspace or below it.
Docker sandboxes resolve inside the container (so a symlink to / means the container's /, never
the host's); the local backend resolves on the host with os.path.realpath.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from .base import WORKSPACE, PathOutsideWorkspace


def inside(resolved: str, root: str = WORKSPACE) -> bool:
    """True when an already resolved absolute path is `root` or below it."""
    root = root.rstrip("/") or "/"
    return resolved == root or resolved.startswith(root + "/") or root == "/"


def refuse(path: str, resolved: str) -> PathOutsideWorkspace:
    """The error for an escape, naming both what was asked and where it led."""
    via = "" if posixpath.normpath(path) == resolved else f" (it resolves to {resolved})"
    return PathOutsideWorkspace(
        f"{path!r} is outside the session workspace{via}; file tools only reach {WORKSPACE} and below"
    )


def check_path_arg(path: str) -> str:
    """Reject arguments no backend can resolve (empty, NUL bytes)."""
    if not path or "\x00" in path:
        raise PathOutsideWorkspace(f"invalid path {path!r}")
    return path


def host_path(workspace: Path, path: str) -> Path:
    """Map a sandbox path (relative, /workspace/..., or a host path) to a resolved host path.

    Raises PathOutsideWorkspace when the resolved path leaves the workspace.
    """
    check_path_arg(path)
    root = os.path.realpath(workspace)
    if os.path.isabs(path) and inside(os.path.realpath(path), root):
        return Path(os.path.realpath(path))  # the host path a local command sees (pwd)
    if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
        candidate = os.path.join(root, path[len(WORKSPACE) + 1:])
    else:
        candidate = os.path.join(root, path)  # absolute `path` replaces root: checked below
    resolved = os.path.realpath(candidate)
    if not inside(resolved, root):
        raise refuse(path, resolved)
    return Path(resolved)


def sandbox_cwd(workspace: Path, cwd: str) -> Path:
    """The host directory for a local command's `cwd` (defaults to the workspace itself)."""
    return host_path(workspace, cwd or WORKSPACE)
