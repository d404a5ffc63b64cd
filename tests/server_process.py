"""A real `jupyter server` subprocess with the extension, for restart tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A jupyter server subprocess on 127.0.0.1 with the extension and a token."""

    def __init__(self, tmp: Path, sandbox: str = "local", **sessions_config):
        self.tmp, self.sandbox = tmp, sandbox
        self.port, self.token = free_port(), "restart-test-token"
        self.proc: subprocess.Popen | None = None
        (tmp / "config").mkdir(exist_ok=True)
        (tmp / "root").mkdir(exist_ok=True)
        (tmp / "config" / "jupyter_server_config.json").write_text(json.dumps({
            # Only our extension: Lab, LSP and friends would triple the start-up time of each test server.
            "ServerApp": {"jpserver_extensions": {"jupyter_sessions": True, "jupyterlab": False, "jupyter_lsp": False,
                                                  "notebook_shim": False, "jupyter_server_terminals": False}},
            "SessionsApp": {"sandbox": sandbox, "data_dir": str(tmp / "data"), "enable_replay": True,
                            **sessions_config},
        }))

    def start(self) -> None:
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(self.tmp / "config"),
               "JUPYTER_DATA_DIR": str(self.tmp / "jdata"), "JUPYTER_RUNTIME_DIR": str(self.tmp / "runtime")}
        self.log = open(self.tmp / "server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.tmp / 'root'}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.call("GET", "sessions")
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.proc.poll() is None, (self.tmp / "server.log").read_text()
                time.sleep(0.2)
        raise AssertionError("server did not start: " + (self.tmp / "server.log").read_text())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def call(self, method: str, *path: str, body=None, query: str = ""):
        url = f"http://127.0.0.1:{self.port}/jupyter-sessions/api/{'/'.join(path)}{query}"
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read().decode()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "null")

    def wait_phase(self, sid: str, *phases: str, timeout: float = 120) -> dict:
        deadline = time.time() + timeout
        while True:
            code, s = self.call("GET", "sessions", sid)
            assert code == 200, s
            if s["phase"] in phases:
                return s
            assert time.time() < deadline, s
            time.sleep(0.1)
