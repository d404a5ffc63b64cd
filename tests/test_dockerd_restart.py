"""Fault: the Docker engine restarts under a running session.

A real `jupyter server` subprocess with the docker sandbox and a quick watchdog (watch_interval
0.5 s); the agent (fake Anthropic server) writes a file in the workspace. Then dockerd is
restarted the way `.ci/run` runs it: SIGTERM, wait for it to exit, and while it is down the
session must reach a true phase with a clear cause (Failed: its container exited, or the engine
is unreachable),
the server must keep answering, and a Resume attempted during the outage must fail again with its
cause instead of hanging in Creating. Then dockerd is started again (same command line, same log
file, in the background) and `docker info` answers. Resume brings the session back to Running with
no event lost, the workspace intact and a sandbox that runs tools; Delete leaves no container.

Restarting dockerd stops every container on the machine, so locally the test only runs when asked
(JUPYTER_SESSIONS_ALLOW_DOCKERD_RESTART=1, at a quiet moment); in CI (CI=true) it always runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fakes.anthropic_server import reply, text, tool_use
from server_process import Server

pytestmark = pytest.mark.skipif(
    not (os.environ.get("CI") == "true" or os.environ.get("JUPYTER_SESSIONS_ALLOW_DOCKERD_RESTART")),
    reason="restarts the machine's Docker engine: runs in CI (CI=true), or locally with "
           "JUPYTER_SESSIONS_ALLOW_DOCKERD_RESTART=1")

CI_LOG = "/tmp/jupyter-sessions-dockerd.log"  # where .ci/run starts dockerd's output


def docker_answers(timeout: float = 5) -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=timeout, check=False).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def dockerd_pid() -> int:
    out = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True, check=False).stdout.split()
    assert len(out) == 1, f"expected one dockerd, found {out}"
    return int(out[0])


def stop_dockerd(deadline_s: float = 90) -> tuple[list[str], str]:
    """SIGTERM dockerd and wait for it to exit; returns how to start it again (argv, log file)."""
    pid = dockerd_pid()
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")] or ["dockerd"]
    out = os.readlink(f"/proc/{pid}/fd/1") if os.path.exists(f"/proc/{pid}/fd/1") else CI_LOG
    log_path = out if out.startswith("/") and not out.startswith(("/dev/", "/proc/")) else CI_LOG
    os.kill(pid, signal.SIGTERM)
    end = time.time() + deadline_s
    while Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
        if stat.split(") ")[-1].startswith("Z"):  # exited, not yet reaped by its parent
            break
        assert time.time() < end, "dockerd did not exit after SIGTERM"
        time.sleep(0.2)
    assert not docker_answers(), "something still answers on the Docker socket"
    return argv, log_path


def start_dockerd(argv: list[str], log_path: str, end: float) -> None:
    with open(log_path, "ab") as log:  # like `dockerd >LOG 2>&1 &`: detached, outlives the test
        subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, cwd="/")
    while not docker_answers():
        assert time.time() < end, "dockerd did not come back:\n" + Path(log_path).read_text(errors="replace")[-3000:]
        time.sleep(0.5)


@pytest.fixture
def engine():
    """The Docker engine, guaranteed to be answering again after the test, whatever happened."""
    assert shutil.which("dockerd") and docker_answers(), "a running Docker engine is needed"
    argv = [a.decode() for a in Path(f"/proc/{dockerd_pid()}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    yield
    if not docker_answers():
        if not subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, check=False).stdout:
            start_dockerd(argv, CI_LOG, time.time() + 90)
        end = time.time() + 90
        while not docker_answers():
            assert time.time() < end, "the Docker engine is not answering after the test"
            time.sleep(0.5)


def events(srv: Server, sid: str) -> list[dict]:
    return srv.call("GET", "sessions", sid, "events")[1]["events"]


def wait_for(pred, timeout=60, what="condition"):
    end = time.time() + timeout
    while not (got := pred()):
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.2)
    return got


def session_containers(sid: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=jupyter-sessions.session={sid}",
                          "--format", "{{.Names}} {{.Status}}"], capture_output=True, text=True, timeout=30, check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def test_dockerd_restart_fails_the_session_with_the_cause_and_resume_recovers(tmp_path, model, engine):
    import docker

    live_restore = docker.from_env().info().get("LiveRestoreEnabled", False)  # containers survive; the engine still goes away
    srv = Server(tmp_path, sandbox="docker", anthropic_base_url=model.fake.url, anthropic_api_key="sk-dockerd-test",
                 watch_interval=0.5)
    sid = None
    model.push(reply(tool_use("write_file", {"path": "notes/keep.txt", "content": "survives the engine\n"}, id="w1")),
               reply(text("Written.")))
    try:
        srv.start()
        code, s = srv.call("POST", "sessions", body={"timeout": 0})
        assert code == 201, s
        sid = s["id"]
        srv.wait_phase(sid, "Running", timeout=180)
        srv.call("POST", "sessions", sid, "messages", body={"text": "write the note"})
        wait_for(lambda: any(e["type"] == "TOOL_CALL_RESULT" for e in events(srv, sid))
                 and srv.call("GET", "sessions", sid)[1]["agent_state"] == "idle", what="the note")
        workspace = tmp_path / "data" / "workspaces" / sid
        assert (workspace / "notes" / "keep.txt").read_text() == "survives the engine\n"
        before = events(srv, sid)

        # the engine goes away: SIGTERM, and it stays down for a while
        t0 = time.time()
        argv, log_path = stop_dockerd()
        print(f"dockerd stopped in {time.time() - t0:.1f} s (live-restore: {live_restore})")
        try:
            # the watchdog notices within a few intervals: Failed, with the cause it saw (dockerd stops the
            # containers before it stops answering, so either the container's exit or the engine's absence)
            s = srv.wait_phase(sid, "Failed", timeout=30)
            assert re.search(r"sandbox engine is unreachable|sandbox container \S+ is not running \(state exited",
                             s["reason"]), s["reason"]
            print("while the engine is down:", s["reason"])
            t = time.time()
            assert srv.call("GET", "sessions")[0] == 200 and time.time() - t < 5  # the server itself is fine
            # a Resume while the engine is down fails again, with the cause, instead of hanging in Creating
            code, body = srv.call("POST", "sessions", sid, "resume")
            assert code == 202, body
            s = srv.wait_phase(sid, "Failed", timeout=60)
            print("resume while down:", s["reason"])
            assert "docker engine" in s["reason"].lower(), f"the cause should name the engine: {s['reason']}"
        finally:
            t0 = time.time()
            start_dockerd(argv, log_path, time.time() + 90)  # like `.ci/run`: dockerd >LOG 2>&1 &
            print(f"dockerd answering again after {time.time() - t0:.1f} s")
        after = events(srv, sid)
        assert after[: len(before)] == before, "events were lost or changed"
        failed = [e for e in after if e["type"] == "PHASE_CHANGED" and e["data"].get("phase") == "Failed"]
        assert len(failed) == 2 and failed[-1]["data"]["reason"] == s["reason"], [e["data"] for e in failed]
        assert srv.call("GET", "sessions", sid)[1]["phase"] == "Failed"  # the engine's return changes nothing by itself

        # Resume: back to Running, same workspace, a sandbox that runs tools again
        code, body = srv.call("POST", "sessions", sid, "resume")
        assert code == 202, body
        srv.wait_phase(sid, "Running", timeout=180)
        assert (workspace / "notes" / "keep.txt").read_text() == "survives the engine\n"
        model.push(reply(tool_use("bash", {"command": "cat notes/keep.txt && ls /workspace"}, id="c1")),
                   reply(text("Still here.")))
        srv.call("POST", "sessions", sid, "messages", body={"text": "is the note still there?"})
        result = wait_for(lambda: [e["data"] for e in events(srv, sid)
                                   if e["type"] == "TOOL_CALL_RESULT" and e["data"]["toolCallId"] == "c1"],
                          timeout=60, what="the tool after resume")[-1]
        assert "survives the engine" in result["content"] and not result["isError"], result
        wait_for(lambda: srv.call("GET", "sessions", sid)[1]["agent_state"] == "idle", what="idle")
        assert len(session_containers(sid)) == 1, session_containers(sid)  # the same sandbox, no duplicate

        code, _ = srv.call("DELETE", "sessions", sid)
        assert code == 204
        assert session_containers(sid) == [], "the sandbox outlived its deleted session"
        sid = None
    finally:
        if sid and srv.proc and srv.proc.poll() is None:
            srv.call("DELETE", "sessions", sid)
        srv.stop()
    leftovers = subprocess.run(["docker", "ps", "-a", "--filter", "label=jupyter-sessions.managed=true",
                                "--format", "{{.Names}} {{.Label \"jupyter-sessions.session\"}}"],
                               capture_output=True, text=True, timeout=30, check=True).stdout
    assert s["id"] not in leftovers, leftovers
