"""Docker sandboxes: one long-lived container per session, driven over the engine's API socket.

Design choices, and why:
- The container's main process (docker's init + `sleep infinity`) runs as `nobody` (65534) while
  every command and file operation runs as the sandbox user (1000). So `kill -9 -1` as 1000
  (kill_processes) kills everything the agent started and can never take the container down.
- Each exec carries a unique token in its environment. At the timeout every process holding the
  token is killed, including children that left the process group (`setsid`, `nohup ... &`), so a
  background job that keeps the output pipe open cannot hold the call past its timeout.
- File reads/writes resolve the path *inside* the container (`realpath -m`) and move bytes with the
  archive API, so a workspace symlink to / means the container's /, never the host's.
- Blocking SDK calls run in threads; exec reads its socket with select() so it honours deadlines
  and cancellation without help from the engine.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import select
import socket
import tarfile
import threading
import time
import uuid
from pathlib import Path

from .base import (
    WORKSPACE, ExecResult, Limits, Sandbox, SandboxBackend, SandboxError, SandboxGone, SandboxInfo,
    SandboxUnavailable,
)
from .paths import parse_resolved, require_file, resolve_command

log = logging.getLogger("jupyter_sessions.sandbox")

LABEL_MANAGED = "jupyter-sessions.managed"
LABEL_SESSION = "jupyter-sessions.session"
LABEL_INSTANCE = "jupyter-sessions.instance"
SANDBOX_UID = 1000
SANDBOX_USER = "1000:1000"
KEEPER_USER = "65534:65534"  # the container's init + sleep: out of reach of the sandbox user
EXEC_TOKEN = "JUPYTER_SESSIONS_EXEC"
GRACE = 3.0  # seconds to drain output after killing a timed-out command
INSTALL_HINT = (
    "install Docker (apt-get install docker.io) and start dockerd, "
    "or set c.SessionsApp.sandbox = 'local'"
)
EXEC_ENV = {"HOME": "/home/sandbox", "LANG": "C.UTF-8", "TERM": "dumb", "PAGER": "cat", "GIT_PAGER": "cat"}

# Kill every process carrying this exec's token; STOP first so nothing forks between rounds.
_KILL_TOKEN = r"""t="$1"; for r in 1 2 3 4 5; do
  pids=""
  for d in /proc/[0-9]*; do
    grep -qzxF -- "$t" "$d/environ" 2>/dev/null && pids="$pids ${d#/proc/}"
  done
  [ -z "$pids" ] && exit 0
  kill -STOP $pids 2>/dev/null; kill -KILL $pids 2>/dev/null
