"""Attacks from inside the agent's tools, through the real path: fake model -> agent -> docker sandbox.

Each attack is a tool call the (fake) model makes; we check what the tool returned, that the host
and the server are unaffected, and that the session is in a true phase afterwards.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fakes.anthropic_server import reply, text, tool_use

pytestmark = pytest.mark.parametrize("sandbox_kind", ["docker"], indirect=True)


@pytest.fixture
def hardened(fake, sessions_config):
    sessions_config.update(anthropic_base_url=fake.url, anthropic_api_key="sk-attack-test", watch_interval=0.5,
                           sandbox_memory="256m", sandbox_pids=64, sandbox_max_file_mb=8)
    return sessions_config


async def run_tools(api, fake, calls: list[tuple[str, dict]], timeout: float = 90) -> tuple[str, dict[str, dict]]:
    """One session; the model makes these tool calls one step each; returns {tool_call_id: result}."""
    fake.push(*[reply(tool_use(name, args, id=f"t{i}")) for i, (name, args) in enumerate(calls)],
              reply(text("done")))
    s = await api.ok("POST", "sessions", body={"timeout": 0})
    sid = s["id"]
    await api.wait_phase(sid, "Running")
    await api.ok("POST", "sessions", sid, "messages", body={"text": "attack"})
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        evs = await api.events(sid)
        results = {e["data"]["toolCallId"]: e["data"] for e in evs if e["type"] == "TOOL_CALL_RESULT"}
        state = (await api.ok("GET", "sessions", sid))["agent_state"]
        if len(results) == len(calls) and state == "idle":
            return sid, results
        assert loop.time() < end, (results, [e["type"] for e in evs][-10:])
        await asyncio.sleep(0.2)


async def test_file_tools_cannot_leave_the_workspace(hardened, fake, api, sessions_config):
    sid, r = await run_tools(api, fake, [
        ("read_file", {"path": "../../../../etc/passwd"}),
        ("read_file", {"path": "/etc/passwd"}),
        ("bash", {"command": "ln -s / /workspace/rootlink && ln -s .. /workspace/up"}),
        ("read_file", {"path": "rootlink/etc/passwd"}),
        ("write_file", {"path": "up/escaped.txt", "content": "x"}),
        ("bash", {"command": "ln /etc/passwd /workspace/hard 2>&1; echo rc=$?"}),
        ("edit_file", {"path": "/etc/hostname", "old_string": "a", "new_string": "b"}),
    ])
    for tid in ("t0", "t1", "t3", "t4", "t6"):
        assert r[tid]["isError"] and "workspace" in r[tid]["content"].lower(), r[tid]
    assert "rc=1" in r["t5"]["content"]  # no hard link across the mount boundary
    ws = Path(sessions_config["data_dir"]) / "workspaces"
    assert not (ws / "escaped.txt").exists() and not (ws.parent / "escaped.txt").exists()


async def test_no_docker_socket_no_network_no_root(hardened, fake, api):
    sid, r = await run_tools(api, fake, [
        ("bash", {"command": "ls -l /var/run/docker.sock /run/docker.sock 2>&1; echo rc=$?"}),
        ("bash", {"command": "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)\" 2>&1; "
                             "echo rc=$?"}),
        ("bash", {"command": "id -u; cat /proc/self/status | grep CapEff"}),
    ])
    assert "No such file" in r["t0"]["content"] and "rc=2" in r["t0"]["content"]
    assert "unreachable" in r["t1"]["content"].lower() and "rc=1" in r["t1"]["content"]
    assert r["t2"]["content"].startswith("1000") and "0000000000000000" in r["t2"]["content"]


async def test_fork_bomb_memory_hog_and_huge_file_fail_cleanly(hardened, fake, api, jp_fetch):
    sid, r = await run_tools(api, fake, [
        ("bash", {"command": "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", "timeout": 15}),
        ("bash", {"command": "python3 -c \"x = bytearray(1024 * 1024 * 1024)\"; echo rc=$?", "timeout": 60}),
        ("bash", {"command": "head -c 20000000 /dev/zero > /workspace/big.bin; echo rc=$?; ls -l /workspace/big.bin"}),
        ("bash", {"command": "echo still here"}),
    ], timeout=180)
    bomb = r["t0"]["content"]  # the bomb hits the pids limit (or the tool timeout) and the call returns
    assert "Resource temporarily unavailable" in bomb or "timed out" in bomb.lower(), bomb[-300:]
    assert "rc=137" in r["t1"]["content"] or "MemoryError" in r["t1"]["content"], r["t1"]["content"]
    assert "File size limit exceeded" in r["t2"]["content"] or "rc=153" in r["t2"]["content"], r["t2"]["content"]
    assert "still here" in r["t3"]["content"]  # the sandbox works after all three
    s = await api.ok("GET", "sessions", sid)
    assert s["phase"] == "Running"  # only the offending processes died, not the session
    code, _ = await api.call("GET", "models")
    assert code == 200  # the server never noticed
    json.dumps(r)
