"""Server-side git clones into a session's workspace.

Credentials are used for the clone only: they travel as a one-off `-c http.extraHeader` on the git
command line (never written into `.git/config`), the remote URL is stored without user info, and
every error message is scrubbed before it reaches an event.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .models import RepoSpec


class CloneError(RuntimeError):
    pass


@dataclass
class CloneResult:
    path: Path
    branch: str
    commit: str


def strip_userinfo(url: str) -> str:
    """The URL without `user:token@` (what may be shown and stored)."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def _auth_header(url: str, credentials: dict[str, str]) -> str | None:
    """A Basic auth header for https URLs whose host has a configured token (or embedded userinfo)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    if parts.username:
        user, token = parts.username, parts.password or ""
    elif parts.hostname in credentials:
        user, token = "x-access-token", credentials[parts.hostname]
    else:
        return None
    raw = base64.b64encode(f"{user}:{token}".encode()).decode()
    return f"Authorization: Basic {raw}"


def repo_host(url: str) -> str:
    """The host a repo URL points at (`local` for a server path); scp-style `git@host:repo` too."""
    if is_local(url):
        return "local"
    m = re.match(r"^[\w.-]+@([\w.-]+):", url)
    if m and "://" not in url:
        return m.group(1).lower()
    return (urlsplit(url).hostname or "").lower()


def is_local(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "[secret masked]")
    return re.sub(r"(https?://)[^/@\s]+@", r"\1", text)


async def _git(*args: str, cwd: Path | None = None, timeout: float = 300, secrets: list[str] = ()) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "LANG": "C.UTF-8",
    }
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=str(cwd) if cwd else None, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise CloneError(f"git {args[0]} took longer than {timeout:.0f} s") from None
    except asyncio.CancelledError:  # Stop/Delete during Creating: leave no git behind
        proc.kill()
        raise
    if proc.returncode != 0:
        msg = err.decode(errors="replace").strip().splitlines()
        raise CloneError(_scrub(msg[-1] if msg else f"git {args[0]} failed", list(secrets)))
    return out.decode(errors="replace").strip()


async def clone(
    repo: RepoSpec,
    dest: Path,
    *,
    credentials: dict[str, str] | None = None,
    allow_local: bool = True,
    timeout: float = 300,
) -> CloneResult:
    """Clone `repo` into `dest` (which must not exist yet) and check out its branch."""
    credentials = credentials or {}
    url = repo.url
    secrets = [v for v in credentials.values()] + [urlsplit(url).password or ""]
    if is_local(url):
        if not allow_local:
            raise CloneError("cloning from a local path is disabled on this server (allow_local_repos)")
        if not Path(url).expanduser().exists():
            raise CloneError(f"no such local repository: {url}")
        url = str(Path(url).expanduser().resolve())
    if dest.exists():
        raise CloneError(f"the folder repos/{dest.name} already exists in the workspace")
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = []
    header = _auth_header(url, credentials)
    if header:
        args += ["-c", f"http.extraHeader={header}"]
    args += ["clone", "--quiet"]
    if repo.branch:
        args += ["--branch", repo.branch]
    args += ["--", strip_userinfo(url) if header else url, str(dest)]
    try:
        await _git(*args, timeout=timeout, secrets=secrets)
        clean = strip_userinfo(repo.url)
        await _git("remote", "set-url", "origin", clean if not is_local(clean) else url, cwd=dest, secrets=secrets)
        branch = await _git("rev-parse", "--abbrev-ref", "HEAD", cwd=dest)
        commit = await _git("rev-parse", "HEAD", cwd=dest)
    except CloneError:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return CloneResult(path=dest, branch=branch, commit=commit)
