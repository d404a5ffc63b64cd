"""Google Drive: connect (OAuth code + PKCE) and upload with google-auth and
google-api-python-client against a local fake OAuth/Drive server, including an expired access
token that is refreshed, a token Drive rejects, a revoked grant and a denied upload."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest

from conftest import use_services
from tornado.httpclient import AsyncHTTPClient

from fakes.drive_server import FakeDrive
from jupyter_sessions.export import ExportConfig
from jupyter_sessions.export.drive import DriveConfig
from test_export import transcript_events


@pytest.fixture
def drive_server(jp_asyncio_loop):
    server = FakeDrive().start()
    yield server
    jp_asyncio_loop.run_until_complete(server.stop())


@pytest.fixture
def export_config(drive_server) -> ExportConfig:
    return ExportConfig(drive=DriveConfig(
        client_id=drive_server.client_id, client_secret=drive_server.client_secret,
        auth_uri=drive_server.url + "/o/oauth2/auth", token_uri=drive_server.url + "/token",
        api_root=drive_server.url + "/", folder_id="folder-123", timeout=10))


@pytest.fixture
def services(jp_serverapp, jp_asyncio_loop, export_config):
    svcs = use_services(jp_serverapp, jp_asyncio_loop, export_config)
    yield svcs
    jp_asyncio_loop.run_until_complete(svcs.close())


async def running_session(api, jp_serverapp, name="Drive / export") -> dict:
    s = await api.ok("POST", "sessions", body={"model": "replay", "display_name": name})
    await api.wait_phase(s["id"], "Running")
    log = jp_serverapp.web_app.settings["jupyter_sessions_manager"].events
    for e in transcript_events()[2:]:
        await log.append(s["id"], e["type"], e["data"])
    return s


async def connect(services, owner: str, drive_server, *, expired: bool = False, access: str | None = None) -> str:
    """Store a grant as a finished connect would (an expired access token, or one Drive doesn't know)."""
    rt = drive_server.grant()
    expiry = datetime.now(timezone.utc) + (timedelta(minutes=-5) if expired else timedelta(hours=1))
    await services.drive.db.put_drive_token(owner, refresh_token=rt, access_token=access or "stale-token",
                                            expiry=expiry, scopes="https://www.googleapis.com/auth/drive.file")
    return rt


async def test_connect_flow_then_upload_markdown(api, jp_fetch, jp_serverapp, drive_server, services):
    status = await api.ok("GET", "drive")
    assert status["configured"] and not status["connected"] and status["connect_url"].endswith("/drive/connect")
    # the browser goes to Google (the fake consents at once) and comes back to the callback
    r = await jp_fetch("jupyter-sessions", "api", "drive", "connect", follow_redirects=False, raise_error=False)
    assert r.code == 302
    google = r.headers["Location"]
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(google).query))
    assert google.startswith(drive_server.url + "/o/oauth2/auth?")
    assert q["access_type"] == "offline" and q["code_challenge_method"] == "S256"
    assert q["scope"] == "https://www.googleapis.com/auth/drive.file" and q["client_id"] == drive_server.client_id
    back = await AsyncHTTPClient().fetch(google, follow_redirects=False, raise_error=False)
    assert back.code == 302
    cb = urllib.parse.urlsplit(back.headers["Location"])
    assert cb.path.endswith("/jupyter-sessions/api/drive/callback")
    params = dict(urllib.parse.parse_qsl(cb.query))
    r = await jp_fetch("jupyter-sessions", "api", "drive", "callback", params=params, raise_error=False)
    assert r.code == 200 and b"Google Drive is connected" in r.body
    assert drive_server.token_requests[-1]["grant_type"] == "authorization_code"
    assert (await api.ok("GET", "drive"))["connected"]
    # a replayed callback (same state) is refused
    r = await jp_fetch("jupyter-sessions", "api", "drive", "callback", params=params, raise_error=False)
    assert r.code == 400

    s = await running_session(api, jp_serverapp)
    f = await api.ok("POST", "sessions", s["id"], "export", "drive", body={"format": "markdown"}, status=201)
    assert f["name"] == "Drive - export.md" and f["mime_type"] == "text/markdown" and f["format"] == "markdown"
    assert f["link"].endswith(f"/file/d/{f['file_id']}/view")
    stored = drive_server.files[f["file_id"]]
    assert stored["metadata"] == {"name": "Drive - export.md", "mimeType": "text/markdown", "parents": ["folder-123"]}
    assert stored["data"].decode().startswith("# Drive / export") and b"<code>bash</code>" in stored["data"]
    assert drive_server.upload_requests[-1]["query"]["uploadType"] == "multipart"
    assert drive_server.refreshes == 0  # the fresh access token from the code exchange was used


