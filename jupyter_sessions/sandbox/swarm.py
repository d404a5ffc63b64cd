"""Swarm sandboxes: one Docker Swarm service per session, so sandboxes spread over a cluster.

What a session gets, and why:
- **One service, one replica, restart condition `none`.** The scheduler picks a node that satisfies
  the placement constraints and has the reserved CPU/memory free; a task that dies stays dead (the
  manager notices and marks the session Failed, exactly like a killed docker container) instead of
  being silently replaced by a fresh container.
- **Stop removes the service, Resume creates it again** with the same name (the sandbox `ref`),
  labels, volume and network. Scaling 0 -> 1 was tried first: with restart condition `none`,
  swarmkit (engine 20.10) sometimes creates no task for the scaled-up slot while the old task is
  still being reaped, and a task that died needs a forced update anyway; a fresh service always
  gets its task, and removing one (plus its container, directly) takes ~0.3 s.
- **Exec and file transfer go to the task's container** through the same engine API the docker
  backend uses (`ContainerSandbox` in docker.py): swarm tasks are ordinary containers on a node.
  The container is found from the service's running task (`ContainerStatus.ContainerID`, the
  container carries the label `com.docker.swarm.service.name`). The Docker API execs only into
  containers of the engine it talks to, so on a multi-node swarm the server needs each node's
  engine URL (`node_engines`); on a single node the local engine is enough.
- **Workspace on a named volume** (`jupyter-session-<id>`), declared in the service's mount with
  its driver and options, so whichever node runs the task creates the same volume. The default is
  the `local` driver bound to the server's workspace directory (`type=none,o=bind,device=<host
  path>`): the server clones repos into that directory before start() and sees every file the
  agent writes. That is correct on one node, or on several nodes that all mount the workspace
  directory (e.g. over NFS) at the same path. With the local driver and a path that exists only on
  the server's node, a task placed elsewhere fails to mount it and start() reports the mount error;
  a plain local volume without options would instead start *empty* on the other node. For a real
  multi-node cluster set `volume_driver`/`volume_options` to shared storage (see docs/scale-out.md).
- **No network**: swarm services cannot join the `none` network (engine 20.10 answers "network none
  not found") and without a network a task joins the default bridge, which has egress. So each
  session gets its own `--internal` overlay network: the only interfaces are lo and the overlay
  endpoint, there is no default route (connecting out fails with "Network is unreachable") and,
  one network per session, sandboxes cannot reach each other either.
- **Hardening**: user 1000 for every exec, a keeper process as 65534 under docker's init, all
  capabilities dropped, CPU/memory/pids limits, the file-size ulimit. The swarm API of engine
  20.10 has no `no-new-privileges`, so start() strips the setuid/setgid bits from the task's root
  filesystem instead (an exec as root, which holds no capabilities, on files root owns).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import threading
import time
from pathlib import Path

from .base import (
    Limits, SandboxBackend, SandboxError, SandboxGone, SandboxInfo, SandboxUnavailable,
)
from .docker import (
    _OOM_KILLS, EXEC_ENV, KEEPER_USER, LABEL_INSTANCE, LABEL_MANAGED, LABEL_SESSION, WORKSPACE,
    ContainerSandbox, DockerBackend, chown_tree,
)

log = logging.getLogger("jupyter_sessions.sandbox")

LABEL_BACKEND = "jupyter-sessions.backend"
SWARM_HINT = (
    "the Docker engine is not a swarm manager; start a single-node swarm with "
    "`docker swarm init --advertise-addr 127.0.0.1` (or join this engine to your cluster as a manager), "
    "or set c.SessionsApp.sandbox = 'docker'"
)
#: Task states before `running` (swarmkit's order) and the ones a task never leaves.
PRE_RUNNING = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting")
FAILED = ("failed", "rejected", "orphaned")
# Strip set-id bits from the root filesystem (not /workspace or /tmp: -xdev); root owns those files.
_STRIP_SETID = "find / -xdev -perm /6000 -type f -print -exec chmod ug-s {} + 2>/dev/null; true"
DEFAULT_VOLUME_OPTIONS = {"type": "none", "o": "bind", "device": "{workspace}"}
POLL = 0.1  # seconds between task polls while sandboxes start


def service_name(session_id: str) -> str:
    """A valid service/volume/network name (DNS label: letters, digits, '-', at most 63)."""
    name = "jupyter-session-" + re.sub(r"[^a-zA-Z0-9-]", "-", session_id)
    if len(name) > 63:
        name = name[:50] + "-" + hashlib.sha256(session_id.encode()).hexdigest()[:12]
    return name


def parse_bytes(value: str) -> int:
    from docker.utils import parse_bytes as parse

    return int(parse(value))


class SwarmBackend(SandboxBackend):
    """Creates SwarmSandbox objects on the swarm the engine at `docker_url` manages.

    `constraints` are swarm placement constraints (`node.labels.sandbox==true`, `node.role==worker`).
    `reservation` is the fraction of each sandbox's CPU/memory limit the scheduler reserves on a node
    (0 = none, 1 = reserve the full limit: never overcommit). `volume_driver` and `volume_options`
    make the workspace volume; option values may use `{workspace}` (the server's host path),
    `{session_id}` and `{volume}`. `node_engines` maps a node's hostname or id to its engine URL, for
    tasks on nodes other than the one `docker_url` reaches. `network_per_session=False` puts every
    sandbox on one shared internal overlay instead (cheaper; sandboxes can then reach each other).
    """

    name = "swarm"
    isolated = True

    def __init__(self, image: str | None = None, *, docker_url: str | None = None, memory: str = Limits.memory,
                 cpus: float = Limits.cpus, pids: int = Limits.pids, network: bool = Limits.network,
                 max_file_mb: int = Limits.max_file_mb, instance: str | None = None, timeout: float = 60,
                 constraints: list[str] | tuple[str, ...] = (),
                 reservation: float = 0.1, volume_driver: str = "local", volume_options: dict | None = None,
                 network_per_session: bool = True, node_engines: dict[str, str] | None = None,
                 start_timeout: float = 120):
        self.engine = DockerBackend(image, docker_url=docker_url, instance=instance, timeout=timeout)
        self.limits = Limits(memory=memory, cpus=cpus, pids=pids, network=network, max_file_mb=max_file_mb)
        self.instance = instance
        self.constraints = list(constraints or ())
        self.reservation = max(0.0, min(1.0, float(reservation)))
        self.volume_driver = volume_driver or "local"
        self.volume_options = dict(DEFAULT_VOLUME_OPTIONS if volume_options is None else volume_options)
        self.network_per_session = network_per_session
        self.node_engines = dict(node_engines or {})
        self.start_timeout = start_timeout
        self.timeout = timeout
        self._node_clients: dict[str, object] = {}
        self._local_node: str | None = None
        self._lock = threading.Lock()
        self.setid_files: dict[str, list[str]] = {}  # image -> its set-id files (stripped in each task)
        self.scan_lock = asyncio.Lock()
        self._waiting: dict[str, list[asyncio.Future]] = {}
        self._poller: asyncio.Task | None = None

    # -- engine -------------------------------------------------------------------------------
    def connect(self):
        return self.engine.connect()

    @property
    def api(self):
        return self.connect().api

    async def image_tag(self) -> str:
        return await self.engine.image_tag()

    def local_node(self) -> str:
        if self._local_node is None:
            self._local_node = self.connect().info().get("Swarm", {}).get("NodeID") or ""
        return self._local_node

    def _swarm_state(self) -> None:
        info = self.connect().info()
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise SandboxUnavailable(SWARM_HINT)
        self._local_node = swarm.get("NodeID") or ""

    async def check(self) -> None:
        await asyncio.to_thread(self._swarm_state)
        await self.image_tag()

    def engine_for(self, node_id: str):
        """The docker APIClient of the engine running on `node_id` (exec only works there)."""
        if not node_id or node_id == self.local_node():
            return self.api
        with self._lock:
            if node_id in self._node_clients:
                return self._node_clients[node_id].api
        try:
            hostname = self.api.inspect_node(node_id)["Description"]["Hostname"]
        except Exception:
            hostname = ""
        url = self.node_engines.get(node_id) or self.node_engines.get(hostname)
        if not url:
            raise SandboxError(
                f"the sandbox task runs on swarm node {hostname or node_id}, whose Docker engine this server "
                "cannot reach: add it to c.SessionsApp.swarm_node_engines ({hostname: 'tcp://...:2376'}) "
                "or pin sandboxes to reachable nodes with c.SessionsApp.swarm_constraints")
        import docker

        client = docker.DockerClient(base_url=url, timeout=self.timeout)
        with self._lock:
            self._node_clients.setdefault(node_id, client)
            return self._node_clients[node_id].api

    # -- one tasks poll for every start in progress ---------------------------------------------
    async def next_tasks(self, service_id: str) -> list[dict]:
        """The service's tasks (oldest first) from the next poll round.

        50 sandboxes starting at once cost one `GET /tasks?filters={"service": [...]}` every
        POLL seconds, not 50 pollers.
        """
        fut = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(service_id, []).append(fut)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll())
        return await fut

    async def _poll(self) -> None:
        first = True
        while self._waiting:
            await asyncio.sleep(0.02 if first else POLL)
            first = False
            waiting, self._waiting = self._waiting, {}
            try:
                tasks = await asyncio.to_thread(self.api.tasks, filters={"service": list(waiting)})
            except Exception as e:
                for futs in waiting.values():
                    for f in futs:
                        if not f.done():
                            f.set_exception(SandboxError(f"cannot list swarm tasks: {e}"))
                continue
            by_service: dict[str, list[dict]] = {}
            for t in tasks:
                by_service.setdefault(t.get("ServiceID", ""), []).append(t)
            for sid, futs in waiting.items():
                mine = sorted(by_service.get(sid, []),
                              key=lambda t: (t.get("CreatedAt", ""), t.get("Version", {}).get("Index", 0)))
                for f in futs:
                    if not f.done():
                        f.set_result(mine)

    def sandbox(self, session_id: str, workspace: Path, limits: Limits | None = None) -> SwarmSandbox:
        return SwarmSandbox(self, session_id, Path(workspace), limits or self.limits)

    def labels(self, session_id: str) -> dict[str, str]:
        labels = {LABEL_MANAGED: "true", LABEL_SESSION: session_id, LABEL_BACKEND: "swarm"}
        if self.instance:
            labels[LABEL_INSTANCE] = self.instance
        return labels

    def _label_filter(self) -> list[str]:
        return ([f"{LABEL_MANAGED}=true", f"{LABEL_BACKEND}=swarm"]
                + ([f"{LABEL_INSTANCE}={self.instance}"] if self.instance else []))

    # -- networks -----------------------------------------------------------------------------
    def shared_network(self) -> str:
        return "jupyter-sessions-internal" + (f"-{self.instance}" if self.instance else "")

    def ensure_network(self, name: str, labels: dict[str, str]) -> str:
        """An internal (no egress) overlay network called `name`; its id."""
        import docker.errors

        with self._lock:  # one creator per name in this process; the engine rejects duplicates otherwise
            for net in self.api.networks(names=[name]):
                if net["Name"] == name:
                    return net["Id"]
            try:
                return self.api.create_network(name, driver="overlay", internal=True, labels=labels,
                                               check_duplicate=True)["Id"]
            except docker.errors.APIError as e:
                if e.status_code != 409:
                    raise SandboxError(f"cannot create the sandbox network {name}: {e.explanation or e}") from e
                return next(n["Id"] for n in self.api.networks(names=[name]) if n["Name"] == name)

    # -- orphans ------------------------------------------------------------------------------
    async def cleanup_orphans(self, live_session_ids: set[str]) -> list[str]:
        try:
            await asyncio.to_thread(self._swarm_state)
        except SandboxUnavailable:
            return []  # not a swarm manager: there are no services to look at
        return await asyncio.to_thread(self._cleanup_sync, set(live_session_ids))

    def _cleanup_sync(self, live: set[str]) -> list[str]:
        import docker.errors

        api, wanted = self.api, self._label_filter()
        removed: list[str] = []
        for svc in api.services(filters={"label": wanted}):
            sid = svc["Spec"].get("Labels", {}).get(LABEL_SESSION, "")
            if sid in live:
                continue
            try:
                drop_service(self, svc["ID"])
            except docker.errors.APIError as e:
                log.warning("could not remove orphan sandbox service %s: %s", svc["Spec"]["Name"], e)
                continue
            log.info("removed orphan sandbox service %s", svc["Spec"]["Name"])
            removed.append(sid)
        for vol in (api.volumes(filters={"label": wanted}) or {}).get("Volumes") or []:
            sid = (vol.get("Labels") or {}).get(LABEL_SESSION, "")
            if sid in live:
                continue
            if remove_volume(api, vol["Name"], 10) and sid not in removed:
                removed.append(sid)
        for net in api.networks(filters={"label": wanted}):
            sid = (net.get("Labels") or {}).get(LABEL_SESSION, "")
            if sid and sid not in live:
                remove_network(api, net["Id"], 10)
        return removed

    async def close(self) -> None:
        with self._lock:
            clients, self._node_clients = list(self._node_clients.values()), {}
        for client in clients:
            await asyncio.to_thread(client.close)
        await self.engine.close()


def drop_service(backend: SwarmBackend, service_id: str, timeout: float = 15) -> None:
    """Remove a service and, without waiting for the node agents, its task containers.

    The agents would remove the containers too, but only after their shutdown sequence (seconds
    with an overlay network); the volume and network can't be removed while a container holds them.
    """
    import docker.errors

    api = backend.api
    try:
        tasks = api.tasks(filters={"service": service_id})
    except docker.errors.APIError:
        tasks = []
    try:
        api.remove_service(service_id)
    except docker.errors.NotFound:
        pass
    for task in tasks:
        cid = task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID")
        if not cid:
            continue
        try:
            backend.engine_for(task.get("NodeID") or "").remove_container(cid, force=True, v=False)
        except (docker.errors.APIError, SandboxError):
            pass  # already gone, being removed, or on a node we can't reach: its agent removes it
    deadline = time.monotonic() + timeout
    label = f"com.docker.swarm.service.id={service_id}"
    while api.containers(all=True, filters={"label": label}) and time.monotonic() < deadline:
        time.sleep(0.1)


def remove_volume(api, name: str, timeout: float) -> bool:
    """Remove a volume, waiting while a dying container still uses it; False if it is still in use."""
    import docker.errors

    deadline = time.monotonic() + timeout
    while True:
        try:
            api.remove_volume(name)
            log.info("removed sandbox volume %s", name)
            return True
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as e:
            if e.status_code != 409 or time.monotonic() > deadline:
                log.warning("could not remove sandbox volume %s: %s", name, e)
                return False
            time.sleep(0.2)


def remove_network(api, net: str, timeout: float) -> None:
    import docker.errors

    deadline = time.monotonic() + timeout
    while True:
        try:
            api.remove_network(net)
            while time.monotonic() < deadline:  # the engine forgets a swarm network a moment later
                api.inspect_network(net)
                time.sleep(0.1)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as e:  # "has active endpoints" while a task container dies
            if time.monotonic() > deadline:
                log.warning("could not remove sandbox network %s: %s", net, e)
                return
            time.sleep(0.2)


class SwarmSandbox(ContainerSandbox):
    """One session's swarm service. Survives stop()/start(); remove() deletes it and its volume."""

    backend = "swarm"
    isolated = True

    def __init__(self, owner: SwarmBackend, session_id: str, workspace: Path, limits: Limits):
        super().__init__(session_id, workspace, limits)
        self.owner = owner
        self.name = service_name(session_id)
        self.volume = self.name
        self._start_lock = asyncio.Lock()
        self._container: str | None = None
        self._node: str | None = None

    # -- where commands run -------------------------------------------------------------------
    @property
    def _api(self):
        return self.owner.engine_for(self._node or "")

    @property
    def _target(self) -> str:
        if self._container is None:
            task = self._running_task()
            if task is None:
                raise self._gone() or SandboxGone(f"sandbox service {self.name} has no running task")
            self._use(task)
        return self._container

    def _use(self, task: dict) -> None:
        self._container = task["Status"]["ContainerStatus"]["ContainerID"]
        self._node = task.get("NodeID") or ""

    def _service(self) -> dict | None:
        import docker.errors

        try:
            return self.owner.api.inspect_service(self.name)
        except docker.errors.NotFound:
            return None

    def _tasks(self, service_id: str | None = None) -> list[dict]:
        import docker.errors

        try:
            tasks = self.owner.api.tasks(filters={"service": service_id or self.name})
        except docker.errors.NotFound:
            return []
        return sorted(tasks, key=lambda t: (t.get("CreatedAt", ""), t.get("Version", {}).get("Index", 0)))

    def _running_task(self, tasks: list[dict] | None = None) -> dict | None:
        for task in reversed(self._tasks() if tasks is None else tasks):
            if task.get("DesiredState") == "running" and task["Status"]["State"] == "running" \
                    and task["Status"].get("ContainerStatus", {}).get("ContainerID"):
                return task
        return None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> SandboxInfo:
        async with self._start_lock:
            await asyncio.to_thread(self.owner._swarm_state)
            image = await self.owner.image_tag()
            host = Path(os.path.abspath(self.workspace))
            await asyncio.to_thread(host.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(chown_tree, host)
            for attempt in (1, 2):
                service = await asyncio.to_thread(self._ensure_service, image, host)
                try:
                    task = await self._wait_running(service["ID"])
                    break
                except SandboxError:
                    # A task killed a moment ago can still look "running" to swarm, so the old
                    # service is kept and then fails; it has been dropped, so one retry makes a new one.
                    if attempt == 2:
                        raise
            self._use(task)
            oom = None
            if image not in self.owner.setid_files:  # the first task of an image scans, the rest wait for its list
                async with self.owner.scan_lock:
                    if image not in self.owner.setid_files:
                        oom = await asyncio.to_thread(self._prepare, image)
            self._oom_seen = oom if oom is not None else await asyncio.to_thread(self._prepare, image)
            log.info("sandbox %s running (task %s on node %s)", self.name, task["ID"][:12], self._node[:12])
            spec = service["Spec"]["TaskTemplate"]["ContainerSpec"]
            return SandboxInfo(
                backend="swarm", isolated=True, ref=self.name,
                detail={"service": self.name, "service_id": service["ID"], "task": task["ID"],
                        "container": self._container, "node": self._node, "image": spec["Image"].split("@")[0],
                        "volume": self.volume, "memory": self.limits.memory, "cpus": self.limits.cpus,
                        "pids": self.limits.pids, "network": self.limits.network},
            )

    def _ensure_service(self, image: str, host: Path) -> dict:
        """The session's service with a task that runs or is on its way (made afresh if needed).

        A service whose task ended (stopped, killed, OOM) is replaced, not scaled: with restart
        condition `none`, swarmkit sometimes leaves a scaled-up slot without a task when the old
        task is still being reaped, while a new service always gets its task.
        """
        import docker.errors
        from docker.types import ServiceMode

        for _ in range(10):
            service = self._service()
            if service is not None:
                if any(self._task_live(t) for t in self._tasks(service["ID"])):
                    return service  # running, or on its way (another start, a restarted server)
                drop_service(self.owner, service["ID"])
            try:
                self.owner.api.create_service(
                    self._spec(image, host), name=self.name, labels=self.owner.labels(self.session_id),
                    mode=ServiceMode("replicated", 1))
            except docker.errors.APIError as e:
                if e.status_code != 409:  # 409: created concurrently, or the old one is still going
                    raise SandboxError(f"cannot create sandbox service {self.name}: {e.explanation or e}") from e
                time.sleep(0.1)
                continue
            service = self._service()
            if service is not None:
                return service
        raise SandboxError(f"cannot create sandbox service {self.name}: it keeps conflicting with an older one")

    def _task_live(self, task: dict) -> bool:
        """Whether a task is on its way or really running. Swarm reports a task whose container was
        killed a moment ago as still "running", so a running task's container is asked directly."""
        import docker.errors

        state = task["Status"]["State"]
        if task.get("DesiredState") != "running" or state not in PRE_RUNNING + ("running",):
            return False
        cid = task["Status"].get("ContainerStatus", {}).get("ContainerID")
        if state != "running" or not cid:
            return True
        try:
            api = self.owner.engine_for(task.get("NodeID") or "")
            return bool(api.inspect_container(cid)["State"]["Running"])
        except docker.errors.NotFound:
            return False

    async def _wait_running(self, service_id: str) -> dict:
        """Poll until the service's task runs; fail fast when the scheduler or the node refuse it."""
        deadline = time.monotonic() + self.owner.start_timeout
        while True:
            tasks = await self.owner.next_tasks(service_id)  # one engine call per round for all starts
            task = self._running_task(tasks)
            if task is not None:
                return task
            last = tasks[-1] if tasks else None
            status = (last or {}).get("Status", {})
            why = status.get("Err") or status.get("Message") or status.get("State") or "no task was created yet"
            if status.get("State") in FAILED + ("complete", "shutdown"):
                await asyncio.to_thread(drop_service, self.owner, service_id)
                raise SandboxError(f"sandbox service {self.name} could not start its task: {why}")
            if time.monotonic() > deadline:
                await asyncio.to_thread(drop_service, self.owner, service_id)  # don't let it start later, unseen
                raise SandboxError(
                    f"sandbox service {self.name} did not start within {self.owner.start_timeout:.0f} s: {why}")

    def _network(self) -> str | None:
        if self.limits.network:
            return None  # the default bridge: egress, like a docker sandbox with network on
        if self.owner.network_per_session:
            return self.owner.ensure_network(self.name, self.owner.labels(self.session_id))
        labels = {k: v for k, v in self.owner.labels("").items() if k != LABEL_SESSION}
        return self.owner.ensure_network(self.owner.shared_network(), labels)

    def _spec(self, image: str, host: Path) -> dict:
        from docker.types import (
            ContainerSpec,
            DriverConfig,
            Mount,
            NetworkAttachmentConfig,
            Placement,
            Resources,
            RestartPolicy,
            TaskTemplate,
        )

        lim, owner = self.limits, self.owner
        values = {"workspace": str(host), "session_id": self.session_id, "volume": self.volume}
        opts = {k: str(v).format(**values) for k, v in owner.volume_options.items()}
        mounts = [Mount(WORKSPACE, self.volume, type="volume", labels=owner.labels(self.session_id),
                        driver_config=DriverConfig(owner.volume_driver, opts or None))]
        memory, nano = parse_bytes(lim.memory), int(lim.cpus * 1e9)
        resources = Resources(
            cpu_limit=nano, mem_limit=memory,
            cpu_reservation=int(nano * owner.reservation) or None,
            mem_reservation=int(memory * owner.reservation) or None)
        resources["Limits"]["Pids"] = int(lim.pids)  # API 1.41; the SDK has no argument for it
        container = ContainerSpec(
            image, command=["sleep", "infinity"], hostname="sandbox", env=EXEC_ENV, workdir=WORKSPACE,
            user=KEEPER_USER, labels={LABEL_SESSION: self.session_id, LABEL_BACKEND: "swarm"}, mounts=mounts,
            init=True, cap_drop=["ALL"], stop_grace_period=int(1e9))
        fsize = int(lim.max_file_mb) << 20  # RLIMIT_FSIZE, as docker sets it (Ulimits: API 1.41, no SDK argument)
        container["Ulimits"] = [{"Name": "fsize", "Soft": fsize, "Hard": fsize}]
        network = self._network()
        return TaskTemplate(
            container, resources=resources, restart_policy=RestartPolicy("none"),
            placement=Placement(constraints=owner.constraints) if owner.constraints else None,
            networks=[NetworkAttachmentConfig(network)] if network else None)

    def _prepare(self, image: str) -> int:
        """One exec as root (without capabilities) right after start: strip set-id bits and read the
        OOM-kill counter. Engine 20.10's swarm API has no `no-new-privileges`, so setuid binaries
        lose their bits instead. The first container of an image is scanned; later ones get the
        same list (they start from the same image), so no scan is repeated."""
        files = self.owner.setid_files.get(image)
        if files is None:
            strip = _STRIP_SETID
        elif files:
            strip = "chmod ug-s -- " + " ".join(shlex.quote(f) for f in files) + " 2>/dev/null; true"
        else:
            strip = "true"
        code, out, err = self._run(["sh", "-c", f"{strip}; echo \"@oom=$({_OOM_KILLS})\""], user="0:0")
        lines = out.decode("utf-8", "replace").splitlines()
        oom = next((ln[5:] for ln in lines if ln.startswith("@oom=")), None)
        if code != 0 or oom is None:
            raise SandboxError(f"cannot prepare sandbox {self.name}: {err.decode(errors='replace').strip()}")
        if files is None:
            self.owner.setid_files[image] = [ln for ln in lines if ln.startswith("/")]
        return int(oom or 0)

    async def is_alive(self) -> bool:
        def alive() -> bool:
            task = self._running_task()
            return task is not None and self._task_live(task)

        return await asyncio.to_thread(alive)

    async def death_cause(self) -> str | None:
        gone = await asyncio.to_thread(self._gone)
        return str(gone) if gone else None

    async def stop(self) -> None:
        """Remove the service and its container; the volume (and network) stay for start()."""
        def stop() -> None:
            service = self._service()
            if service is not None:
                drop_service(self.owner, service["ID"])
            self._container = None

        await asyncio.to_thread(stop)

    async def remove(self) -> None:
        def remove() -> None:
            api = self.owner.api
            service = self._service()
            if service is not None:
                drop_service(self.owner, service["ID"])
            remove_volume(api, self.volume, 10)
            if self.owner.network_per_session:
                remove_network(api, self.name, 10)
            self._container = None

        await asyncio.to_thread(remove)

    # -- errors -------------------------------------------------------------------------------
    def _gone(self) -> SandboxGone | None:
        import docker.errors

        service = self._service()
        if service is None:
            return SandboxGone(f"sandbox service {self.name} no longer exists (it was stopped or removed)")
        tasks = self._tasks(service["ID"])
        task = self._running_task(tasks) or (tasks[-1] if tasks else None)
        if task is None:
            return SandboxGone(f"sandbox service {self.name} has no task")
        status = task["Status"]
        cid = status.get("ContainerStatus", {}).get("ContainerID")
        state = {}
        if cid:
            try:
                state = self.owner.engine_for(task.get("NodeID") or "").inspect_container(cid)["State"]
            except (docker.errors.NotFound, SandboxError):
                state = {}
        if state.get("Running"):
            if cid != self._container:
                self._use(task)  # a new task since we looked: commands go there now
            return None
        if state.get("OOMKilled"):
            return SandboxGone(f"sandbox service {self.name} was killed: out of memory (limit {self.limits.memory})")
        if state:  # the container ended; the task may not say so yet (its node reports a moment later)
            return SandboxGone(f"sandbox service {self.name} is not running (its container exited with code "
                               f"{state.get('ExitCode')}; task {status.get('State')})")
        if status.get("State") in PRE_RUNNING:
            return SandboxGone(f"sandbox service {self.name} is not running yet (task {status.get('State')})")
        return SandboxGone(f"sandbox service {self.name} is not running (task {status.get('State')}: "
                           f"{status.get('Err') or status.get('Message') or 'no error'})")


# -- a single-node swarm for tests and benchmarks ----------------------------------------------
_SWARM_STATE = Path("/tmp/jupyter-sessions-swarm.json")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@contextlib.contextmanager
def _state(path: Path):
    with open(str(path) + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            state = {}
        state.setdefault("users", [])
        state["users"] = [p for p in state["users"] if _pid_alive(p)]
        state.setdefault("initialized", False)
        yield state
        path.write_text(json.dumps(state))


@contextlib.contextmanager
def single_node_swarm(client=None, advertise_addr: str = "127.0.0.1", state_file: Path = _SWARM_STATE):
    """Make the local engine a one-node swarm manager for the duration (tests, benchmarks).

    Runs the equivalent of `docker swarm init --advertise-addr 127.0.0.1` (listening on loopback
    only) when the engine is not in swarm mode, and `docker swarm leave --force` at the end only if
    this helper initialised it and no other process using the helper is still inside it (a
    lock-protected count in /tmp, so a benchmark and a test run can overlap safely).
    """
    import docker

    own = client is None
    client = client or docker.from_env()
    me = os.getpid()
    try:
        with _state(state_file) as state:
            swarm = client.info().get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active":
                client.swarm.init(advertise_addr=advertise_addr, listen_addr=f"{advertise_addr}:2377")
                state["initialized"] = True
                log.info("initialised a single-node swarm on %s", advertise_addr)
            elif not swarm.get("ControlAvailable"):
                raise SandboxUnavailable("this Docker engine is a swarm worker, not a manager")
            state["users"].append(me)
        yield client
    finally:
        with _state(state_file) as state:
            state["users"] = [p for p in state["users"] if p != me]
            if state["initialized"] and not state["users"]:
                client.swarm.leave(force=True)
                state["initialized"] = False
                log.info("left the single-node swarm")
        if own:
            client.close()
