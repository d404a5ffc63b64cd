"""Sandbox backends against the real thing: one suite for every backend, plus docker-only checks.

Async tests run on pytest-jupyter's loop (pytest-asyncio is off), so fixtures are sync and drive
coroutines with `run`. Docker tests need a reachable engine and build the project's image once per test session (~40 s the
first time on a machine). They are never skipped: where Docker is missing they fail.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from pathlib import Path

import pytest

from jupyter_sessions.sandbox import (
    WORKSPACE,
    Limits,
    PathOutsideWorkspace,
    SandboxError,
    SandboxGone,
    SandboxUnavailable,
    make_backend,
)

BACKENDS = ["docker", "local", "swarm"]


# -- fixtures (docker_client, sandbox_image, swarm, instance and sandbox are in conftest.py) --------
@pytest.fixture(params=BACKENDS)
def backend(request, instance, run):
    if request.param == "docker":
        image = request.getfixturevalue("sandbox_image")
        b = make_backend("docker", image=image, instance=instance, memory="512m", cpus=1.0, pids=128)
    elif request.param == "swarm":
        request.getfixturevalue("swarm")
        image = request.getfixturevalue("sandbox_image")
        b = make_backend("swarm", image=image, instance=instance, memory="512m", cpus=1.0, pids=128)
    else:
        b = make_backend("local", image="ignored", docker_url="ignored")
    run(b.check())
    yield b
    if request.param in ("docker", "swarm"):
        run(b.cleanup_orphans(set()))  # removes every container/service labelled with this test's instance
    run(b.close())


@pytest.fixture
def docker_backend(instance, sandbox_image, run):
    b = make_backend("docker", image=sandbox_image, instance=instance, memory="512m", pids=128)
    yield b
    run(b.cleanup_orphans(set()))
    run(b.close())


@pytest.fixture
def docker_sandbox(docker_backend, tmp_path, run):
    run(docker_backend.check())
    sb = docker_backend.sandbox(f"t-{uuid.uuid4().hex[:10]}", tmp_path / "ws", docker_backend.limits)
    run(sb.start())
    yield sb
    run(sb.remove())


def ws_dir(sb) -> str:
    """The workspace as commands in the sandbox see it."""
    return WORKSPACE if sb.isolated else os.path.realpath(sb.workspace)  # local: the host folder itself


def unique_sleep() -> tuple[str, str]:
    """A sleep nobody else runs, plus a pgrep pattern that doesn't match the pgrep line itself."""
    n = str(random.randint(100_000, 999_999))
    return f"sleep {n}", f"sleep {n[:-1]}[{n[-1]}]"


async def count(sb, pattern: str) -> int:
    res = await sb.exec(f"pgrep -f '{pattern}' | wc -l")
    return int(res.output.strip())


# -- every backend --------------------------------------------------------------------------------
async def test_exec_output_and_exit_code(sandbox):
    res = await sandbox.exec("echo hello; echo oops >&2; exit 7")
    assert res.exit_code == 7
    assert "hello\n" in res.output and "oops\n" in res.output
    assert not res.truncated and not res.timed_out


async def test_cwd_is_workspace(sandbox):
    assert (await sandbox.exec("pwd -P")).output.strip() == ws_dir(sandbox)
    await sandbox.exec("mkdir -p sub/dir")
    res = await sandbox.exec("pwd -P", cwd="sub/dir")
    assert res.output.strip() == ws_dir(sandbox) + "/sub/dir"
    res = await sandbox.exec("pwd", cwd="nope")
    assert res.exit_code != 0 and "no such directory" in res.output


async def test_timeout_kills_the_process_group(sandbox):
    cmd, pattern = unique_sleep()
    started = time.monotonic()
    res = await sandbox.exec(f"echo before; {cmd} & {cmd}", timeout=2)
    elapsed = time.monotonic() - started
    assert res.timed_out and res.exit_code is None
    assert 1.9 < elapsed < 8, elapsed
    assert "before" in res.output
    assert await count(sandbox, pattern) == 0


