"""Sandbox backends: where a session's commands and file tools run.

`make_backend("docker" | "local" | "swarm" | "kubernetes", **config)` builds one from the server's
settings; the backends live in their own modules so importing this package never needs the docker SDK.
"""

from __future__ import annotations

import inspect
import logging

from .base import (
    WORKSPACE, ExecResult, Limits, PathOutsideWorkspace, Sandbox, SandboxBackend, SandboxError, SandboxGone,
    SandboxInfo, SandboxUnavailable,
)

__all__ = [
    "WORKSPACE", "ExecResult", "Limits", "PathOutsideWorkspace", "Sandbox", "SandboxBackend", "SandboxError",
    "SandboxGone", "SandboxInfo", "SandboxUnavailable", "BACKENDS", "make_backend",
]

log = logging.getLogger("jupyter_sessions.sandbox")


def _docker():
    from .docker import DockerBackend

    return DockerBackend


def _local():
    from .local import LocalBackend

    return LocalBackend


def _swarm():
    from .swarm import SwarmBackend

    return SwarmBackend


def _kubernetes():
    from .kubernetes import KubernetesBackend

    return KubernetesBackend


BACKENDS = {"docker": _docker, "local": _local, "swarm": _swarm, "kubernetes": _kubernetes}


def make_backend(name: str, **config) -> SandboxBackend:
    """The backend called `name`, given the settings it accepts.

    Settings another backend uses (e.g. `image` for local) are dropped, so one config dict from the
    server serves every backend; None values mean "the backend's default".
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKENDS)}")
    cls = BACKENDS[name]()
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in config.items() if k in accepted and v is not None}
    ignored = sorted(set(config) - set(kwargs))
    if ignored:
        log.debug("sandbox backend %s ignores settings: %s", name, ", ".join(ignored))
    return cls(**kwargs)