async def test_expired_access_token_is_refreshed_and_kept(api, jp_serverapp, drive_server, services):
    s = await running_session(api, jp_serverapp)
    await connect(services, s["owner"], drive_server, expired=True)
    f = await api.ok("POST", "sessions", s["id"], "export", "drive", body={"format": "json"}, status=201)
    assert drive_server.refreshes == 1 and drive_server.token_requests[-1]["grant_type"] == "refresh_token"
    assert [u["token"] for u in drive_server.upload_requests] == [
        next(iter(t for t in drive_server.access_tokens))]  # only the refreshed token was ever sent
    assert json.loads(drive_server.files[f["file_id"]]["data"])["session"]["id"] == s["id"]
    tok = await services.drive.db.get_drive_token(s["owner"])
    assert tok["access_token"] in drive_server.access_tokens and tok["expiry"] > datetime.now(timezone.utc)
    # the next upload uses the stored (refreshed) token without another refresh
    await api.ok("POST", "sessions", s["id"], "export", "drive", body={"format": "ipynb"}, status=201)
    assert drive_server.refreshes == 1 and len(drive_server.files) == 2


async def test_token_drive_rejects_is_refreshed_once(api, jp_serverapp, drive_server, services):
    s = await running_session(api, jp_serverapp)
    await connect(services, s["owner"], drive_server, access="revoked-but-unexpired")
    f = await api.ok("POST", "sessions", s["id"], "export", "drive", body={"format": "markdown"}, status=201)
    assert drive_server.refreshes == 1 and f["file_id"] in drive_server.files
    assert [u["token"] for u in drive_server.upload_requests][0] == "revoked-but-unexpired"  # 401, then retried


async def test_denied_upload_is_a_clear_502(api, jp_serverapp, drive_server, services):
    s = await running_session(api, jp_serverapp)
    await connect(services, s["owner"], drive_server, expired=True)
    drive_server.deny_uploads = True
    code, err = await api.call("POST", "sessions", s["id"], "export", "drive", body={"format": "markdown"})
    assert code == 502
    assert err["error"].startswith("Google Drive refused the upload (403, insufficientFilePermissions)")
    assert "write access" in err["error"] and err["detail"] == {"drive_status": 403, "reason": "insufficientFilePermissions"}
    assert not drive_server.files


async def test_revoked_grant_is_412_reconnect(api, jp_serverapp, drive_server, services):
    s = await running_session(api, jp_serverapp)
    rt = await connect(services, s["owner"], drive_server, expired=True)
    drive_server.revoked.add(rt)
    code, err = await api.call("POST", "sessions", s["id"], "export", "drive", body={"format": "markdown"})
    assert code == 412 and "connect Google Drive again" in err["error"] and "invalid_grant" in err["error"]
    assert err["detail"]["connect_url"].endswith("/jupyter-sessions/api/drive/connect")


async def test_not_connected_is_412(api, jp_serverapp, services):
    s = await running_session(api, jp_serverapp)
    code, err = await api.call("POST", "sessions", s["id"], "export", "drive", body={"format": "pdf"})
    assert code == 412 and "not connected" in err["error"] and err["detail"]["missing"] == ["drive_connection"]


@pytest.mark.parametrize("export_config", [ExportConfig(drive=DriveConfig(client_id="only-an-id"))])
async def test_not_configured_is_412_naming_the_settings(api, jp_serverapp, services, export_config):
    s = await running_session(api, jp_serverapp)
    code, err = await api.call("POST", "sessions", s["id"], "export", "drive", body={"format": "markdown"})
    assert code == 412 and "c.SessionsApp.drive_client_secret" in err["error"]
    assert err["detail"] == {"missing": ["drive_client_secret"]}
    assert (await api.ok("GET", "drive"))["missing"] == ["client_secret"]


async def test_session_not_running_is_409(api, jp_serverapp, drive_server, services):
    s = await running_session(api, jp_serverapp)
    await connect(services, s["owner"], drive_server)
    await api.ok("POST", "sessions", s["id"], "stop")
    await api.wait_phase(s["id"], "Stopped")
    code, err = await api.call("POST", "sessions", s["id"], "export", "drive", body={"format": "markdown"})
    assert code == 409 and "Stopped" in err["error"] and "Running" in err["error"]
    code, err = await api.call("POST", "sessions", s["id"], "export", "drive", body={"format": "docx"})
    assert code == 422
    assert not drive_server.upload_requests