async def test_output_cap_truncates(sandbox):
    res = await sandbox.exec("head -c 300000 /dev/zero | tr '\\0' a; echo; echo done", output_cap=1000)
    assert res.truncated and res.exit_code == 0
    assert res.output == "a" * 1000
    res = await sandbox.exec("printf 'caf\\xc3\\xa9 \\xff'")  # invalid UTF-8 is replaced, not fatal
    assert res.output == "café \ufffd"


async def test_write_read_round_trip(sandbox):
    blob = bytes(range(256)) * 100
    await sandbox.write_file("a/b/c/data.bin", blob)
    assert await sandbox.read_file("a/b/c/data.bin") == blob
    assert await sandbox.read_file(f"{WORKSPACE}/a/b/c/data.bin") == blob
    await sandbox.write_file("/workspace/notes.txt", "héllo\n".encode())
    await sandbox.write_file("notes.txt", b"second\n")  # overwrite
    assert (await sandbox.exec("cat notes.txt")).output == "second\n"
    await sandbox.exec("printf made-by-exec > from_exec.txt")
    assert await sandbox.read_file("from_exec.txt") == b"made-by-exec"
    await sandbox.write_file("empty", b"")
    assert await sandbox.read_file("empty") == b""
    assert (Path(sandbox.workspace) / "a/b/c/data.bin").read_bytes() == blob  # the host sees it too


async def test_read_errors(sandbox):
    with pytest.raises(FileNotFoundError):
        await sandbox.read_file("missing.txt")
    await sandbox.exec("mkdir -p adir")
    with pytest.raises(IsADirectoryError):
        await sandbox.read_file("adir")
    with pytest.raises(IsADirectoryError):
        await sandbox.write_file("adir", b"x")
    assert (await sandbox.exec("test -d adir")).exit_code == 0


async def test_executable_bit_survives_a_write(sandbox):
    await sandbox.exec("printf '#!/bin/sh\\necho one\\n' > run.sh && chmod 755 run.sh")
    await sandbox.write_file("run.sh", b"#!/bin/sh\necho two\n")
    assert (await sandbox.exec("./run.sh")).output == "two\n"


ESCAPES = ["../x", "/etc/passwd", "/workspace/../etc/passwd", "to_etc/passwd", "to_parent/x", "passwd_link"]


@pytest.mark.parametrize("path", ESCAPES)
async def test_path_escapes_are_refused(sandbox, path, tmp_path):
    await sandbox.exec("ln -s /etc to_etc; ln -s .. to_parent; ln -s /etc/passwd passwd_link")
    with pytest.raises(PathOutsideWorkspace) as err:
        await sandbox.read_file(path)
    assert repr(path) in str(err.value)
    with pytest.raises(PathOutsideWorkspace):
        await sandbox.write_file(path, b"pwned")
    assert not (tmp_path / "x").exists()
    assert b"pwned" not in Path("/etc/passwd").read_bytes()


async def test_symlink_inside_workspace_is_fine(sandbox):
    await sandbox.write_file("real/file.txt", b"ok")
    await sandbox.exec("ln -s real alias")
    assert await sandbox.read_file("alias/file.txt") == b"ok"


async def test_kill_processes(sandbox):
    cmd, pattern = unique_sleep()
    started = time.monotonic()
    await sandbox.exec(f"nohup {cmd} >/dev/null 2>&1 &")
    assert time.monotonic() - started < 5  # detached: the call didn't wait for it
    assert await count(sandbox, pattern) == 1
    await sandbox.kill_processes()
    await asyncio.sleep(0.2)
    assert await count(sandbox, pattern) == 0
    assert await sandbox.is_alive()
    assert (await sandbox.exec("echo still-here")).output == "still-here\n"


