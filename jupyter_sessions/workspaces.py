"""Which workspaces the server's owner may use.

A workspace (`c.SessionsApp.workspaces = {name: {...}}`, settings in `manager.WorkspaceSettings`) is
a named scope: feature flags (e.g. `model.claude-opus-4-6` for a gated model), default model,
inactivity timeout. A workspace with `groups` is open only to members of those JupyterHub groups;
one without is open to everyone. Outside JupyterHub (no group information) every configured
workspace is open, and `default` always exists.

A request that names no workspace gets the owner's *primary* one: the first workspace (in config
order) granted through a group, else `default`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .catalogue import SpecError


class WorkspaceInfo(BaseModel):
    name: str
    primary: bool = Field(default=False, description="used when a request names no workspace")
    features: list[str] = Field(default_factory=list)
    default_model: str | None = None
    inactivity_timeout: int


class WorkspaceList(BaseModel):
    workspaces: list[WorkspaceInfo]
    primary: str


class WorkspaceAccess:
    """Resolves workspace names for the server's owner (group-aware on JupyterHub)."""

    def __init__(self, workspaces: dict[str, Any], groups=None):
        self.workspaces = workspaces  # the manager's dict (name -> WorkspaceSettings), shared
        self.groups = groups  # hub.HubGroups, or None outside JupyterHub

    async def user_groups(self) -> set[str] | None:
        return None if self.groups is None else set(await self.groups.groups())

    async def available(self) -> list[Any]:
        mine = await self.user_groups()
        if mine is None:
            return list(self.workspaces.values())
        return [w for w in self.workspaces.values() if not _groups(w) or set(_groups(w)) & mine]

    async def primary(self) -> Any:
        spaces = await self.available()
        mine = await self.user_groups() or set()
        for w in spaces:
            if set(_groups(w)) & mine:
                return w
        for w in spaces:
            if w.name == "default":
                return w
        if spaces:
            return spaces[0]
        raise SpecError("workspace", "you have no workspace on this server: ask the admin to add you to a hub "
                        "group that grants one", status=403)

    async def resolve(self, name: str | None, unknown_status: int = 422) -> Any:
        """The named workspace, or the primary one for None; SpecError when unknown or not yours (403)."""
        if name is None:
            return await self.primary()
        if name not in self.workspaces:
            mine = ", ".join(w.name for w in await self.available()) or "none"
            raise SpecError("workspace", f"unknown workspace {name!r}; yours: {mine}", status=unknown_status)
        if name not in {w.name for w in await self.available()}:
            groups = ", ".join(_groups(self.workspaces[name]))
            raise SpecError("workspace", f"workspace {name!r} is only for members of the hub group(s) {groups}",
                            status=403)
        return self.workspaces[name]

    async def listing(self) -> WorkspaceList:
        spaces = await self.available()
        primary = (await self.primary()).name if spaces else ""
        return WorkspaceList(primary=primary, workspaces=[
            WorkspaceInfo(name=w.name, primary=w.name == primary, features=list(w.features),
                          default_model=w.default_model, inactivity_timeout=w.inactivity_timeout)
            for w in spaces])


def _groups(w: Any) -> list[str]:
    return list(getattr(w, "groups", None) or [])
