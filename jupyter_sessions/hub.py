"""JupyterHub integration: which hub groups the server's owner belongs to.

A single-user server runs for one hub user. Workspaces (`c.SessionsApp.workspaces`) may name the hub
groups whose members get them (`{"research": {"groups": ["research"], ...}}`); this module finds the
owner's groups, in this order:

1. `JUPYTER_SESSIONS_GROUPS` (comma-separated) in the server's environment, when the admin sets it
   (e.g. from `c.Spawner.environment` with a callable, or in a KubeSpawner profile);
2. the hub's REST API, `GET $JUPYTERHUB_API_URL/user` with the server's own `$JUPYTERHUB_API_TOKEN`:
   JupyterHub always lets a token read its owner's name and groups there (the "identify" scopes),
   so no extra scopes are needed. Answers are cached for `ttl` seconds, so group changes made by an
   admin reach a running server within that time; when the hub cannot be reached the last answer
   is kept.

Outside JupyterHub there are no groups (`HubGroups.from_env()` returns None) and every configured
workspace is open to the server's owner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

log = logging.getLogger("jupyter_sessions.hub")

GROUPS_ENV = "JUPYTER_SESSIONS_GROUPS"


def on_jupyterhub() -> bool:
    return bool(os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get("JUPYTERHUB_API_URL"))


class HubGroups:
    """The server owner's hub groups, fetched from the hub API and cached."""

    def __init__(self, api_url: str | None = None, token: str | None = None, *, ttl: float = 60.0,
                 static: list[str] | None = None, timeout: float = 20.0):
        self.api_url = (api_url or "").rstrip("/")
        self.token = token or ""
        self.ttl = ttl
        self.static = None if static is None else sorted({g.strip() for g in static if g.strip()})
        self.timeout = timeout
        self._cached: list[str] | None = None
        self._at = 0.0
        self._fetching: asyncio.Future | None = None

    @classmethod
    def from_env(cls, ttl: float = 60.0) -> HubGroups | None:
        """Groups for this server: from JUPYTER_SESSIONS_GROUPS, else the hub API; None off-hub."""
        raw = os.environ.get(GROUPS_ENV)
        if raw is not None:
            return cls(static=raw.split(","), ttl=ttl)
        if on_jupyterhub():
            return cls(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"], ttl=ttl)
        return None

    async def groups(self) -> list[str]:
        if self.static is not None:
            return self.static
        if self._cached is not None and time.monotonic() - self._at < self.ttl:
            return self._cached
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.ensure_future(self._fetch())
        try:
            fresh = await asyncio.shield(self._fetching)
        except Exception as e:  # the hub is down or refuses: keep what we knew
            log.warning("jupyter-sessions could not read the user's groups from the hub: %s", e)
            return self._cached or []
        self._cached, self._at = fresh, time.monotonic()
        return fresh

    async def _fetch(self) -> list[str]:
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest

        req = HTTPRequest(f"{self.api_url}/user", headers={"Authorization": f"token {self.token}"},
                          request_timeout=self.timeout, connect_timeout=self.timeout)
        resp = await AsyncHTTPClient().fetch(req)
        model = json.loads(resp.body)
        groups = model.get("groups")
        if groups is None:
            raise RuntimeError("the hub's user model has no 'groups' (token scopes too narrow?)")
        return sorted(str(g) for g in groups)