async def test_cancelled_exec_kills_the_command(sandbox):
    cmd, pattern = unique_sleep()
    task = asyncio.create_task(sandbox.exec(cmd, timeout=60))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(30):
        if await count(sandbox, pattern) == 0:
            break
        await asyncio.sleep(0.2)
    assert await count(sandbox, pattern) == 0


async def test_no_server_secrets_in_env(sandbox, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-very-secret")
    res = await sandbox.exec("env")
    assert "very-secret" not in res.output and "ANTHROPIC" not in res.output
    assert "PATH=" in res.output


async def test_stop_then_start_keeps_files(sandbox):
    first = await sandbox.start()  # idempotent while running
    await sandbox.write_file("keep.txt", b"kept")
    await sandbox.stop()
    assert not await sandbox.is_alive()
    again = await sandbox.start()
    assert await sandbox.is_alive()
    assert await sandbox.read_file("keep.txt") == b"kept"
    assert again.ref == first.ref  # docker: the same container, not a new one


async def test_remove(sandbox):
    assert await sandbox.is_alive()
    await sandbox.remove()
    assert not await sandbox.is_alive()
    await sandbox.remove()  # twice is fine
    with pytest.raises(SandboxGone):
        await sandbox.exec("true")
    assert Path(sandbox.workspace).is_dir()  # the workspace belongs to the manager


async def test_make_backend_rejects_unknown():
    with pytest.raises(ValueError, match="docker"):
        make_backend("nope")


# -- docker only ----------------------------------------------------------------------------------
async def test_docker_network_is_off(docker_sandbox):
    # No route exists with --network none, so this sends no packet at all.
    res = await docker_sandbox.exec(
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)\"", timeout=20)
    assert res.exit_code != 0
    assert "unreachable" in res.output.lower()
    assert (await docker_sandbox.exec("cat /sys/class/net/*/operstate | wc -l")).output.strip() == "1"  # lo only


async def test_docker_user_and_limits(docker_sandbox, docker_client):
    assert (await docker_sandbox.exec("id -u; id -g")).output.split() == ["1000", "1000"]
    attrs = docker_client.containers.get(docker_sandbox.name).attrs
    host = attrs["HostConfig"]
    assert host["PidsLimit"] == 128
    assert host["Memory"] == 512 * 1024**2
    assert host["NanoCpus"] == 10**9
    assert host["NetworkMode"] == "none"
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert attrs["Config"]["Labels"]["jupyter-sessions.managed"] == "true"
    assert attrs["Config"]["Labels"]["jupyter-sessions.session"] == docker_sandbox.session_id
    assert docker_sandbox.name == f"jupyter-session-{docker_sandbox.session_id}"
    res = await docker_sandbox.exec("grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status")
    assert "NoNewPrivs:\t1" in res.output and "CapEff:\t0000000000000000" in res.output


async def test_docker_no_engine_socket_inside(docker_sandbox):
    assert (await docker_sandbox.exec("test -e /var/run/docker.sock")).exit_code != 0
    assert (await docker_sandbox.exec("test -e /run/docker.sock")).exit_code != 0


async def test_docker_files_visible_on_host(docker_sandbox):
    await docker_sandbox.exec("mkdir -p out && echo from-sandbox > out/f.txt")
    await docker_sandbox.write_file("out/g.txt", b"written")
    host = Path(docker_sandbox.workspace)
    assert (host / "out/f.txt").read_text() == "from-sandbox\n"
    assert (host / "out/g.txt").read_bytes() == b"written"
    if os.geteuid() == 0:
        assert (host / "out/g.txt").stat().st_uid == 1000


async def test_docker_adopt_lets_sandbox_write_server_files(docker_sandbox):
    clone = Path(docker_sandbox.workspace) / "repo"
    (clone / "src").mkdir(parents=True)
    (clone / "src/main.py").write_text("print(1)\n")  # written by the server (root here)
    await docker_sandbox.adopt(clone)
    res = await docker_sandbox.exec("echo 'print(2)' >> repo/src/main.py && touch repo/src/new.py")
    assert res.exit_code == 0, res.output


