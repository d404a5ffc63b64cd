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
    WORKSPACE, Limits, PathOutsideWorkspace, SandboxGone, SandboxUnavailable, make_backend,
)

BACKENDS = ["docker", "local"]


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def docker_client():
    import docker

    client = docker.from_env()
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def sandbox_image(docker_client) -> str:
    """The project's default image, built once (cached by its recipe hash afterwards)."""
    from jupyter_sessions.sandbox.image import build_image

    return build_image(docker_client)


@pytest.fixture
def instance() -> str:
    """Label value scoping this test's containers, so cleanup never touches anyone else's."""
    return f"pytest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def run(jp_asyncio_loop):
    """Run a coroutine from a (sync) fixture on the loop the async tests run on."""
    return jp_asyncio_loop.run_until_complete


@pytest.fixture(params=BACKENDS)
def backend(request, instance, run):
    if request.param == "docker":
        image = request.getfixturevalue("sandbox_image")
        b = make_backend("docker", image=image, instance=instance, memory="512m", cpus=1.0, pids=128)
    else:
        b = make_backend("local", image="ignored", docker_url="ignored")
    run(b.check())
    yield b
    if request.param == "docker":
        run(b.cleanup_orphans(set()))  # removes every container labelled with this test's instance
    run(b.close())


@pytest.fixture
def docker_backend(instance, sandbox_image, run):
    b = make_backend("docker", image=sandbox_image, instance=instance, memory="512m", pids=128)
    yield b
    run(b.cleanup_orphans(set()))
    run(b.close())


@pytest.fixture
def sandbox(backend, tmp_path, run):
    sb = backend.sandbox(f"t-{uuid.uuid4().hex[:10]}", tmp_path / "ws", backend.limits)
    run(sb.start())
    yield sb
    run(sb.remove())


@pytest.fixture
def docker_sandbox(docker_backend, tmp_path, run):
    run(docker_backend.check())
    sb = docker_backend.sandbox(f"t-{uuid.uuid4().hex[:10]}", tmp_path / "ws", docker_backend.limits)
    run(sb.start())
    yield sb
    run(sb.remove())


def ws_dir(sb) -> str:
    """The workspace as commands in the sandbox see it."""
    return WORKSPACE if sb.backend == "docker" else os.path.realpath(sb.workspace)


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
