"""Kubernetes sandboxes: one pod per session, a PersistentVolumeClaim for its workspace.

DESIGNED, NOT RUN ON A REAL CLUSTER. No Kubernetes can run on this project's machines; this backend
is tested against a fake API server (tests/fakes/kube_api.py) that speaks the same REST paths and
the exec websocket protocol (v4.channel.k8s.io) and runs "pods" as local Docker containers. See
docs/scale-out.md for how a JupyterHub-on-Kubernetes admin enables it and what to verify first.

What a session gets, and why:
- **A pod `jupyter-session-<id>`**: restartPolicy Never (a dead sandbox stays dead and the manager
  marks the session Failed), no service-account token and no service-link variables inside (no
  credentials or cluster addresses in the sandbox), user/group 1000, all capabilities dropped,
  `allowPrivilegeEscalation: false` (no-new-privileges), the RuntimeDefault seccomp profile, CPU
  and memory limits, requests at `reservation` x limits. Pod-level pids limits are a kubelet
  setting (`podPidsLimit`), not part of the pod spec.
- **PID 1 is a tiny keeper** (python: ignore SIGCHLD so the kernel reaps every orphan, exit on
  SIGTERM). Kubernetes exec cannot choose a user, so commands run as 1000 like the keeper; the
  keeper survives `kill -9 -1` because the kernel never delivers that to PID 1 of the namespace.
- **Commands and files over the exec API** (a websocket; channels 1/2 for output, 3 for the exit
  status, 0 for stdin): each command carries a token in its environment so a timeout or a
  cancellation kills everything it started (the same script as the docker backend); reads are
  `head -c`, writes send exactly N bytes to `head -c N` (the v4 protocol has no stdin EOF), paths
  are resolved inside the pod first, so a symlink can't leave /workspace.
- **Workspace**, `workspace_mode`:
  - `pvc` (default): a PVC per session (`jupyter-session-<id>`). On first start the server copies
    its workspace folder (the clones it made) into it with tar over exec; adopt(subfolder) copies
    repos attached later. The PVC survives Stop/Resume and is deleted by remove(). The agent's
    changes live in the PVC only: the server's folder is not updated.
  - `shared`: the pod mounts an existing claim (`workspace_claim`, e.g. the hub user's home PVC,
    ReadWriteMany or on the same node) with the session's folder as subPath (its path relative to
    `workspace_claim_mount`, where the server pod mounts that claim), so the server and the sandbox
    see the same files, like the docker backend's bind mount.
- **Network off** = a NetworkPolicy (created once per namespace) that denies all ingress and
  egress to sandbox pods labelled `jupyter-sessions/network=none`; it needs a CNI that enforces
  NetworkPolicy (Calico, Cilium, ...).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

from .base import (
    WORKSPACE, ExecResult, Limits, Sandbox, SandboxBackend, SandboxError, SandboxGone, SandboxInfo,
    SandboxUnavailable,
)
from .docker import (
    _KILL_TOKEN, _OOM_KILLS, EXEC_ENV, EXEC_TOKEN, GRACE, SANDBOX_UID, chown_tree,
)
from .paths import parse_resolved, require_file, resolve_command

log = logging.getLogger("jupyter_sessions.sandbox")

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
LABEL_SESSION = "jupyter-sessions/session"
LABEL_INSTANCE = "jupyter-sessions/instance"
LABEL_NETWORK = "jupyter-sessions/network"
SEEDED = "jupyter-sessions/seeded"
POLICY = "jupyter-sessions-sandbox-no-network"
CONTAINER = "sandbox"
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
CHUNK = 256 * 1024
INSTALL_HINT = (
    "set c.SessionsApp.kubernetes_namespace and run the server in the cluster (in-cluster config) or "
    "point c.SessionsApp.kubernetes_config at a kubeconfig; see docs/scale-out.md"
)
# PID 1 of the sandbox: SIGCHLD ignored = the kernel reaps every orphan; SIGTERM ends it.
KEEPER = (
    "import os, signal\n"
    "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, lambda *a: os._exit(0))\n"
    "while True:\n    signal.pause()\n"
)
# Pod states that won't fix themselves: fail start() at once with the reason.
FATAL_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                 "CreateContainerError", "RunContainerError", "CrashLoopBackOff"}


def pod_name(session_id: str) -> str:
    """A DNS-1123 name: lowercase letters, digits and '-', at most 63."""
    name = "jupyter-session-" + re.sub(r"[^a-z0-9-]", "-", session_id.lower())
    return name[:63].rstrip("-")


def label_value(value: str) -> str:
    """A valid label value (<= 63 chars of [A-Za-z0-9-_.], alphanumeric at both ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")


def cpu_quantity(cpus: float) -> str:
    return f"{max(1, int(round(cpus * 1000)))}m"


def memory_quantity(memory: str) -> int:
    from docker.utils import parse_bytes

    return int(parse_bytes(memory))


class KubernetesBackend(SandboxBackend):
    """Creates KubernetesSandbox objects in one namespace and finds their orphans.

    Connection, in order: `api_url` (+ `token`), in-cluster config (when `in_cluster` is true, or
    None and the server runs in a pod), else the kubeconfig `kube_config` (default ~/.kube/config)
    and its `context`. `namespace` defaults to the pod's own namespace (in-cluster), the context's,
    then "default". `image` must be pullable by the cluster (no image is built for it).
    """

    name = "kubernetes"
    isolated = True

    def __init__(self, image: str | None = None, *, namespace: str | None = None, api_url: str | None = None,
                 token: str | None = None, kube_config: str | None = None, context: str | None = None,
                 in_cluster: bool | None = None, service_account_dir: str = SA_DIR,
                 memory: str = Limits.memory, cpus: float = Limits.cpus, pids: int = Limits.pids,
                 network: bool = Limits.network, max_file_mb: int = Limits.max_file_mb,
                 instance: str | None = None, reservation: float = 0.1,
                 workspace_mode: str = "pvc", storage_class: str | None = None, workspace_size: str = "10Gi",
                 workspace_access_mode: str = "ReadWriteOnce", workspace_claim: str | None = None,
                 workspace_claim_mount: str = "/home/jovyan", workspace_subpath: str = "",
                 node_selector: dict | None = None,
                 extra_pod_spec: dict | None = None, manage_network_policy: bool = True,
                 image_pull_policy: str = "IfNotPresent", start_timeout: float = 300):
        if workspace_mode not in ("pvc", "shared"):
            raise ValueError("workspace_mode must be 'pvc' or 'shared'")
        self.image = image or None
        self.namespace = namespace or None
        self.api_url, self.token = api_url or None, token or None
        self.kube_config, self.context = kube_config or None, context or None
        self.in_cluster = in_cluster
        self.service_account_dir = service_account_dir
        self.limits = Limits(memory=memory, cpus=cpus, pids=pids, network=network, max_file_mb=max_file_mb)
        self.instance = instance
        self.reservation = max(0.0, min(1.0, float(reservation)))
        self.workspace_mode = workspace_mode
        self.storage_class, self.workspace_size = storage_class, workspace_size
        self.workspace_access_mode = workspace_access_mode
        self.workspace_claim, self.workspace_subpath = workspace_claim, workspace_subpath
        self.workspace_claim_mount = workspace_claim_mount
        self.node_selector = dict(node_selector or {})
        self.extra_pod_spec = dict(extra_pod_spec or {})
        self.manage_network_policy = manage_network_policy
        self.image_pull_policy = image_pull_policy
        self.start_timeout = start_timeout
        self._client = None
        self._ws_client = None
        self._lock = asyncio.Lock()
        self._policy_ok = False

    # -- API clients --------------------------------------------------------------------------
    async def _connect(self):
        from kubernetes_asyncio.client import ApiClient, Configuration
        from kubernetes_asyncio.stream import WsApiClient

        async with self._lock:
            if self._client is not None:
                return
            cfg = Configuration()
            namespace = self.namespace
            sa = Path(self.service_account_dir)
            in_cluster = self.in_cluster
            if in_cluster is None:
                in_cluster = not self.api_url and bool(os.environ.get("KUBERNETES_SERVICE_HOST")) \
                    and (sa / "token").exists()
            try:
                if self.api_url:
                    cfg.host = self.api_url.rstrip("/")
                    if self.token:
                        cfg.api_key = {"BearerToken": "Bearer " + self.token}
                elif in_cluster:
                    from kubernetes_asyncio.config.incluster_config import (
                        InClusterConfigLoader,
                    )

                    InClusterConfigLoader(token_filename=str(sa / "token"),
                                          cert_filename=str(sa / "ca.crt")).load_and_set(cfg)
                    if not namespace and (sa / "namespace").exists():
                        namespace = (sa / "namespace").read_text().strip()
                else:
                    from kubernetes_asyncio.config import load_kube_config
                    from kubernetes_asyncio.config.kube_config import (
                        list_kube_config_contexts,
                    )

                    await load_kube_config(config_file=self.kube_config, context=self.context,
                                           client_configuration=cfg, persist_config=False)
                    if not namespace:
                        contexts, current = list_kube_config_contexts(self.kube_config)
                        chosen = next((c for c in contexts if c["name"] == self.context), current) or {}
                        namespace = chosen.get("context", {}).get("namespace")
            except Exception as e:
                raise SandboxUnavailable(f"no Kubernetes API configuration ({e}); {INSTALL_HINT}") from e
            self.namespace = namespace or "default"
            self._client = ApiClient(cfg)
            self._ws_client = WsApiClient(cfg)

    async def core(self):
        from kubernetes_asyncio.client import CoreV1Api

        await self._connect()
        return CoreV1Api(self._client)

    async def core_ws(self):
        from kubernetes_asyncio.client import CoreV1Api

        await self._connect()
        return CoreV1Api(self._ws_client)

    async def networking(self):
        from kubernetes_asyncio.client import NetworkingV1Api

        await self._connect()
        return NetworkingV1Api(self._client)

    # -- checks -------------------------------------------------------------------------------
    async def check(self) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        if not self.image:
            raise SandboxUnavailable(
                "the kubernetes backend needs an image the cluster can pull: build it with "
                "`jupyter-sessions-image`, push it to your registry and set c.SessionsApp.kubernetes_image")
        if self.workspace_mode == "shared" and not self.workspace_claim:
            raise SandboxUnavailable("workspace_mode 'shared' needs c.SessionsApp.kubernetes_workspace_claim "
                                     "(the claim the Jupyter server's workspace lives on)")
        core = await self.core()
        try:
            await core.list_namespaced_pod(self.namespace, label_selector=f"{MANAGED_BY}=jupyter-sessions",
                                           limit=1, _request_timeout=30)
        except ApiException as e:
            raise SandboxUnavailable(self._denied(e, "list pods")) from e
        except Exception as e:  # connection refused, TLS, DNS
            raise SandboxUnavailable(f"the Kubernetes API is not reachable ({e}); {INSTALL_HINT}") from e
        if not self.limits.network:
            await self.ensure_network_policy()

    def _denied(self, e, what: str) -> str:
        if e.status in (401, 403):
            return (f"the server's Kubernetes identity may not {what} in namespace {self.namespace!r} "
                    f"(HTTP {e.status}): bind it to the Role in docs/scale-out.md")
        return f"Kubernetes API error on {what} in namespace {self.namespace!r}: HTTP {e.status} {e.reason}"

    async def ensure_network_policy(self) -> None:
        """The deny-all NetworkPolicy for sandboxes without network (created when missing)."""
        from kubernetes_asyncio.client.exceptions import ApiException

        if self._policy_ok:
            return
        net = await self.networking()
        try:
            await net.read_namespaced_network_policy(POLICY, self.namespace, _request_timeout=30)
        except ApiException as e:
            if e.status != 404:
                raise SandboxUnavailable(self._denied(e, "read networkpolicies")) from e
            if not self.manage_network_policy:
                raise SandboxUnavailable(
                    f"NetworkPolicy {POLICY} is missing in namespace {self.namespace!r}: sandboxes would have "
                    "network access. Apply it from docs/scale-out.md (or let the server create it)") from e
            body = {
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": POLICY, "labels": {MANAGED_BY: "jupyter-sessions"}},
                "spec": {"podSelector": {"matchLabels": {COMPONENT: "sandbox", LABEL_NETWORK: "none"}},
                         "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []},
            }
            try:
                await net.create_namespaced_network_policy(self.namespace, body, _request_timeout=30)
            except ApiException as e2:
                if e2.status != 409:
                    raise SandboxUnavailable(self._denied(e2, "create networkpolicies")) from e2
        self._policy_ok = True

    # -- sandboxes ----------------------------------------------------------------------------
    def sandbox(self, session_id: str, workspace: Path, limits: Limits | None = None) -> KubernetesSandbox:
        return KubernetesSandbox(self, session_id, Path(workspace), limits or self.limits)

    def labels(self, session_id: str) -> dict[str, str]:
        labels = {MANAGED_BY: "jupyter-sessions", COMPONENT: "sandbox", LABEL_SESSION: label_value(session_id)}
        if self.instance:
            labels[LABEL_INSTANCE] = label_value(self.instance)
        return labels

    def selector(self) -> str:
        parts = [f"{MANAGED_BY}=jupyter-sessions", f"{COMPONENT}=sandbox"]
        if self.instance:
            parts.append(f"{LABEL_INSTANCE}={label_value(self.instance)}")
        return ",".join(parts)

    async def cleanup_orphans(self, live_session_ids: set[str]) -> list[str]:
        from kubernetes_asyncio.client.exceptions import ApiException

        live = {label_value(s) for s in live_session_ids}
        core = await self.core()
        removed: list[str] = []
        pods = await core.list_namespaced_pod(self.namespace, label_selector=self.selector(), _request_timeout=30)
        for pod in pods.items:
            sid = (pod.metadata.annotations or {}).get(LABEL_SESSION) or pod.metadata.labels.get(LABEL_SESSION, "")
            if label_value(sid) in live:
                continue
            sb = self.sandbox(sid, Path("."))
            sb.name = pod.metadata.name
            try:
                await sb._delete_pod()
            except ApiException as e:
                log.warning("could not remove orphan sandbox pod %s: %s", pod.metadata.name, e.reason)
                continue
            log.info("removed orphan sandbox pod %s", pod.metadata.name)
            removed.append(sid)
        claims = await core.list_namespaced_persistent_volume_claim(
            self.namespace, label_selector=self.selector(), _request_timeout=30)
        for pvc in claims.items:
            sid = (pvc.metadata.annotations or {}).get(LABEL_SESSION) or pvc.metadata.labels.get(LABEL_SESSION, "")
            if label_value(sid) in live:
                continue
            try:
                await core.delete_namespaced_persistent_volume_claim(pvc.metadata.name, self.namespace,
                                                                     _request_timeout=30)
            except ApiException as e:
                if e.status != 404:
                    log.warning("could not remove orphan workspace claim %s: %s", pvc.metadata.name, e.reason)
                continue
            log.info("removed orphan workspace claim %s", pvc.metadata.name)
            if sid not in removed:
                removed.append(sid)
        return removed

    async def close(self) -> None:
        clients, self._client, self._ws_client = (self._client, self._ws_client), None, None
        for client in clients:
            if client is not None:
                await client.close()


class KubernetesSandbox(Sandbox):
    """One session's pod (and, in pvc mode, its claim). stop() deletes the pod, remove() the claim too."""

    backend = "kubernetes"
    isolated = True

    def __init__(self, owner: KubernetesBackend, session_id: str, workspace: Path, limits: Limits):
        super().__init__(session_id, workspace, limits)
        self.owner = owner
        self.name = pod_name(session_id)
        self.claim = self.name if owner.workspace_mode == "pvc" else owner.workspace_claim
        self._start_lock = asyncio.Lock()
        self._oom_seen = 0

    @property
    def namespace(self) -> str:
        return self.owner.namespace or "default"

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> SandboxInfo:
        from kubernetes_asyncio.client.exceptions import ApiException

        async with self._start_lock:
            core = await self.owner.core()
            if not self.limits.network:
                await self.owner.ensure_network_policy()
            seed = False
            if self.owner.workspace_mode == "pvc":
                seed = await self._ensure_claim(core)
            else:  # the server's own folder on the shared claim: it exists and the sandbox user owns it
                try:
                    await core.read_namespaced_persistent_volume_claim(self.claim, self.namespace, _request_timeout=30)
                except ApiException as e:
                    raise SandboxError(f"the shared workspace claim {self.claim!r} is not readable in namespace "
                                       f"{self.namespace!r}: HTTP {e.status} {e.reason}") from e
                host = Path(os.path.abspath(self.workspace))
                await asyncio.to_thread(host.mkdir, parents=True, exist_ok=True)
                await asyncio.to_thread(chown_tree, host)
            pod = await self._read_pod(core)
            if pod is not None and (pod.metadata.deletion_timestamp or pod.status.phase in ("Failed", "Succeeded")):
                await self._delete_pod()  # a dead pod is replaced; the claim keeps the files
                pod = None
            if pod is None:
                try:
                    await core.create_namespaced_pod(self.namespace, self._pod_spec(), _request_timeout=30)
                except ApiException as e:
                    if e.status != 409:  # 409: created concurrently
                        why = self.owner._denied(e, "create pods")
                        raise SandboxError(f"cannot create sandbox pod {self.name}: {why}") from e
            pod = await self._wait_running(core)
            if seed:
                await self._copy_in(Path(self.workspace), Path(self.workspace))
                await core.patch_namespaced_persistent_volume_claim(
                    self.claim, self.namespace, {"metadata": {"annotations": {SEEDED: "true"}}}, _request_timeout=30)
            self._oom_seen = await self._oom_kills()
            log.info("sandbox pod %s running on %s", self.name, pod.spec.node_name)
            return SandboxInfo(
                backend="kubernetes", isolated=True, ref=self.name,
                detail={"pod": self.name, "namespace": self.namespace, "node": pod.spec.node_name,
                        "uid": pod.metadata.uid, "claim": self.claim, "image": self.owner.image,
                        "memory": self.limits.memory,
                        "cpus": self.limits.cpus, "network": self.limits.network},
            )

    async def _ensure_claim(self, core) -> bool:
        """The session's PVC (created when missing); True when it still needs the first copy."""
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            pvc = await core.read_namespaced_persistent_volume_claim(self.claim, self.namespace, _request_timeout=30)
            return (pvc.metadata.annotations or {}).get(SEEDED) != "true"
        except ApiException as e:
            if e.status != 404:
                why = self.owner._denied(e, "get persistentvolumeclaims")
                raise SandboxError(f"cannot read workspace claim {self.claim}: {why}") from e
        spec = {"accessModes": [self.owner.workspace_access_mode],
                "resources": {"requests": {"storage": self.owner.workspace_size}}}
        if self.owner.storage_class:
            spec["storageClassName"] = self.owner.storage_class
        body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": self.claim, "labels": self.owner.labels(self.session_id),
                             "annotations": {LABEL_SESSION: self.session_id}},
                "spec": spec}
        try:
            await core.create_namespaced_persistent_volume_claim(self.namespace, body, _request_timeout=30)
        except ApiException as e:
            if e.status != 409:
                why = self.owner._denied(e, "create persistentvolumeclaims")
                raise SandboxError(f"cannot create workspace claim {self.claim}: {why}") from e
        return True

    def _pod_spec(self) -> dict:
        lim, owner = self.limits, self.owner
        memory = memory_quantity(lim.memory)
        labels = {**owner.labels(self.session_id), LABEL_NETWORK: "allowed" if lim.network else "none"}
        mount = {"name": "workspace", "mountPath": WORKSPACE}
        if owner.workspace_mode == "shared":
            mount["subPath"] = self.subpath()
        container = {
            "name": CONTAINER, "image": owner.image, "imagePullPolicy": owner.image_pull_policy,
            "command": ["python3", "-c", KEEPER], "workingDir": WORKSPACE,
            "env": [{"name": k, "value": v} for k, v in EXEC_ENV.items()],
            "resources": {
                "limits": {"cpu": cpu_quantity(lim.cpus), "memory": str(memory)},
                "requests": {"cpu": cpu_quantity(lim.cpus * owner.reservation),
                             "memory": str(max(1, int(memory * owner.reservation)))},
            },
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "runAsNonRoot": True, "runAsUser": SANDBOX_UID, "runAsGroup": SANDBOX_UID},
            "volumeMounts": [mount, {"name": "tmp", "mountPath": "/tmp"}],
        }
        spec = {
            "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
            "hostname": "sandbox", "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsUser": SANDBOX_UID, "runAsGroup": SANDBOX_UID, "fsGroup": SANDBOX_UID,
                                "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": self.claim}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}}],
        }
        if owner.node_selector:
            spec["nodeSelector"] = owner.node_selector
        spec.update(owner.extra_pod_spec)
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.name, "labels": labels, "annotations": {LABEL_SESSION: self.session_id}},
                "spec": spec}

    def subpath(self) -> str:
        """shared mode: the workspace's folder inside the claim (the server mounts the claim at
        `workspace_claim_mount`), or the `workspace_subpath` template when set."""
        if self.owner.workspace_subpath:
            return self.owner.workspace_subpath.format(session_id=self.session_id, name=self.name)
        rel = os.path.relpath(os.path.abspath(self.workspace), os.path.abspath(self.owner.workspace_claim_mount))
        if rel == "." or rel.startswith(".."):
            raise SandboxError(f"the workspace {self.workspace} is not inside the shared claim's mount "
                               f"{self.owner.workspace_claim_mount} (c.SessionsApp.kubernetes_workspace_claim_mount)")
        return rel

    async def _read_pod(self, core=None):
        from kubernetes_asyncio.client.exceptions import ApiException

        core = core or await self.owner.core()
        try:
            return await core.read_namespaced_pod(self.name, self.namespace, _request_timeout=30)
        except ApiException as e:
            if e.status == 404:
                return None
            raise SandboxError(f"cannot read sandbox pod {self.name}: {self.owner._denied(e, 'get pods')}") from e

    async def _wait_running(self, core):
        deadline = time.monotonic() + self.owner.start_timeout
        delay = 0.05
        while True:
            pod = await self._read_pod(core)
            if pod is None:
                raise SandboxError(f"sandbox pod {self.name} disappeared while starting")
            state = _container_state(pod)
            if pod.status.phase == "Running" and state is not None and state.running:
                return pod
            why = _pending_reason(pod)
            waiting = state.waiting if state is not None else None
            if pod.status.phase in ("Failed", "Succeeded") or (waiting and waiting.reason in FATAL_WAITING):
                await self._delete_pod()
                raise SandboxError(f"sandbox pod {self.name} could not start: {why}")
            if time.monotonic() > deadline:
                await self._delete_pod()  # don't let it start later, unobserved
                raise SandboxError(f"sandbox pod {self.name} did not start within {self.owner.start_timeout:.0f} s: "
                                   f"{why}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    async def _delete_pod(self, wait: float = 60) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        core = await self.owner.core()
        try:
            await core.delete_namespaced_pod(self.name, self.namespace, grace_period_seconds=2, _request_timeout=30)
        except ApiException as e:
            if e.status != 404:
                raise
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and await self._read_pod(core) is not None:
            await asyncio.sleep(0.1)

    async def adopt(self, host_path: Path) -> None:
        """pvc mode: copy a folder the server wrote (a repo attached later) into the claim;
        shared mode: give it to the sandbox user, like the docker backend."""
        if self.owner.workspace_mode != "pvc":
            await asyncio.to_thread(chown_tree, Path(host_path))
            return
        root, path = Path(os.path.abspath(self.workspace)), Path(os.path.abspath(host_path))
        if path == root or root not in path.parents or not path.exists():
            return  # the whole workspace was copied by the first start()
        await self._copy_in(root, path)

    async def _copy_in(self, root: Path, path: Path) -> None:
        """Tar `path` (relative to `root`; symlinks stay links) and unpack it under /workspace."""
        if not path.exists():
            return
        with tempfile.TemporaryFile() as spool:
            def pack() -> int:
                with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    arc = os.path.relpath(path, root)
                    if arc == ".":
                        for child in sorted(os.listdir(path)):
                            tar.add(path / child, arcname=child)
                    else:
                        tar.add(path, arcname=arc)
                spool.flush()
                return spool.tell()

            size = await asyncio.to_thread(pack)
            spool.seek(0)
            code, _, err = await self._call(
                ["bash", "-c", 'head -c "$1" | tar -x -m --no-same-owner -C /workspace -f -', "copy", str(size)],
                stdin=spool, stdin_size=size, timeout=600)
        if code != 0:
            raise SandboxError(f"cannot copy the workspace into {self.name}: {err.decode(errors='replace').strip()}")

    async def is_alive(self) -> bool:
        pod = await self._read_pod()
        if pod is None or pod.metadata.deletion_timestamp:
            return False
        state = _container_state(pod)
        return pod.status.phase == "Running" and state is not None and bool(state.running)

    async def death_cause(self) -> str | None:
        gone = await self._gone()
        return str(gone) if gone else None

    async def stop(self) -> None:
        await self._delete_pod()

    async def remove(self) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        await self._delete_pod()
        if self.owner.workspace_mode != "pvc":
            return
        core = await self.owner.core()
        try:
            await core.delete_namespaced_persistent_volume_claim(self.claim, self.namespace, _request_timeout=30)
        except ApiException as e:
            if e.status != 404:
                raise SandboxError(f"cannot delete workspace claim {self.claim}: HTTP {e.status} {e.reason}") from e
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                await core.read_namespaced_persistent_volume_claim(self.claim, self.namespace, _request_timeout=30)
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            await asyncio.sleep(0.1)

    async def kill_processes(self) -> None:
        try:
            await self._call(["bash", "-c", "kill -9 -1 2>/dev/null; true"], timeout=30)
        except SandboxGone:
            pass

    # -- errors -------------------------------------------------------------------------------
    async def _gone(self) -> SandboxGone | None:
        pod = await self._read_pod()
        if pod is None:
            return SandboxGone(f"sandbox pod {self.name} no longer exists (it was stopped or removed)")
        if pod.metadata.deletion_timestamp:
            return SandboxGone(f"sandbox pod {self.name} is being deleted")
        state = _container_state(pod)
        if pod.status.phase == "Running" and state is not None and state.running:
            return None
        term = state.terminated if state is not None else None
        if term is not None and term.reason == "OOMKilled":
            return SandboxGone(f"sandbox pod {self.name} was killed: out of memory (limit {self.limits.memory})")
        if term is not None:
            return SandboxGone(f"sandbox pod {self.name} is not running (exit code {term.exit_code}, "
                               f"{term.reason or 'terminated'})")
        return SandboxGone(f"sandbox pod {self.name} is not running ({_pending_reason(pod)})")

    # -- exec ---------------------------------------------------------------------------------
    async def _open(self, argv: list[str], stdin: bool):
        """An exec websocket context (raises SandboxGone when the pod can't run commands)."""
        import aiohttp

        core = await self.owner.core_ws()
        try:
            ctx = await core.connect_get_namespaced_pod_exec(
                self.name, self.namespace, command=argv, container=CONTAINER, stdin=stdin, stdout=True,
                stderr=True, tty=False, _preload_content=False)
            return await ctx.__aenter__(), ctx
        except aiohttp.WSServerHandshakeError as e:
            if e.status in (400, 404, 409):  # no such pod / container not running
                raise (await self._gone()) or SandboxError(f"exec into {self.name} refused: {e.message}") from e
            raise SandboxError(f"exec into {self.name} refused: HTTP {e.status} {e.message}") from e
        except aiohttp.ClientError as e:
            raise SandboxError(f"the Kubernetes API is not reachable for exec: {e}") from e

    async def _stream(self, argv: list[str], *, cap: int, deadline: float, split: bool = False, stdin=None,
                      stdin_size: int = 0, on_deadline=None, cancel_kill=None):
        """Run argv; (exit code or None, stdout, stderr, truncated, timed_out)."""
        import aiohttp

        ws, ctx = await self._open(argv, stdin=stdin is not None)
        out, err = bytearray(), bytearray()
        truncated = timed_out = False
        code: int | None = None
        status = None
        try:
            if stdin is not None:
                sent = 0
                while sent < stdin_size:
                    chunk = stdin.read(min(CHUNK, stdin_size - sent)) if hasattr(stdin, "read") \
                        else stdin[sent:sent + CHUNK]
                    if not chunk:
                        break
                    await ws.send_bytes(bytes([STDIN]) + bytes(chunk))
                    sent += len(chunk)
            give_up = None
            while True:
                now = time.monotonic()
                if give_up is None and now >= deadline:
                    timed_out = True
                    if on_deadline is not None:
                        await on_deadline()
                    give_up = time.monotonic() + GRACE
                limit = give_up if give_up is not None else deadline
                if give_up is not None and now >= give_up:
                    break
                try:
                    msg = await ws.receive(timeout=max(0.01, min(1.0, limit - now)))
                except TimeoutError:
                    continue
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.ERROR):
                    break
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel == STATUS:
                    status = payload
                    continue
                if channel not in (STDOUT, STDERR):
                    continue
                target = err if split and channel == STDERR else out
                room = cap - len(target)
                if len(payload) > room:
                    truncated = True
                if room > 0:
                    target += payload[:room]
        finally:
            await ctx.__aexit__(None, None, None)
        if status is not None and not timed_out:
            code = _exit_code(status)
        return code, bytes(out), bytes(err), truncated, timed_out

    async def _call(self, argv: list[str], *, stdin=None, stdin_size: int = 0, timeout: float = 60):
        """A short helper command; (exit code, stdout, stderr)."""
        code, out, err, _, timed_out = await self._stream(
            argv, cap=1 << 62, deadline=time.monotonic() + timeout, split=True, stdin=stdin, stdin_size=stdin_size)
        if timed_out:
            raise SandboxError(f"helper command timed out in {self.name}")
        return code, out, err

    async def exec(self, command: str, *, timeout: float = 120, output_cap: int = 100_000,
                   cwd: str = WORKSPACE) -> ExecResult:
        token = f"{EXEC_TOKEN}={uuid.uuid4().hex}"
        # No ulimits in a pod spec: RLIMIT_FSIZE is set here (soft and hard: the command can't raise it).
        wrapper = ('ulimit -f "$3"; cd -- "$1" 2>/dev/null || { echo "no such directory: $1" >&2; exit 1; }; '
                   'exec bash -lc "$2"')
        workdir = cwd if cwd.startswith("/") else f"{WORKSPACE}/{cwd}"
        argv = ["env", token, "bash", "-c", wrapper, "bash", workdir, command, str(int(self.limits.max_file_mb) * 1024)]
        deadline = time.monotonic() + (timeout if timeout and timeout > 0 else 10**9)
        try:
            code, out, _, truncated, timed_out = await self._stream(
                argv, cap=output_cap, deadline=deadline, on_deadline=lambda: self._kill_token(token))
        except asyncio.CancelledError:
            await asyncio.shield(self._kill_token(token))
            raise
        if code == 137 and (kills := await self._oom_kills()) > self._oom_seen:
            self._oom_seen = kills
            out += f"\n[killed: the sandbox ran out of memory (limit {self.limits.memory})]".encode()
        return ExecResult(exit_code=None if timed_out else code, output=out.decode("utf-8", errors="replace"),
                          truncated=truncated, timed_out=timed_out)

    async def _kill_token(self, token: str) -> None:
        try:
            await self._call(["bash", "-c", _KILL_TOKEN, "kill", token], timeout=30)
        except SandboxError as e:
            log.warning("could not kill timed-out command in %s: %s", self.name, e)

    async def _oom_kills(self) -> int:
        try:
            _, out, _ = await self._call(["bash", "-c", _OOM_KILLS], timeout=30)
            return int(out.strip() or 0)
        except (SandboxError, ValueError):
            return 0

    # -- files --------------------------------------------------------------------------------
    async def _resolve(self, path: str, mkdir: bool = False) -> tuple[str, str, str]:
        return parse_resolved(path, *await self._call(resolve_command(path, mkdir)))

    async def read_file(self, path: str, *, max_bytes: int = 10_000_000) -> bytes:
        kind, _, resolved = await self._resolve(path)
        require_file(kind, path)
        code, out, err = await self._call(["head", "-c", str(max_bytes + 1), "--", resolved], timeout=120)
        if code != 0:
            raise FileNotFoundError(f"cannot read {path}: {err.decode(errors='replace').strip()}")
        if len(out) > max_bytes:
            raise SandboxError(f"{path} is more than the {max_bytes} byte limit")
        return out

    async def write_file(self, path: str, data: bytes) -> None:
        data = bytes(data)
        kind, _, resolved = await self._resolve(path, mkdir=True)
        if kind == "d" or resolved == WORKSPACE:
            raise IsADirectoryError(f"{path} is a directory")
        if kind == "o":
            raise SandboxError(f"{path} is not a regular file")
        # `>` keeps an existing file's mode (and its executable bit); v4 exec has no stdin EOF: head -c N.
        code, _, err = await self._call(["bash", "-c", 'head -c "$1" > "$2"', "write", str(len(data)), resolved],
                                        stdin=io.BytesIO(data), stdin_size=len(data), timeout=120)
        if code != 0:
            raise SandboxError(f"cannot write {path}: {err.decode(errors='replace').strip()}")


def _container_state(pod):
    for status in pod.status.container_statuses or []:
        if status.name == CONTAINER:
            return status.state
    return None


def _pending_reason(pod) -> str:
    """Why a pod isn't running, in the cluster's words (unschedulable, image pull, ...)."""
    state = _container_state(pod)
    if state is not None and state.waiting and state.waiting.reason:
        return f"{state.waiting.reason}: {state.waiting.message or ''}".strip(": ")
    if state is not None and state.terminated:
        return f"container exited with code {state.terminated.exit_code} ({state.terminated.reason})"
    for cond in pod.status.conditions or []:
        if cond.status == "False" and (cond.reason or cond.message):
            return f"{cond.reason}: {cond.message or ''}".strip(": ")
    return f"phase {pod.status.phase or 'Pending'}"


def _exit_code(status: bytes) -> int | None:
    """The exit code from the exec status channel (a metav1.Status in JSON)."""
    try:
        doc = json.loads(status)
    except ValueError:
        return None
    if doc.get("status") == "Success":
        return 0
    for cause in (doc.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return None
    return None