async def test_docker_setsid_child_cannot_outlive_timeout(docker_sandbox):
    cmd, pattern = unique_sleep()
    started = time.monotonic()
    res = await docker_sandbox.exec(f"setsid {cmd} & {cmd}", timeout=2)
    assert res.timed_out and time.monotonic() - started < 8
    assert await count(docker_sandbox, pattern) == 0


async def test_docker_cleanup_orphans(docker_sandbox, docker_backend, docker_client, sandbox_image, instance):
    orphan = docker_client.containers.create(
        sandbox_image, name=f"jupyter-session-orphan-{instance}", network_mode="none",
        labels={"jupyter-sessions.managed": "true", "jupyter-sessions.session": f"orphan-{instance}",
                "jupyter-sessions.instance": instance})
    try:
        removed = await docker_backend.cleanup_orphans({docker_sandbox.session_id})
        assert removed == [f"orphan-{instance}"]
        names = [c.name for c in docker_client.containers.list(all=True)]
        assert orphan.name not in names and docker_sandbox.name in names
    finally:
        try:
            orphan.remove(force=True)
        except Exception:
            pass


async def test_docker_removed_from_outside_is_gone(docker_sandbox, docker_client):
    docker_client.containers.get(docker_sandbox.name).remove(force=True)
    assert not await docker_sandbox.is_alive()
    with pytest.raises(SandboxGone, match="no longer exists"):
        await docker_sandbox.exec("true")
    with pytest.raises(SandboxGone):
        await docker_sandbox.read_file("x")


async def test_docker_out_of_memory_is_explained(docker_backend, tmp_path):
    sb = docker_backend.sandbox("t-oom-" + uuid.uuid4().hex[:8], tmp_path / "oom", Limits(memory="64m"))
    await sb.start()
    try:
        res = await sb.exec("python3 -c 'x = bytearray(300 * 1024 * 1024)'")
        assert res.exit_code == 137 and "out of memory (limit 64m)" in res.output
        res = await sb.exec("sleep 30 & kill -9 $!; wait $!")  # a plain SIGKILL is not called OOM
        assert res.exit_code == 137 and "memory" not in res.output
    finally:
        await sb.remove()


async def test_docker_check_explains_missing_engine(tmp_path):
    backend = make_backend("docker", docker_url="unix:///nonexistent.sock")
    with pytest.raises(SandboxUnavailable) as err:
        await backend.check()
    msg = str(err.value)
    assert "apt-get install docker.io" in msg and "c.SessionsApp.sandbox = 'local'" in msg
    assert "unix:///nonexistent.sock" in msg


async def test_docker_missing_configured_image(instance):
    backend = make_backend("docker", image="jupyter-sessions-no-such-image:1", instance=instance)
    with pytest.raises(SandboxUnavailable, match="not in the Docker engine"):
        await backend.check()
    await backend.close()


async def test_docker_default_limits_and_image_tag():
    from jupyter_sessions.sandbox.image import default_tag, recipe_hash

    assert Limits().network is False
    assert default_tag() == f"jupyter-sessions-sandbox:{recipe_hash()}" and len(recipe_hash()) == 12


# -- swarm only -----------------------------------------------------------------------------------
@pytest.fixture
def swarm_backend(swarm, instance, sandbox_image, run):
    b = make_backend("swarm", image=sandbox_image, instance=instance, memory="512m", pids=128,
                     constraints=["node.role==manager"], reservation=0.25)
    run(b.check())
    yield b
    run(b.cleanup_orphans(set()))
    run(b.close())


@pytest.fixture
def swarm_sandbox(swarm_backend, tmp_path, run):
    sb = swarm_backend.sandbox(f"t-{uuid.uuid4().hex[:10]}", tmp_path / "ws", swarm_backend.limits)
    run(sb.start())
    yield sb
    run(sb.remove())


