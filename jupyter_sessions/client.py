"""A small client for the jupyter-sessions API, for kernels and plain Python.

Where the server is (first match wins):

1. explicit ``SessionsClient(url, token)``;
2. the environment the extension gives the kernels its server starts:
   ``JUPYTER_SESSIONS_SERVER_URL`` (includes the base URL, e.g. ``http://127.0.0.1:8888/user/alice/``)
   and ``JUPYTER_SESSIONS_TOKEN`` (or ``JUPYTERHUB_API_TOKEN`` on a hub);
3. the running servers listed in the Jupyter runtime dir (``jpserver-*.json``), preferring the one
   that started this process (the kernel's parent).

REST calls are blocking (urllib, no extra dependency) and thread-safe, so the magics can use them and
tests can run them with ``asyncio.to_thread``. ``Follower`` follows a session's event stream in a
background thread with its own event loop (tornado websocket) and reconnects from the last seq it
saw, so listeners get every event exactly once, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterable

log = logging.getLogger("jupyter_sessions.client")

API_PREFIX = "jupyter-sessions/api/"
ENV_URL = "JUPYTER_SESSIONS_SERVER_URL"
ENV_TOKEN = "JUPYTER_SESSIONS_TOKEN"
EXPORT_FORMATS = {"markdown": "md", "pdf": "pdf", "ipynb": "ipynb", "json": "json"}


class SessionsError(Exception):
    """An API call failed; `str(e)` is one line meant for the user."""

    def __init__(self, message: str, status: int | None = None, detail: Any = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class ServerNotFound(SessionsError):
    """No Jupyter server with the extension could be located."""


class RouteNotAvailable(SessionsError):
    """The server does not have this route (an older or partial install)."""


class SessionNotFound(SessionsError):
    """The session id is unknown to the server (deleted, or another server's)."""


# --- discovery --------------------------------------------------------------------------------


def _ancestors(pid: int, depth: int = 6) -> list[int]:
    """This process's parent chain on Linux (kernel -> server), best effort elsewhere."""
    out = []
    for _ in range(depth):
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            if not out:
                out.append(os.getppid())
            break
        if pid <= 1:
            break
        out.append(pid)
    return out


def running_servers() -> list[dict]:
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:  # a kernel env without jupyter_server
        return []
    try:
        return list(list_running_servers())
    except Exception:  # a stale or unreadable file must not break discovery
        return []


def discover(url: str | None = None, token: str | None = None) -> tuple[str, str]:
    """Return (server_url_with_base, token)."""
    if url:
        return _norm(url), token if token is not None else (os.environ.get(ENV_TOKEN) or "")
    env_url = os.environ.get(ENV_URL)
    if env_url:
        tok = token if token is not None else (os.environ.get(ENV_TOKEN) or os.environ.get("JUPYTERHUB_API_TOKEN") or "")
        return _norm(env_url), tok
    servers = running_servers()
    if not servers:
        raise ServerNotFound(
            f"no Jupyter server found: set {ENV_URL} (and {ENV_TOKEN}) or pass url= and token=")
    parents = _ancestors(os.getpid())
    chosen = next((s for p in parents for s in servers if s.get("pid") == p), None)
    if chosen is None:
        cwd = os.getcwd()
        under = [s for s in servers if s.get("root_dir") and cwd.startswith(str(s["root_dir"]))]
        chosen = (under or servers)[-1]
    return _norm(chosen["url"]), token if token is not None else (chosen.get("token") or "")


def _norm(url: str) -> str:
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith("/") else url + "/"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def parse_repo(value: str) -> dict:
    """`URL[@branch]` -> {"url", "branch"?}; an '@' that belongs to the URL (git@host:...) stays."""
    value = value.strip()
    head, sep, tail = value.rpartition("@")
    if sep and tail and head:
        rest = head.split("://", 1)[-1]
        if ("/" in rest or ":" in rest) and ":" not in tail:
            return {"url": head, "branch": tail}
    return {"url": value}


# --- REST -------------------------------------------------------------------------------------


@dataclass
class Download:
    data: bytes
    filename: str
    content_type: str


class SessionsClient:
    """The REST API of one server. Methods return parsed JSON (dicts) and raise SessionsError."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30.0):
        self.url, self.token = discover(url, token)
        self.api_url = self.url + API_PREFIX
        self.timeout = timeout
        self._followers: dict[str, Follower] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SessionsClient({self.url!r})"

    # transport
    def _headers(self, extra: dict | None = None) -> dict:
        h = {"Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"token {self.token}"
        h.update(extra or {})
        return h

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https") or not _loopback(self.url):
            return None
        ctx = ssl.create_default_context()  # our own server on loopback: its cert names no host
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _open(self, method: str, path: str, body: Any = None, params: dict | None = None):
        url = self.api_url + path.lstrip("/")
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = None
        headers = self._headers()
        if body is not None or method in ("POST", "PATCH", "PUT"):
            data = json.dumps(body if body is not None else {}).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl())
        except urllib.error.HTTPError as e:
            raise self._error(e, method, path) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SessionsError(f"cannot reach the Jupyter server at {self.url}: {reason}") from None

    def _error(self, e: urllib.error.HTTPError, method: str, path: str) -> SessionsError:
        raw = e.read() or b""
        try:
            payload = json.loads(raw.decode() or "null")
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "error" in payload:
            error, detail = str(payload["error"]), payload.get("detail")
            if isinstance(detail, list) and detail and isinstance(detail[0], dict) and "message" in detail[0]:
                msgs = "; ".join(f"{d.get('field', '')}: {d['message']}".strip(": ") for d in detail)
                error = msgs if error.startswith("invalid value") else f"{error} ({msgs})" if msgs not in error else error
            cls = SessionNotFound if e.code == 404 else SessionsError
            return cls(_one_line(error), e.code, detail)
        if e.code == 404:
            route = path.split("?")[0]
            return RouteNotAvailable(f"{method} {route} is not available on this server (HTTP 404); "
                                     "it needs a newer jupyter-sessions there", 404)
        if e.code in (401, 403):
            return SessionsError(f"not authorized by the Jupyter server at {self.url} (HTTP {e.code}): check the token", e.code)
        message = (payload or {}).get("message") if isinstance(payload, dict) else None
        return SessionsError(_one_line(f"HTTP {e.code} from {method} {path}: {message or e.reason}"), e.code)

    def request(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        with self._open(method, path, body, params) as resp:
            raw = resp.read()
        return json.loads(raw.decode()) if raw else None

    # API
    def models(self) -> dict:
        return self.request("GET", "models")

    def sessions(self) -> list[dict]:
        return self.request("GET", "sessions")["sessions"]

    def session(self, sid: str) -> dict:
        return self.request("GET", f"sessions/{_q(sid)}")

    def create(self, spec: dict | None = None, **settings: Any) -> dict:
        body = {**(spec or {}), **{k: v for k, v in settings.items() if v is not None}}
        return self.request("POST", "sessions", body)

    def rename(self, sid: str, display_name: str) -> dict:
        return self.request("PATCH", f"sessions/{_q(sid)}", {"display_name": display_name})

    def delete(self, sid: str) -> None:
        self.request("DELETE", f"sessions/{_q(sid)}")
        with self._lock:
            f = self._followers.pop(sid, None)
        if f is not None:
            f.stop()

    def add_repo(self, sid: str, url: str, branch: str | None = None, name: str | None = None) -> dict:
        body = {"url": url, **({"branch": branch} if branch else {}), **({"name": name} if name else {})}
        return self.request("POST", f"sessions/{_q(sid)}/repos", body)

    def send(self, sid: str, text: str) -> dict:
        return self.request("POST", f"sessions/{_q(sid)}/messages", {"text": text})

    def answer(self, sid: str, tool_call_id: str, answers: list) -> dict:
        return self.request("POST", f"sessions/{_q(sid)}/answers", {"tool_call_id": tool_call_id, "answers": answers})

    def stop(self, sid: str) -> dict:
        return self.request("POST", f"sessions/{_q(sid)}/stop")

    def resume(self, sid: str) -> dict:
        return self.request("POST", f"sessions/{_q(sid)}/resume")

    def clone(self, sid: str) -> dict:
        return self.request("POST", f"sessions/{_q(sid)}/clone")

    def feedback(self, sid: str, message_id: str, rating: str, comment: str | None = None) -> Any:
        body = {"message_id": message_id, "rating": rating, **({"comment": comment} if comment else {})}
        return self.request("POST", f"sessions/{_q(sid)}/feedback", body)

    def export(self, sid: str, format: str = "markdown") -> Download:
        if format not in EXPORT_FORMATS:
            raise SessionsError(f"unknown export format {format!r}: use one of {', '.join(EXPORT_FORMATS)}")
        with self._open("GET", f"sessions/{_q(sid)}/export", params={"format": format}) as resp:
            data = resp.read()
            ctype = resp.headers.get("Content-Type", "")
            disp = resp.headers.get("Content-Disposition", "")
        filename = ""
        if "filename=" in disp:
            filename = disp.split("filename=", 1)[1].split(";")[0].strip().strip('"')
        return Download(data, os.path.basename(filename), ctype)

    def events(self, sid: str, after: int = 0) -> list[dict]:
        """Every stored event after `after` (pages through the log)."""
        out: list[dict] = []
        while True:
            page = self.request("GET", f"sessions/{_q(sid)}/events", params={"after": after, "limit": 1000})
            out.extend(page["events"])
            if len(page["events"]) < 1000:
                return out
            after = page["events"][-1]["seq"]

    def resolve(self, ref: str) -> dict:
        """A session by id, unique id prefix or exact display name."""
        ref = ref.strip()
        try:
            return self.session(ref)
        except SessionNotFound:
            pass
        rows = self.sessions()
        hits = [s for s in rows if s["id"].startswith(ref) or s["id"] == "s-" + ref] or \
               [s for s in rows if s["display_name"] == ref]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise SessionNotFound(f"no session {ref!r}: `%session list` shows yours", 404)
        raise SessionsError(f"{ref!r} matches {len(hits)} sessions ({', '.join(s['id'] for s in hits[:5])}): give more of the id")

    # streaming
    def ws_url(self, sid: str, after: int) -> str:
        base = "ws" + self.api_url[4:] if self.api_url.startswith("http") else self.api_url
        return f"{base}sessions/{_q(sid)}/stream?after={int(after)}"

    def follower(self, sid: str) -> "Follower":
        """The one shared follower of `sid` for this client (started on first use)."""
        with self._lock:
            f = self._followers.get(sid)
            if f is None or f.stopping:
                f = self._followers[sid] = Follower(self, sid)
            return f

    def stream(self, sid: str, after: int = 0, timeout: float | None = None) -> Iterable[dict]:
        """Blocking iterator over events after `after`, live; ends when the session is deleted or
        nothing arrives for `timeout` seconds."""
        import queue

        q: queue.Queue = queue.Queue()
        f = Follower(self, sid, after=after, keep=False)
        f.subscribe(lambda evs: [q.put(e) for e in evs], on_status=lambda s: s == "closed" and q.put(None))
        try:
            while True:
                try:
                    ev = q.get(timeout=timeout)
                except queue.Empty:
                    return
                if ev is None:
                    return
                yield ev
        finally:
            f.stop()


def _q(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


# --- following ----------------------------------------------------------------------------------

Listener = Callable[[list[dict]], None]
StatusListener = Callable[[str], None]

#: Consecutive content deltas of one message/tool call merge into one event (see `compact`).
MERGEABLE = {"TEXT_MESSAGE_CONTENT": "messageId", "REASONING_MESSAGE_CONTENT": "messageId",
             "TOOL_CALL_ARGS": "toolCallId"}


def compact_into(log_: list[dict], ev: dict) -> None:
    """Append `ev`, merging it into the last event when both are deltas of the same stream.

    A merged event keeps the first seq as `seq0` and the last as `seq`; readers that concatenate
    deltas (transcript.fold, the JS reducer) read the merged log exactly as the original one.
    """
    key = MERGEABLE.get(ev["type"])
    if key and log_:
        last = log_[-1]
        if last["type"] == ev["type"] and last["data"].get(key) == ev["data"].get(key):
            log_[-1] = {**last, "seq": ev["seq"], "seq0": last.get("seq0", last["seq"]),
                        "data": {**last["data"], "delta": last["data"].get("delta", "") + ev["data"].get("delta", "")}}
            return
    log_.append(ev)


class Follower:
    """Follows one session's stream in a daemon thread; reconnects from the last seq.

    Listeners get batches of events in seq order (each event once). A follower keeps the compacted
    history (`keep=True`) so a listener that subscribes late first receives everything so far.
    Status callbacks get: "connecting", "live", "reconnecting: <why>", "closed" (session deleted).
    """

    flush_interval = 0.08

    def __init__(self, client: SessionsClient, sid: str, after: int = 0, keep: bool = True):
        self.client, self.sid = client, sid
        self.last_seq = after
        self.keep = keep
        self.history: list[dict] = []
        self.status = "connecting"
        self.finished = False
        self._listeners: list[tuple[Listener, StatusListener | None]] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._loaded = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws = None

    # listeners
    def subscribe(self, on_events: Listener, on_status: StatusListener | None = None) -> list[dict]:
        """Register a listener; returns the history so far (the listener gets only newer events)."""
        self._load()
        with self._lock:
            self._listeners.append((on_events, on_status))
            history = list(self.history) if self.keep else []
            self._start()
        if not self.keep and history == [] and on_status:
            on_status(self.status)
        return history

    def unsubscribe(self, on_events: Listener) -> None:
        """Remove a listener; the last one leaving stops the follower (the client makes a new one)."""
        with self._lock:
            self._listeners = [x for x in self._listeners if x[0] is not on_events]
            idle = not self._listeners and self._thread is not None
        if idle:
            self.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or self.finished

    def _load(self) -> None:
        """Read the stored log synchronously once, so the first view has the history at once."""
        with self._lock:
            if self._loaded or not self.keep:
                self._loaded = True
                return
            for ev in self.client.events(self.sid, self.last_seq):
                if ev["seq"] > self.last_seq:
                    compact_into(self.history, ev)
                    self.last_seq = ev["seq"]
            self._loaded = True

    def _emit(self, batch: list[dict]) -> None:
        with self._lock:
            fresh = [e for e in batch if e["seq"] > self.last_seq]
            if not fresh:
                return
            self.last_seq = fresh[-1]["seq"]
            if self.keep:
                for e in fresh:
                    compact_into(self.history, e)
            listeners = list(self._listeners)
        for cb, _ in listeners:
            try:
                cb(fresh)
            except Exception:  # one broken view must not stop the others
                log.exception("session listener failed")

    def _set_status(self, status: str) -> None:
        with self._lock:
            if status == self.status:
                return
            self.status = status
            listeners = list(self._listeners)
        for _, cb in listeners:
            if cb is not None:
                try:
                    cb(status)
                except Exception:
                    log.exception("session status listener failed")

    # thread
    def _start(self) -> None:
        if self._thread is None and not self.finished:
            self._thread = threading.Thread(target=self._run, name=f"jupyter-sessions-follow-{self.sid}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        loop, ws = self._loop, self._ws
        if loop is not None and ws is not None:
            try:
                loop.call_soon_threadsafe(ws.close)
            except RuntimeError:
                pass

    def drop_connection(self) -> None:
        """Close the current websocket (the follower reconnects); for tests and network changes."""
        loop, ws = self._loop, self._ws
        if loop is not None and ws is not None:
            loop.call_soon_threadsafe(ws.close)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("session follower crashed")
        finally:
            self.finished = True
            if self.status != "closed":
                self._set_status("closed" if self._stop.is_set() else "error: follower stopped")

    async def _main(self) -> None:
        from tornado.httpclient import HTTPClientError, HTTPRequest
        from tornado.websocket import websocket_connect

        self._loop = asyncio.get_running_loop()
        backoff = 0.25
        while not self._stop.is_set():
            headers = {"Authorization": f"token {self.client.token}"} if self.client.token else {}
            req = HTTPRequest(self.client.ws_url(self.sid, self.last_seq), headers=headers,
                              connect_timeout=10, request_timeout=None,
                              validate_cert=not (self.client.url.startswith("https") and _loopback(self.client.url)))
            try:
                ws = await websocket_connect(req, ping_interval=20, ping_timeout=20)
            except HTTPClientError as e:
                if e.code == 404:
                    self._set_status("closed")
                    return
                why = "not authorized (check the token)" if e.code in (401, 403) else f"HTTP {e.code}"
                self._set_status(f"reconnecting: {why}")
            except Exception as e:  # refused, reset, DNS: the server may be restarting
                self._set_status(f"reconnecting: {_one_line(str(e) or type(e).__name__, 80)}")
            else:
                self._ws = ws
                self._set_status("live")
                backoff = 0.25
                closed_by_server = await self._pump(ws)
                self._ws = None
                if closed_by_server and ws.close_code == 1000 and "deleted" in (ws.close_reason or ""):
                    self._set_status("closed")
                    return
                if self._stop.is_set():
                    return
                self._set_status("reconnecting: connection lost")
            await self._sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.1, end - time.monotonic()))

    async def _pump(self, ws) -> bool:
        """Read until the socket closes; returns True when the server closed it."""
        buffer: list[dict] = []
        first = 0.0
        pending: asyncio.Future | None = None
        try:
            while not self._stop.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(ws.read_message())
                wait = max(0.0, self.flush_interval - (time.monotonic() - first)) if buffer else 0.5
                done, _ = await asyncio.wait({pending}, timeout=wait)
                if not done:
                    if buffer:
                        self._emit(buffer)
                        buffer = []
                    continue
                msg = pending.result()
                pending = None
                if msg is None:
                    return True
                try:
                    ev = json.loads(msg)
                except ValueError:
                    continue
                if not buffer:
                    first = time.monotonic()
                buffer.append(ev)
                if time.monotonic() - first >= self.flush_interval or len(buffer) >= 500:
                    self._emit(buffer)
                    buffer = []
            return False
        finally:
            if buffer:
                self._emit(buffer)
            if pending is not None and not pending.done():
                pending.cancel()
            ws.close()