done"""

# The memory cgroup's OOM-kill counter (cgroup v2, then v1): tells a plain SIGKILL from an OOM kill.
_OOM_KILLS = "cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null " \
             "| sed -n 's/^oom_kill //p' | head -n1"

def container_name(session_id: str) -> str:
    return "jupyter-session-" + re.sub(r"[^a-zA-Z0-9_.-]", "-", session_id)


def chown_tree(path: Path, uid: int = SANDBOX_UID, gid: int = SANDBOX_UID) -> None:
    """Give a host tree to the sandbox user (only possible, and only needed, when we are root).

    Symlinks are changed themselves (lchown), never followed.
    """
    if os.geteuid() != 0 or not os.path.lexists(path):
        return

    def fix(p: str) -> None:
        st = os.lstat(p)
        if st.st_uid != uid or st.st_gid != gid:
            os.lchown(p, uid, gid)

    fix(str(path))
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path, followlinks=False):
            for name in dirs + files:
                fix(os.path.join(root, name))


class DockerBackend(SandboxBackend):
    """Creates DockerSandbox objects and finds orphaned containers.

    `image=None` uses the project's own image (built offline on first use, ~40 s). `instance`, when
    given, labels containers so cleanup_orphans() only touches this server's containers on an
    engine shared by several servers.
    """

    name = "docker"
    isolated = True

    def __init__(self, image: str | None = None, *, docker_url: str | None = None, memory: str = Limits.memory,
                 cpus: float = Limits.cpus, pids: int = Limits.pids, network: bool = Limits.network,
                 instance: str | None = None, timeout: float = 60):
        self.image = image or None
        self.docker_url = docker_url or None
        self.limits = Limits(memory=memory, cpus=cpus, pids=pids, network=network)
        self.instance = instance
        self.timeout = timeout
        self._client = None
        self._image_tag: str | None = None
        self._connect_lock = threading.Lock()
        self._image_lock = asyncio.Lock()

    # -- engine -------------------------------------------------------------------------------
    def connect(self):
        """The docker client (sync; connects and negotiates the API version on first use)."""
        with self._connect_lock:
            if self._client is None:
                import docker

                where = self.docker_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
                try:
                    if self.docker_url:
                        client = docker.DockerClient(base_url=self.docker_url, timeout=self.timeout)
                    else:
                        client = docker.DockerClient.from_env(timeout=self.timeout)
                    client.ping()
                except Exception as e:  # DockerException, requests' ConnectionError, ...
                    raise SandboxUnavailable(
                        f"the Docker engine at {where} is not reachable ({e}); to use docker sandboxes, {INSTALL_HINT}"
                    ) from e
                self._client = client
            return self._client

    async def client(self):
        return await asyncio.to_thread(self.connect)

    async def image_tag(self) -> str:
        """The image sandboxes run: the configured one (must exist) or the built default."""
        async with self._image_lock:
            if self._image_tag:
                return self._image_tag
            client = await self.client()
            if self.image:
                import docker.errors

                try:
                    await asyncio.to_thread(client.images.get, self.image)
                except docker.errors.ImageNotFound as e:
                    raise SandboxUnavailable(
                        f"sandbox image {self.image!r} is not in the Docker engine (nothing is pulled from a "
                        "registry): load or build it there, or leave c.SessionsApp.docker_image empty to use "
                        "the project's own image"
                    ) from e
                self._image_tag = self.image
            else:
                from .image import ensure_image

                try:
                    self._image_tag = await ensure_image(client)
                except Exception as e:
                    raise SandboxUnavailable(f"cannot build the default sandbox image: {e}") from e
            return self._image_tag

    async def check(self) -> None:
        """The engine answers now (not just at first use) and the image is there."""
        client = await self.client()

        def ping() -> None:
            try:
                client.ping()
            except Exception as e:  # the engine went away since we connected (restart, crash)
                where = self.docker_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
                raise SandboxUnavailable(
                    f"the Docker engine at {where} is not reachable ({e}); to use docker sandboxes, "
                    f"{INSTALL_HINT}") from e

        await asyncio.to_thread(ping)
        await self.image_tag()

    def sandbox(self, session_id: str, workspace: Path, limits: Limits | None = None) -> DockerSandbox:
        return DockerSandbox(self, session_id, Path(workspace), limits or self.limits)

    def labels(self, session_id: str) -> dict[str, str]:
        labels = {LABEL_MANAGED: "true", LABEL_SESSION: session_id}
        if self.instance:
            labels[LABEL_INSTANCE] = self.instance
        return labels

    async def cleanup_orphans(self, live_session_ids: set[str]) -> list[str]:
        return await asyncio.to_thread(self._cleanup_sync, set(live_session_ids))

    def _cleanup_sync(self, live: set[str]) -> list[str]:
        import docker.errors

        wanted = [f"{LABEL_MANAGED}=true"] + ([f"{LABEL_INSTANCE}={self.instance}"] if self.instance else [])
        removed = []
        for c in self.connect().containers.list(all=True, filters={"label": wanted}):
            sid = c.labels.get(LABEL_SESSION, "")
            if sid in live:
                continue
            try:
                c.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                log.warning("could not remove orphan sandbox %s: %s", c.name, e)
                continue
            log.info("removed orphan sandbox container %s", c.name)
            removed.append(sid)
        return removed

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)


class ContainerSandbox(Sandbox):
    """Exec and file transfer into one running container: shared by docker and swarm sandboxes.

    A subclass says which container (`_target`: name or id), which engine (`_api`: a docker
    APIClient) and why the container cannot run commands (`_gone`); everything else (commands with
    deadlines and token kills, the archive-based file tools, OOM explanations) lives here.
    """

    def __init__(self, session_id: str, workspace: Path, limits: Limits):
        super().__init__(session_id, workspace, limits)
        self.name = container_name(session_id)
        self._oom_seen = 0

    @property
    def _api(self):
        raise NotImplementedError

    @property
    def _target(self) -> str:
        """The container commands run in (name or id)."""
        return self.name

    def _gone(self) -> SandboxGone | None:
        """SandboxGone describing why the container can't run commands, or None if it can."""
        raise NotImplementedError

    async def adopt(self, host_path: Path) -> None:
        await asyncio.to_thread(chown_tree, Path(host_path))

    async def kill_processes(self) -> None:
        def kill() -> None:
            try:
                self._run(["bash", "-c", "kill -9 -1 2>/dev/null; true"])
            except SandboxGone:
                pass

        await asyncio.to_thread(kill)

    # -- errors -------------------------------------------------------------------------------
    def _translate(self, e: Exception) -> Exception:
        import docker.errors

        if isinstance(e, docker.errors.NotFound) or (isinstance(e, docker.errors.APIError) and e.status_code == 409):
            return self._gone() or SandboxError(str(e))
        return SandboxError(f"docker: {e}")

    # -- small helper execs -------------------------------------------------------------------
    def _run(self, cmd: list[str], user: str = SANDBOX_USER) -> tuple[int, bytes, bytes]:
        """Run a short helper (as the sandbox user unless told); (exit code, stdout, stderr)."""
        import docker.errors

        try:
            eid = self._api.exec_create(self._target, cmd, user=user, workdir=WORKSPACE,
                                        environment=EXEC_ENV)["Id"]
            out, err = self._api.exec_start(eid, demux=True)
            code = self._api.exec_inspect(eid).get("ExitCode")
        except docker.errors.APIError as e:
            raise self._translate(e) from e
        return code, out or b"", err or b""

    def _resolve(self, path: str, mkdir: bool = False) -> tuple[str, str, str]:
        """(kind, octal mode, resolved path) inside the container; refuses paths outside /workspace."""
        return parse_resolved(path, *self._run(resolve_command(path, mkdir)))

    # -- files --------------------------------------------------------------------------------
    async def read_file(self, path: str, *, max_bytes: int = 10_000_000) -> bytes:
        return await asyncio.to_thread(self._read_sync, path, max_bytes)

    def _read_sync(self, path: str, max_bytes: int) -> bytes:
        import docker.errors

        kind, _, resolved = self._resolve(path)
        require_file(kind, path)
        try:
            stream, stat = self._api.get_archive(self._target, resolved)
            if stat.get("size", 0) > max_bytes:
                raise SandboxError(f"{path} is {stat['size']} bytes, more than the {max_bytes} byte limit")
            data = b"".join(stream)
        except docker.errors.APIError as e:
            gone = self._gone()
            if gone:
                raise gone from e
            raise FileNotFoundError(f"no such file: {path}") from e
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise SandboxError(f"{path} is not a regular file")
            return tar.extractfile(member).read()

    async def write_file(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_sync, path, bytes(data))

    def _write_sync(self, path: str, data: bytes) -> None:
        import docker.errors

        kind, mode, resolved = self._resolve(path, mkdir=True)
        if kind == "d" or resolved == WORKSPACE:
            raise IsADirectoryError(f"{path} is a directory")
        if kind == "o":
            raise SandboxError(f"{path} is not a regular file")
        parent, _, base = resolved.rpartition("/")
        info = tarfile.TarInfo(base)
        info.size, info.mtime = len(data), int(time.time())
        info.mode = int(mode, 8) if kind == "f" else 0o644
        info.uid = info.gid = SANDBOX_UID
        info.uname = info.gname = "sandbox"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(info, io.BytesIO(data))
        try:
            self._api.put_archive(self._target, parent or "/", buf.getvalue())
        except docker.errors.APIError as e:
            raise self._translate(e) from e

    # -- commands -----------------------------------------------------------------------------
    async def exec(self, command: str, *, timeout: float = 120, output_cap: int = 100_000,
                   cwd: str = WORKSPACE) -> ExecResult:
        cancel = threading.Event()
        task = asyncio.ensure_future(asyncio.to_thread(self._exec_sync, command, timeout, output_cap, cwd, cancel))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancel.set()  # the thread kills the command and returns within a moment
            raise

    def _exec_sync(self, command: str, timeout: float, cap: int, cwd: str, cancel: threading.Event) -> ExecResult:
        import docker.errors

        token = f"{EXEC_TOKEN}={uuid.uuid4().hex}"
        name, value = token.split("=", 1)
        wrapper = 'cd -- "$1" 2>/dev/null || { echo "no such directory: $1" >&2; exit 1; }; exec bash -lc "$2"'
        workdir = cwd if cwd.startswith("/") else f"{WORKSPACE}/{cwd}"
        try:
            eid = self._api.exec_create(self._target, ["bash", "-c", wrapper, "bash", workdir, command],
                                        user=SANDBOX_USER, workdir=WORKSPACE,
                                        environment={**EXEC_ENV, name: value})["Id"]
            sock = self._api.exec_start(eid, socket=True)
        except docker.errors.APIError as e:
            raise self._translate(e) from e

        out, truncated, timed_out = bytearray(), False, False
        raw = getattr(sock, "_sock", sock)
        pending = bytearray()
        deadline = time.monotonic() + (timeout if timeout and timeout > 0 else 10**9)
        give_up = None
        try:
            while True:
                now = time.monotonic()
                if give_up is None and (now >= deadline or cancel.is_set()):
                    timed_out = not cancel.is_set()
                    self._kill_token(token)
                    give_up = now + GRACE
                if give_up is not None and now >= give_up:
                    break
                buffered = getattr(raw, "pending", lambda: 0)()  # TLS: decrypted bytes select() can't see
                wait = 0 if buffered else max(0.0, min(0.25, (give_up or deadline) - now))
                ready, _, _ = select.select([raw], [], [], wait)
                if not ready and not buffered:
                    continue
                try:
                    chunk = raw.recv(65536)
                except (BlockingIOError, InterruptedError, socket.timeout):
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                pending += chunk
                while len(pending) >= 8:  # multiplexed frames: 8-byte header, then the payload
                    size = int.from_bytes(pending[4:8], "big")
                    if len(pending) < 8 + size:
                        break
                    room = cap - len(out)
                    if size > room:
                        truncated = True
                    if room > 0:
                        out += pending[8:8 + min(size, room)]
                    del pending[:8 + size]
        finally:
            for closer in (raw, sock):
                try:
                    closer.close()
                except Exception:
                    pass
        exit_code = None if give_up is not None else self._exit_code(eid)
        if cancel.is_set():
            out += b"\n[cancelled]"
        elif exit_code == 137 and (kills := self._oom_kills()) > self._oom_seen:
            self._oom_seen = kills
            out += f"\n[killed: the sandbox ran out of memory (limit {self.limits.memory})]".encode()
        return ExecResult(exit_code=exit_code, output=out.decode("utf-8", errors="replace"),
                          truncated=truncated, timed_out=timed_out)

    def _oom_kills(self) -> int:
        try:
            _, out, _ = self._run(["bash", "-c", _OOM_KILLS])
            return int(out.strip() or 0)
        except (SandboxError, ValueError):
            return 0

    def _exit_code(self, eid: str) -> int | None:
        for _ in range(50):  # output ends a moment before the engine records the exit
            info = self._api.exec_inspect(eid)
            if not info.get("Running"):
                return info.get("ExitCode")
            time.sleep(0.02)
        return None

    def _kill_token(self, token: str) -> None:
        try:
            self._run(["bash", "-c", _KILL_TOKEN, "kill", token])
        except SandboxError as e:
            log.warning("could not kill timed-out command in %s: %s", self.name, e)


