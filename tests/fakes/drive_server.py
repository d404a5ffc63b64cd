"""A fake Google OAuth + Drive server: real HTTP on 127.0.0.1 for google-auth and
google-api-python-client pointed at it (token URI, auth URI, Drive root URL).

* `GET /o/oauth2/auth`: consent granted at once: redirects to redirect_uri with code and state
  (the PKCE challenge is remembered for the code).
* `POST /token`: `authorization_code` (checks the PKCE verifier) and `refresh_token` grants; access
  tokens expire after `token_lifetime` seconds; `revoked` refresh tokens get `invalid_grant`.
* `POST /upload/drive/v3/files?uploadType=multipart`: needs a live Bearer token (401 otherwise);
  `deny_uploads` answers 403 the way Drive does; files are kept with their metadata and bytes.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import json
import secrets
import time
import urllib.parse

from tornado.web import RequestHandler

from .local_http import LocalHTTP


class _Base(RequestHandler):
    def initialize(self, server: "FakeDrive") -> None:
        self.server = server

    def check_xsrf_cookie(self) -> None:
        pass

    def fail(self, status: int, body: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class _Auth(_Base):
    def get(self) -> None:
        q = {k: self.get_query_argument(k) for k in self.request.arguments}
        code = "code-" + secrets.token_hex(8)
        self.server.codes[code] = {"challenge": q.get("code_challenge"), "redirect_uri": q["redirect_uri"],
                                   "client_id": q.get("client_id"), "scope": q.get("scope", "")}
        self.server.auth_requests.append(q)
        sep = "&" if "?" in q["redirect_uri"] else "?"
        self.redirect(q["redirect_uri"] + sep + urllib.parse.urlencode({"code": code, "state": q.get("state", "")}))


class _Token(_Base):
    def post(self) -> None:
        srv = self.server
        form = {k: self.get_body_argument(k) for k in self.request.body_arguments}
        srv.token_requests.append(form)
        if form.get("client_id") != srv.client_id or form.get("client_secret") != srv.client_secret:
            return self.fail(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        grant = form.get("grant_type")
        if grant == "authorization_code":
            info = srv.codes.pop(form.get("code", ""), None)
            if info is None or info["redirect_uri"] != form.get("redirect_uri"):
                return self.fail(400, {"error": "invalid_grant", "error_description": "Bad code"})
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if info["challenge"] and challenge != info["challenge"]:
                return self.fail(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
            refresh = "refresh-" + secrets.token_hex(8)
            srv.refresh_tokens.add(refresh)
            return self.finish(self._issue(refresh_token=refresh, scope=info["scope"]))
        if grant == "refresh_token":
            rt = form.get("refresh_token", "")
            if rt not in srv.refresh_tokens or rt in srv.revoked:
                return self.fail(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
            srv.refreshes += 1
            return self.finish(self._issue())
        return self.fail(400, {"error": "unsupported_grant_type"})

    def _issue(self, **extra) -> dict:
        srv = self.server
        token = "access-" + secrets.token_hex(8)
        srv.access_tokens[token] = time.time() + srv.token_lifetime
        return {"access_token": token, "expires_in": srv.token_lifetime, "token_type": "Bearer", **extra}


class _Upload(_Base):
    def post(self) -> None:
        srv = self.server
        auth = self.request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        srv.upload_requests.append({"token": token, "query": {k: self.get_query_argument(k) for k in self.request.arguments},
                                    "content_type": self.request.headers.get("Content-Type", "")})
        expires = srv.access_tokens.get(token)
        if expires is None or expires < time.time():
            return self.fail(401, {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                                             "errors": [{"reason": "authError", "message": "Invalid Credentials"}],
                                             "status": "UNAUTHENTICATED"}})
        if srv.deny_uploads:
            return self.fail(403, {"error": {"code": 403, "message": "The user has not granted the app write access to the folder.",
                                             "errors": [{"reason": "insufficientFilePermissions",
                                                         "message": "The user does not have sufficient permissions for this file."}],
                                             "status": "PERMISSION_DENIED"}})
        ctype = self.request.headers.get("Content-Type", "")
        msg = email.message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + self.request.body,
                                       policy=email.policy.HTTP)
        parts = list(msg.iter_parts()) if msg.is_multipart() else []
        if len(parts) != 2:
            return self.fail(400, {"error": {"code": 400, "message": "expected a multipart/related body with 2 parts"}})
        meta = json.loads(parts[0].get_content())
        data = parts[1].get_payload(decode=True)
        fid = "file-" + secrets.token_hex(6)
        srv.files[fid] = {"metadata": meta, "data": data, "mime_type": parts[1].get_content_type()}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"id": fid, "name": meta.get("name"), "mimeType": meta.get("mimeType"),
                                "webViewLink": f"https://drive.example.invalid/file/d/{fid}/view"}))


class FakeDrive(LocalHTTP):
    def __init__(self, client_id: str = "client-id.apps.example", client_secret: str = "client-secret-xyz",
                 token_lifetime: int = 3600):
        self.client_id, self.client_secret, self.token_lifetime = client_id, client_secret, token_lifetime
        self.codes: dict[str, dict] = {}
        self.refresh_tokens: set[str] = set()
        self.revoked: set[str] = set()
        self.access_tokens: dict[str, float] = {}
        self.refreshes = 0
        self.deny_uploads = False
        self.files: dict[str, dict] = {}
        self.auth_requests: list[dict] = []
        self.token_requests: list[dict] = []
        self.upload_requests: list[dict] = []


    def grant(self) -> str:
        """A refresh token as if the user had connected (for tests that skip the consent step)."""
        rt = "refresh-" + secrets.token_hex(8)
        self.refresh_tokens.add(rt)
        return rt

    def start(self) -> "FakeDrive":
        self.serve([
            (r"/o/oauth2/auth", _Auth, {"server": self}),
            (r"/token", _Token, {"server": self}),
            (r"/upload/drive/v3/files", _Upload, {"server": self}),
        ])
        return self
