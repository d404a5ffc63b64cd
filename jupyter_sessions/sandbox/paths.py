"""Workspace confinement: the one rule every backend applies to file paths.

A path is allowed when, after resolving `..` and every symlink, it is /workspace or below it.
Docker sandboxes resolve inside the container (so a symlink to / means the container's /, never
the host's); the local backend resolves on the host with os.path.realpath.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

from .base import WORKSPACE, PathOutsideWorkspace, SandboxError


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


# -- container backends: resolve inside the sandbox with one shell call ------------------------------
# Print "<kind> <mode>\n<resolved>" (kind: d, f, o(ther) or n(one)); with "mkdir", create the parents.
RESOLVE_SCRIPT = r"""p=$(realpath -m -- "$1") || exit 2
if [ -d "$p" ]; then k=d; elif [ -f "$p" ]; then k=f; elif [ -e "$p" ]; then k=o; else k=n; fi
m=$(stat -c %a -- "$p" 2>/dev/null) || m=644
if [ "$2" = mkdir ] && [ "$k" = n ]; then
  case "$p" in /workspace/*) mkdir -p -- "${p%/*}" || exit 3;; esac
fi
printf '%s %s\n%s' "$k" "$m" "$p"
"""


def resolve_command(path: str, mkdir: bool = False) -> list[str]:
    """The command that resolves `path` in a container (run it as the sandbox user)."""
    check_path_arg(path)
    return ["bash", "-c", RESOLVE_SCRIPT, "resolve", path, "mkdir" if mkdir else ""]


def parse_resolved(path: str, code: int | None, out: bytes, err: bytes) -> tuple[str, str, str]:
    """(kind, octal mode, resolved path) from resolve_command's result; refuses escapes first."""
    if code not in (0, 3) or not out:
        raise SandboxError(f"cannot resolve {path!r}: {err.decode(errors='replace').strip()}")
    head, _, resolved = out.decode("utf-8", "surrogateescape").partition("\n")
    kind, mode = head.split()
    if not inside(resolved):
        raise refuse(path, resolved)
    if code == 3:
        raise SandboxError(f"cannot create the folder for {path!r}: {err.decode(errors='replace').strip()}")
    return kind, mode, resolved


def require_file(kind: str, path: str) -> None:
    """Raise the error a read of something other than a regular file deserves."""
    if kind == "n":
        raise FileNotFoundError(f"no such file: {path}")
    if kind == "d":
        raise IsADirectoryError(f"{path} is a directory")
    if kind != "f":
        raise SandboxError(f"{path} is not a regular file")
