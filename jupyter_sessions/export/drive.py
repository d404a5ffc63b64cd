"""Save exports to the user's Google Drive with Google's own client libraries.

* OAuth: the admin configures an OAuth client (id, secret); each user connects once (authorization
  code flow with PKCE, offline access), and the refresh token is stored server-side for that user
  (`drive_tokens`), never sent to a browser, a kernel or a sandbox.
* Upload: `google-api-python-client`'s Drive v3 service built from its bundled discovery document
  with `rootUrl` set to the configured endpoint, authorized by `google-auth` credentials
  (`google.oauth2.credentials.Credentials` + `google_auth_httplib2.AuthorizedHttp`): an expired
  access token is refreshed against the configured token URI before the request (and once more on
  a 401), and the new token is stored. Files go up as one multipart request.

Everything that talks to Google is blocking (httplib2), so it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..feedback_store import FeedbackStore, aware

DRIVE_FILE_SCOPE = "https://www.googleapis.com/auth/drive.file"


@dataclass
class DriveConfig:
    client_id: str | None = None
    client_secret: str | None = None
    auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_uri: str = "https://oauth2.googleapis.com/token"
    api_root: str = "https://www.googleapis.com/"  # Drive API root (rootUrl of the discovery document)
    scopes: list[str] = field(default_factory=lambda: [DRIVE_FILE_SCOPE])
    folder_id: str | None = None  # upload into this folder; default: the user's My Drive
    redirect_uri: str | None = None  # default: this server's .../drive/callback as the browser reached it
    timeout: float = 60.0

    def missing(self) -> list[str]:
        return [name for name in ("client_id", "client_secret") if not getattr(self, name)]

    @property
    def configured(self) -> bool:
        return not self.missing()

    def secrets(self) -> list[str]:
        return [s for s in (self.client_secret,) if s]


class DriveError(Exception):
    """Drive answered with an error (status is Drive's HTTP status; 0 for a transport failure)."""

    def __init__(self, status: int, message: str, reason: str | None = None):
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


class DriveNotConnected(Exception):
    """The user has no (working) Drive grant; connect again."""


@dataclass
class Uploaded:
    file_id: str
    name: str
    link: str | None
    mime_type: str


def _naive_utc(dt: datetime | None) -> datetime | None:
    """google-auth compares expiry with a naive UTC clock."""
    if dt is None:
        return None
    return aware(dt).astimezone(timezone.utc).replace(tzinfo=None)


class DriveService:
    """Per-user Drive grants and uploads."""

    def __init__(self, config: DriveConfig, store):
        self.config = config
        self.db = FeedbackStore(store)
        self._pending: dict[str, dict] = {}  # OAuth state -> {user, redirect_uri, verifier, at}

    # status -----------------------------------------------------------------------------------
    async def status(self, user: str) -> dict:
        tok = await self.db.get_drive_token(user) if self.config.configured else None
        return {"configured": self.config.configured, "connected": tok is not None,
                "missing": self.config.missing(), "scopes": (tok or {}).get("scopes", "").split() or None}

    # connect (authorization code + PKCE) ------------------------------------------------------
    def authorization_url(self, user: str, redirect_uri: str) -> str:
        now = time.monotonic()
        self._pending = {k: v for k, v in self._pending.items() if now - v["at"] < 900}
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(64)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        self._pending[state] = {"user": user, "redirect_uri": redirect_uri, "verifier": verifier, "at": now}
        query = {
            "client_id": self.config.client_id, "redirect_uri": redirect_uri, "response_type": "code",
            "scope": " ".join(self.config.scopes), "access_type": "offline", "prompt": "consent",
            "include_granted_scopes": "true", "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return self.config.auth_uri + ("&" if "?" in self.config.auth_uri else "?") + urllib.parse.urlencode(query)

    async def complete(self, user: str, state: str, code: str) -> None:
        """Exchange the authorization code and store the grant for `user`."""
        pending = self._pending.pop(state, None)
        if pending is None or pending["user"] != user:
            raise DriveNotConnected("the Drive connection request expired or belongs to someone else; start again")
        data = await asyncio.to_thread(self._token_request, {
            "grant_type": "authorization_code", "code": code, "redirect_uri": pending["redirect_uri"],
            "client_id": self.config.client_id, "client_secret": self.config.client_secret,
            "code_verifier": pending["verifier"]})
        refresh = data.get("refresh_token")
        if not refresh:
            raise DriveNotConnected("Google returned no refresh token; remove this app's access in your Google "
                                    "account settings and connect again")
        expiry = datetime.now(timezone.utc) + timedelta(seconds=int(data.get("expires_in") or 0))
        await self.db.put_drive_token(user, refresh_token=refresh, access_token=data.get("access_token"),
                                      expiry=expiry, scopes=data.get("scope") or " ".join(self.config.scopes))

    def _token_request(self, form: dict) -> dict:
        """POST to the token URI through google-auth's transport."""
        import google.auth.transport.requests

        request = google.auth.transport.requests.Request()
        resp = request(url=self.config.token_uri, method="POST", body=urllib.parse.urlencode(form),
                       headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=self.config.timeout)
        try:
            data = json.loads(resp.data or b"{}")
        except ValueError:
            data = {}
        if resp.status != 200:
            raise DriveNotConnected(f"Google refused the authorization code ({resp.status}: "
                                    f"{data.get('error_description') or data.get('error') or 'no detail'})")
        return data

    async def disconnect(self, user: str) -> bool:
        return await self.db.delete_drive_token(user)

    # upload -----------------------------------------------------------------------------------
    async def upload(self, user: str, name: str, data: bytes, mime_type: str) -> Uploaded:
        tok = await self.db.get_drive_token(user)
        if tok is None:
            raise DriveNotConnected("Google Drive is not connected for this user")
        from google.oauth2.credentials import Credentials

        creds = Credentials(
            token=tok["access_token"], refresh_token=tok["refresh_token"], token_uri=self.config.token_uri,
            client_id=self.config.client_id, client_secret=self.config.client_secret,
            scopes=tok["scopes"].split() or self.config.scopes, expiry=_naive_utc(tok["expiry"]))
        try:
            result = await asyncio.to_thread(self._upload, creds, name, data, mime_type)
        finally:
            if creds.token and creds.token != tok["access_token"]:  # refreshed: keep the new token
                await self.db.put_drive_token(user, access_token=creds.token,
                                              expiry=creds.expiry.replace(tzinfo=timezone.utc) if creds.expiry else None,
                                              refresh_token=creds.refresh_token if creds.refresh_token != tok["refresh_token"] else None)
        return result

    def _service(self, creds):
        import googleapiclient
        import google_auth_httplib2
        from googleapiclient.discovery import build_from_document
        from googleapiclient.http import build_http

        doc_path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "drive.v3.json"
        doc = json.loads(doc_path.read_text())
        root = self.config.api_root if self.config.api_root.endswith("/") else self.config.api_root + "/"
        doc["rootUrl"] = root
        doc["baseUrl"] = root + doc["servicePath"]
        http = build_http()
        http.timeout = self.config.timeout
        return build_from_document(doc, http=google_auth_httplib2.AuthorizedHttp(creds, http=http))

    def _upload(self, creds, name: str, data: bytes, mime_type: str) -> Uploaded:
        import google.auth.exceptions
        from googleapiclient.errors import HttpError
        from googleapiclient.http import MediaIoBaseUpload

        meta: dict[str, Any] = {"name": name, "mimeType": mime_type}
        if self.config.folder_id:
            meta["parents"] = [self.config.folder_id]
        media = MediaIoBaseUpload(io.BytesIO(data), mimetype=mime_type, resumable=False)
        try:
            service = self._service(creds)
            f = service.files().create(body=meta, media_body=media, fields="id,name,webViewLink,mimeType",
                                       supportsAllDrives=True).execute(num_retries=2)
        except google.auth.exceptions.RefreshError as e:
            raise DriveNotConnected(f"Google refused to refresh the Drive access ({_refresh_reason(e)}); "
                                    "connect Google Drive again") from None
        except HttpError as e:
            raise _drive_error(e) from None
        except (OSError, TimeoutError) as e:
            raise DriveError(0, f"could not reach Google Drive: {e}") from None
        return Uploaded(file_id=f["id"], name=f.get("name", name), link=f.get("webViewLink"),
                        mime_type=f.get("mimeType", mime_type))


def _refresh_reason(e: Exception) -> str:
    args = getattr(e, "args", ())
    return str(args[0]) if args else type(e).__name__


def _drive_error(e) -> DriveError:
    status = int(getattr(e.resp, "status", 0) or 0)
    message, reason = getattr(e, "reason", "") or "", None
    try:
        body = json.loads(e.content or b"{}")
        err = body.get("error") or {}
        message = err.get("message") or message
        reasons = [x.get("reason") for x in err.get("errors") or [] if x.get("reason")]
        reason = reasons[0] if reasons else err.get("status")
    except (ValueError, AttributeError):
        pass
    return DriveError(status, message or f"HTTP {status}", reason)