def task_container(client, sb):
    """The running task's container, found the way an operator would: by the service label."""
    found = client.containers.list(filters={"label": f"com.docker.swarm.service.name={sb.name}"})
    assert len(found) == 1, found
    return found[0]


async def test_swarm_network_is_off(swarm_sandbox, swarm):
    # An internal overlay has no default route, so this sends no packet at all.
    res = await swarm_sandbox.exec(
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)\"", timeout=20)
    assert res.exit_code != 0
    assert "unreachable" in res.output.lower()
    routes = (await swarm_sandbox.exec("tail -n +2 /proc/net/route")).output.split("\n")
    assert routes and not any(r.split()[1:2] == ["00000000"] for r in routes if r.strip())  # no default route
    assert sorted((await swarm_sandbox.exec("ls /sys/class/net")).output.split()) == ["eth0", "lo"]
    net = swarm.networks.get(swarm_sandbox.name)  # its own network: other sandboxes are not on it
    assert net.attrs["Driver"] == "overlay" and net.attrs["Internal"] is True
    assert net.attrs["Labels"]["jupyter-sessions.session"] == swarm_sandbox.session_id


async def test_swarm_service_spec(swarm_sandbox, swarm, instance):
    service = swarm.services.get(swarm_sandbox.name).attrs
    spec = service["Spec"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert spec["Labels"]["jupyter-sessions.managed"] == "true"
    assert spec["Labels"]["jupyter-sessions.session"] == swarm_sandbox.session_id
    assert spec["Labels"]["jupyter-sessions.instance"] == instance
    task = spec["TaskTemplate"]
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Placement"]["Constraints"] == ["node.role==manager"]
    assert task["Resources"]["Limits"] == {"NanoCPUs": 10**9, "MemoryBytes": 512 * 1024**2, "Pids": 128}
    assert task["Resources"]["Reservations"] == {"NanoCPUs": 25 * 10**7, "MemoryBytes": 128 * 1024**2}
    (mount,) = task["ContainerSpec"]["Mounts"]
    assert mount["Type"] == "volume" and mount["Source"] == swarm_sandbox.volume and mount["Target"] == WORKSPACE
    assert mount["VolumeOptions"]["DriverConfig"]["Options"]["device"] == os.path.abspath(swarm_sandbox.workspace)

    host = task_container(swarm, swarm_sandbox).attrs["HostConfig"]
    assert host["PidsLimit"] == 128 and host["Memory"] == 512 * 1024**2 and host["NanoCpus"] == 10**9
    assert host["CapDrop"] == ["ALL"] and host["Init"] is True
    assert host["Ulimits"] == [{"Name": "fsize", "Soft": 1024 << 20, "Hard": 1024 << 20}]
    volume = swarm.volumes.get(swarm_sandbox.volume).attrs
    assert volume["Labels"]["jupyter-sessions.session"] == swarm_sandbox.session_id
    assert (await swarm_sandbox.exec("id -u; id -g")).output.split() == ["1000", "1000"]
    res = await swarm_sandbox.exec("grep CapEff /proc/self/status; find / -xdev -perm /6000 -type f 2>/dev/null")
    assert res.output.strip() == "CapEff:\t0000000000000000"  # no capabilities, no set-id files left
    assert (await swarm_sandbox.exec("test -e /var/run/docker.sock")).exit_code != 0


async def test_swarm_files_visible_on_host_and_adopt(swarm_sandbox):
    await swarm_sandbox.exec("mkdir -p out && echo from-sandbox > out/f.txt")
    host = Path(swarm_sandbox.workspace)
    assert (host / "out/f.txt").read_text() == "from-sandbox\n"
    clone = host / "repo"
    (clone / "src").mkdir(parents=True)
    (clone / "src/main.py").write_text("print(1)\n")  # the server clones into the host workspace
    await swarm_sandbox.adopt(clone)
    res = await swarm_sandbox.exec("echo 'print(2)' >> repo/src/main.py && touch repo/src/new.py && cat repo/src/main.py")
    assert res.exit_code == 0 and res.output == "print(1)\nprint(2)\n", res.output


async def test_swarm_stop_removes_service_keeps_volume(swarm_sandbox, swarm):
    await swarm_sandbox.write_file("keep.txt", b"kept")
    await swarm_sandbox.stop()
    assert swarm_sandbox.name not in [s.name for s in swarm.services.list()]
    assert swarm.volumes.get(swarm_sandbox.volume)  # the workspace volume stays for Resume
    assert not swarm.containers.list(all=True, filters={"label": f"com.docker.swarm.service.name={swarm_sandbox.name}"})
    with pytest.raises(SandboxGone, match="stopped or removed"):
        await swarm_sandbox.exec("true")
    info = await swarm_sandbox.start()
    assert info.ref == swarm_sandbox.name and info.detail["volume"] == swarm_sandbox.volume
    assert await swarm_sandbox.read_file("keep.txt") == b"kept"


async def test_swarm_remove_deletes_service_volume_and_network(swarm_sandbox, swarm):
    import docker.errors

    await swarm_sandbox.remove()
    assert swarm_sandbox.name not in [s.name for s in swarm.services.list()]
    with pytest.raises(docker.errors.NotFound):
        swarm.volumes.get(swarm_sandbox.volume)
    with pytest.raises(docker.errors.NotFound):
        swarm.networks.get(swarm_sandbox.name)
    assert Path(swarm_sandbox.workspace).is_dir()  # the host workspace belongs to the manager


async def test_swarm_killed_task_is_dead_and_start_brings_it_back(swarm_sandbox, swarm):
    await swarm_sandbox.write_file("keep.txt", b"kept")
    task_container(swarm, swarm_sandbox).kill()
    for _ in range(50):
        if not await swarm_sandbox.is_alive():
            break
        await asyncio.sleep(0.1)
    assert not await swarm_sandbox.is_alive()
    assert "137" in await swarm_sandbox.death_cause()  # restart condition none: it stays dead
    with pytest.raises(SandboxGone):
        await swarm_sandbox.exec("true")
    await swarm_sandbox.start()  # Resume after a death: a new task, the same workspace
    assert await swarm_sandbox.is_alive()
    assert await swarm_sandbox.read_file("keep.txt") == b"kept"


async def test_swarm_removed_from_outside_is_gone(swarm_sandbox, swarm):
    swarm.services.get(swarm_sandbox.name).remove()
    assert not await swarm_sandbox.is_alive()  # at once: the service is gone
    label = f"com.docker.swarm.service.name={swarm_sandbox.name}"
    for _ in range(150):  # its node agent removes the container a few seconds later
        if not swarm.containers.list(all=True, filters={"label": label}):
            break
        await asyncio.sleep(0.1)
    with pytest.raises(SandboxGone, match="no longer exists"):
        await swarm_sandbox.read_file("x")


async def test_swarm_reattach_after_server_restart(swarm_sandbox, swarm_backend, sandbox_image, instance):
    """A new server process (new backend, new sandbox object) finds the running task: no new task."""
    before = swarm_sandbox._container
    await swarm_sandbox.exec("echo state > state.txt")
    fresh = make_backend("swarm", image=sandbox_image, instance=instance, memory="512m", pids=128)
    try:
        again = fresh.sandbox(swarm_sandbox.session_id, swarm_sandbox.workspace)
        assert await again.is_alive()
        info = await again.start()
        assert info.detail["container"] == before
        assert (await again.exec("cat state.txt")).output == "state\n"
    finally:
        await fresh.close()


async def test_swarm_out_of_memory_is_explained(swarm_backend, tmp_path):
    sb = swarm_backend.sandbox("t-oom-" + uuid.uuid4().hex[:8], tmp_path / "oom", Limits(memory="64m"))
    await sb.start()
    try:
        res = await sb.exec("python3 -c 'x = bytearray(300 * 1024 * 1024)'")
        assert res.exit_code == 137 and "out of memory (limit 64m)" in res.output
    finally:
        await sb.remove()


async def test_swarm_unschedulable_says_why(swarm, sandbox_image, instance, tmp_path):
    b = make_backend("swarm", image=sandbox_image, instance=instance, start_timeout=3,
                     constraints=["node.labels.jupyter-sessions-test-nowhere==true"])
    sb = b.sandbox("t-nowhere-" + uuid.uuid4().hex[:6], tmp_path / "ws")
    try:
        with pytest.raises(SandboxError, match="did not start within 3 s: no suitable node"):
            await sb.start()
        assert sb.name not in [s.name for s in swarm.services.list()]  # it can't start later, unseen
    finally:
        await sb.remove()
        await b.close()


async def test_swarm_cleanup_orphans(swarm_sandbox, swarm_backend, swarm, sandbox_image, instance):
    from docker.types import DriverConfig, Mount, RestartPolicy

    labels = {"jupyter-sessions.managed": "true", "jupyter-sessions.session": f"orphan-{instance}",
              "jupyter-sessions.instance": instance, "jupyter-sessions.backend": "swarm"}
    swarm.volumes.create(f"jupyter-session-orphan-vol-{instance}", labels=labels)
    orphan = swarm.services.create(
        sandbox_image, ["sleep", "infinity"], name=f"jupyter-session-orphan-{instance}", labels=labels,
        restart_policy=RestartPolicy("none"), networks=[swarm_sandbox.name],
        mounts=[Mount("/workspace", f"jupyter-session-orphan-{instance}", labels=labels,
                      driver_config=DriverConfig("local"))])
    other = {**labels, "jupyter-sessions.instance": "someone-else"}
    bystander = swarm.volumes.create(f"jupyter-session-bystander-{instance}", labels=other)
    try:
        removed = await swarm_backend.cleanup_orphans({swarm_sandbox.session_id})
        assert removed == [f"orphan-{instance}"]
        assert orphan.name not in [s.name for s in swarm.services.list()]
        names = [v.name for v in swarm.volumes.list()]
        assert f"jupyter-session-orphan-{instance}" not in names
        assert f"jupyter-session-orphan-vol-{instance}" not in names
        assert bystander.name in names and swarm_sandbox.volume in names  # not ours / still live
        assert await swarm_sandbox.is_alive()
    finally:
        bystander.remove()


async def test_swarm_task_on_unreachable_node_is_explained(swarm_backend):
    with pytest.raises(SandboxError, match="swarm_node_engines"):
        swarm_backend.engine_for("no-such-node-id")


async def test_swarm_check_needs_swarm_mode(tmp_path):
    """An engine outside swarm mode (a recorded /info answer on a unix socket) gets the init hint."""
    import json
    import socketserver
    import threading
    from http.server import BaseHTTPRequestHandler

    answers = {"/_ping": "OK", "/version": {"ApiVersion": "1.41", "Version": "20.10.24"},
               "/info": {"Swarm": {"LocalNodeState": "inactive", "ControlAvailable": False}}}

    class Engine(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = answers.get("/" + self.path.split("?")[0].split("/", 2)[-1] if self.path.count("/") > 1
                               else self.path.split("?")[0])
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def address_string(self):
            return "engine"

        def log_message(self, *args):
            pass

    sock = str(tmp_path / "engine.sock")
    server = socketserver.ThreadingUnixStreamServer(sock, Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = make_backend("swarm", docker_url=f"unix://{sock}")
        with pytest.raises(SandboxUnavailable) as err:
            await backend.check()
        assert "docker swarm init --advertise-addr 127.0.0.1" in str(err.value)
        assert await backend.cleanup_orphans(set()) == []  # nothing to clean outside swarm mode
        await backend.close()
    finally:
        server.shutdown()
        server.server_close()