class DockerSandbox(ContainerSandbox):
    """One session's container. Survives stop()/start(); remove() deletes it (not the workspace)."""

    backend = "docker"
    isolated = True

    def __init__(self, owner: DockerBackend, session_id: str, workspace: Path, limits: Limits):
        super().__init__(session_id, workspace, limits)
        self.owner = owner
        self._start_lock = asyncio.Lock()

    @property
    def _api(self):
        return self.owner.connect().api

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> SandboxInfo:
        async with self._start_lock:
            image = await self.owner.image_tag()
            host = Path(os.path.abspath(self.workspace))
            await asyncio.to_thread(host.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(chown_tree, host)
            info = await asyncio.to_thread(self._start_sync, image, host)
            self._oom_seen = await asyncio.to_thread(self._oom_kills)
            return info

    def _start_sync(self, image: str, host: Path) -> SandboxInfo:
        import docker.errors

        client = self.owner.connect()
        try:
            c = client.containers.get(self.name)
            if c.status in ("dead", "removing"):
                c.remove(force=True)
                c = None
        except docker.errors.NotFound:
            c = None
        if c is None:
            try:
                c = self._create(client, image, host)
            except docker.errors.APIError as e:
                if e.status_code != 409:  # 409: created concurrently by another start()
                    raise SandboxError(f"cannot create sandbox container {self.name}: {e.explanation or e}") from e
                c = client.containers.get(self.name)
        if c.status == "paused":
            c.unpause()
        elif c.status != "running":
            try:
                c.start()
            except docker.errors.APIError as e:
                raise SandboxError(f"cannot start sandbox container {self.name}: {e.explanation or e}") from e
        c.reload()
        if c.status != "running":
            logs = c.logs(tail=20).decode(errors="replace")
            raise SandboxError(f"sandbox container {self.name} exited at start: {logs}")
        log.info("sandbox %s running (%s)", self.name, c.short_id)
        return SandboxInfo(
            backend="docker", isolated=True, ref=c.id,
            detail={"container": self.name, "image": c.attrs["Config"]["Image"], "memory": self.limits.memory,
                    "cpus": self.limits.cpus, "pids": self.limits.pids, "network": self.limits.network},
        )

    def _create(self, client, image: str, host: Path):
        from docker.types import Mount, Ulimit

        lim = self.limits
        kwargs = {} if lim.network else {"network_mode": "none"}
        return client.containers.create(
            image, name=self.name, labels=self.owner.labels(self.session_id),
            entrypoint=["sleep", "infinity"], init=True, user=KEEPER_USER, working_dir=WORKSPACE,
            hostname="sandbox", environment=EXEC_ENV,
            mounts=[Mount(target=WORKSPACE, source=str(host), type="bind")],
            tmpfs={"/tmp": "rw,exec,nosuid,nodev,size=512m,mode=1777"},
            mem_limit=lim.memory, memswap_limit=lim.memory, nano_cpus=int(lim.cpus * 1e9),
            pids_limit=lim.pids, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            ulimits=[Ulimit(name="fsize", soft=lim.max_file_mb << 20, hard=lim.max_file_mb << 20)], **kwargs,
        )

    async def is_alive(self) -> bool:
        def alive() -> bool:
            import docker.errors

            try:
                return bool(self._api.inspect_container(self.name)["State"]["Running"])
            except docker.errors.NotFound:
                return False

        return await asyncio.to_thread(alive)

    async def death_cause(self) -> str | None:
        """Why the container is not running (removed, OOM-killed, exit code), for the Failed reason."""
        gone = await asyncio.to_thread(self._gone)
        return str(gone) if gone else None

    async def stop(self) -> None:
        def stop() -> None:
            import docker.errors

            try:
                self._api.stop(self.name, timeout=2)
            except docker.errors.NotFound:
                pass

        await asyncio.to_thread(stop)

    async def remove(self) -> None:
        def remove() -> None:
            import docker.errors

            try:
                self._api.remove_container(self.name, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if e.status_code != 409:  # 409: removal already in progress
                    raise

        await asyncio.to_thread(remove)

    # -- errors -------------------------------------------------------------------------------
    def _gone(self) -> SandboxGone | None:
        """SandboxGone describing why the container can't run commands, or None if it can."""
        import docker.errors

        try:
            state = self._api.inspect_container(self.name)["State"]
        except docker.errors.NotFound:
            return SandboxGone(f"sandbox container {self.name} no longer exists (it was removed)")
        if state.get("Running"):
            return None
        if state.get("OOMKilled"):
            return SandboxGone(
                f"sandbox container {self.name} was killed: out of memory (limit {self.limits.memory})")
        return SandboxGone(
                f"sandbox container {self.name} is not running (state {state.get('Status')}, "
                f"exit code {state.get('ExitCode')})")
