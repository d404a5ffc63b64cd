"""A fake Kubernetes API server on 127.0.0.1, with a Docker-backed "kubelet".

It speaks the REST paths and payloads the real API server uses for what the kubernetes sandbox
backend calls (pods, persistentvolumeclaims, networkpolicies, all namespaced; metav1.Status errors;
label selectors), including `pods/{name}/exec` as a websocket with the `v4.channel.k8s.io` and
`v5.channel.k8s.io` subprotocols (channel byte + payload; 0 stdin, 1 stdout, 2 stderr, 3 a
metav1.Status with the exit code; v5 adds 255 = close a stream, i.e. stdin EOF).

Pods really run: each pod is a Docker container made from the pod spec (image, command, env,
workingDir, runAsUser/runAsGroup, capabilities.drop, allowPrivilegeEscalation=false ->
no-new-privileges, cpu/memory limits, emptyDir -> tmpfs, a PVC -> a Docker volume, or a host folder
for claims registered in `host_claims`). A NetworkPolicy that denies all egress for the pod's labels
is enforced as `--network none` (a real cluster needs a CNI that enforces policies). nodeSelector
must match the one fake node's labels, or the pod stays Pending as Unschedulable.

Every request is recorded (`requests`); `forbidden` holds (verb, resource) pairs answered 403, to
play a service account without the RBAC the docs ask for; `token` makes it demand a bearer token;
`tls=True` serves HTTPS with a self-signed CA (`ca_file`), so kubeconfig/in-cluster style
configuration is exercised on the wire. This is not a real cluster and says so in the docs.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import socket
import ssl
import tempfile
import time
import uuid
from pathlib import Path

from aiohttp import WSMsgType, web

NODE = "fake-node"
NODE_LABELS = {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
KINDS = {"pods": "Pod", "persistentvolumeclaims": "PersistentVolumeClaim", "networkpolicies": "NetworkPolicy"}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, **details) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": details, "code": code}
    return web.json_response(body, status=code)


def not_found(resource: str, name: str) -> web.Response:
    return status(404, "NotFound", f'{resource} "{name}" not found', name=name, kind=resource)


def matches(selector: str | None, labels: dict) -> bool:
    """Equality-based label selectors: `a=b,c==d,e!=f,g` (what clients send for lists)."""
    for part in filter(None, (selector or "").split(",")):
        if "!=" in part:
            k, v = part.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in part:
            k, v = part.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif part.strip() not in labels:
            return False
    return True


def quantity(value) -> float:
    """A Kubernetes quantity as a number (bytes or cores)."""
    s = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "m": 1e-3}
    for unit, factor in units.items():
        if s.endswith(unit):
            return float(s[: -len(unit)]) * factor
    return float(s)


def merge(into: dict, patch: dict) -> dict:
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
    return into


def self_signed(directory: Path) -> tuple[str, str]:
    """A CA-less self-signed certificate for 127.0.0.1 (it is its own CA); (cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube-apiserver")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "ca.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class FakeKube:
    """The fake API server. `await start()`, use `url`/`kubeconfig()`, `await stop()` removes everything."""

    def __init__(self, docker_client, *, token: str | None = None, tls: bool = False,
                 host_claims: dict[str, str] | None = None, namespace: str = "default"):
        self.docker = docker_client
        self.token = token
        self.tls = tls
        self.host_claims = dict(host_claims or {})
        self.requests: list[tuple[str, str, str]] = []
        self.forbidden: set[tuple[str, str]] = set()
        self.objects: dict[str, dict[tuple[str, str], dict]] = {k: {} for k in KINDS}
        self.containers: dict[tuple[str, str], str] = {}  # pod -> container id
        self.label = f"fakekube-{uuid.uuid4().hex[:8]}"
        self.exec_protocols: list[str] = []
        self._dir = Path(tempfile.mkdtemp(prefix="fakekube-"))
        self.ca_file: str | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0
        for claim in self.host_claims:  # existing claims (a hub user's home), bound to host folders
            self.objects["persistentvolumeclaims"][(namespace, claim)] = {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace, "uid": str(uuid.uuid4()),
                             "creationTimestamp": now(), "finalizers": ["kubernetes.io/pvc-protection"]},
                "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "10Gi"}},
                         "volumeName": f"pvc-{claim}"},
                "status": {"phase": "Bound"}}

    # -- server -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> FakeKube:
        app = web.Application(middlewares=[self._middleware])
        core = "/api/v1/namespaces/{ns}/{resource:pods|persistentvolumeclaims}"
        net = "/apis/networking.k8s.io/v1/namespaces/{ns}/{resource:networkpolicies}"
        for base in (core, net):
            app.router.add_route("GET", base, self.list)
            app.router.add_route("POST", base, self.create)
            app.router.add_route("GET", base + "/{name}", self.read)
            app.router.add_route("DELETE", base + "/{name}", self.delete)
            app.router.add_route("PATCH", base + "/{name}", self.patch)
        app.router.add_route("GET", "/api/v1/namespaces/{ns}/pods/{name}/exec", self.exec)
        app.router.add_route("POST", "/api/v1/namespaces/{ns}/pods/{name}/exec", self.exec)
        app.router.add_route("GET", "/version", self.version)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ctx = None
        if self.tls:
            cert, key = self_signed(self._dir)
            self.ca_file = cert
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=ctx)
        await site.start()
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.to_thread(self._remove_docker_objects)

    def _remove_docker_objects(self) -> None:
        import docker.errors

        for c in self.docker.containers.list(all=True, filters={"label": f"fakekube={self.label}"}):
            try:
                c.remove(force=True)
            except docker.errors.APIError:
                pass
        for v in self.docker.volumes.list(filters={"label": f"fakekube={self.label}"}):
            try:
                v.remove(force=True)
            except docker.errors.APIError:
                pass

    def kubeconfig(self, path: Path, namespace: str = "default", token: str | None = None) -> Path:
        """A kubeconfig file for this server (JSON is YAML)."""
        cluster = {"server": self.url}
        if self.ca_file:
            cluster["certificate-authority"] = self.ca_file
        user = {"token": token or self.token} if (token or self.token) else {}
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
               "clusters": [{"name": "fake", "cluster": cluster}],
               "users": [{"name": "fake-user", "user": user}],
               "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake-user",
                                                         "namespace": namespace}}]}
        path.write_text(json.dumps(doc))
        return path

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        self.requests.append((request.method, request.path, request.query_string))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        verb = {"GET": "get", "POST": "create", "DELETE": "delete", "PATCH": "patch"}[request.method]
        resource = request.match_info.get("resource", "")
        if request.path.endswith("/exec"):
            verb, resource = "create", "pods/exec"
        elif request.method == "GET" and "name" not in request.match_info:
            verb = "list"
        if (verb, resource) in self.forbidden:
            return status(403, "Forbidden", f'{resource} is forbidden: User "system:serviceaccount:fake:server" '
                                            f'cannot {verb} resource "{resource}"')
        return await handler(request)

    async def version(self, request):
        return web.json_response({"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake"})

    # -- generic REST -------------------------------------------------------------------------
    async def list(self, request):
        ns, resource = request.match_info["ns"], request.match_info["resource"]
        items = []
        for (ons, _), obj in sorted(self.objects[resource].items()):
            if ons == ns and matches(request.query.get("labelSelector"), obj["metadata"].get("labels") or {}):
                if resource == "pods":
                    await self._refresh(obj)
                items.append(obj)
        limit = int(request.query.get("limit") or 0)
        if limit:
            items = items[:limit]
        api = "networking.k8s.io/v1" if resource == "networkpolicies" else "v1"
        return web.json_response({"kind": KINDS[resource] + "List", "apiVersion": api,
                                  "metadata": {"resourceVersion": "1"}, "items": items})

    async def read(self, request):
        ns, resource, name = request.match_info["ns"], request.match_info["resource"], request.match_info["name"]
        obj = self.objects[resource].get((ns, name))
        if obj is None:
            return not_found(resource, name)
        if resource == "pods":
            await self._refresh(obj)
        return web.json_response(obj)

    async def create(self, request):
        ns, resource = request.match_info["ns"], request.match_info["resource"]
        obj = await request.json()
        name = obj.get("metadata", {}).get("name")
        if not name:
            return status(422, "Invalid", f"{KINDS[resource]} is invalid: metadata.name: Required value")
        if (ns, name) in self.objects[resource]:
            return status(409, "AlreadyExists", f'{resource} "{name}" already exists', name=name, kind=resource)
        meta = obj["metadata"]
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion="1")
        if resource == "pods":
            obj["status"] = {"phase": "Pending", "conditions": []}
            self.objects[resource][(ns, name)] = obj
            self._spawn(self._schedule(ns, name))
        elif resource == "persistentvolumeclaims":
            meta.setdefault("finalizers", ["kubernetes.io/pvc-protection"])
            obj["status"] = {"phase": "Bound", "accessModes": obj["spec"].get("accessModes"),
                             "capacity": obj["spec"].get("resources", {}).get("requests", {})}
            obj["spec"]["volumeName"] = f"pvc-{meta['uid']}"
            self.objects[resource][(ns, name)] = obj
        else:
            self.objects[resource][(ns, name)] = obj
        return web.json_response(obj, status=201)

    async def patch(self, request):
        ns, resource, name = request.match_info["ns"], request.match_info["resource"], request.match_info["name"]
        obj = self.objects[resource].get((ns, name))
        if obj is None:
            return not_found(resource, name)
        if request.content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: "
                                                       f"{request.content_type}")
        merge(obj, await request.json())
        return web.json_response(obj)

    async def delete(self, request):
        ns, resource, name = request.match_info["ns"], request.match_info["resource"], request.match_info["name"]
        obj = self.objects[resource].get((ns, name))
        if obj is None:
            return not_found(resource, name)
        body = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = {}
        grace = request.query.get("gracePeriodSeconds") or body.get("gracePeriodSeconds")
        if resource == "pods":
            if not obj["metadata"].get("deletionTimestamp"):
                grace = int(grace if grace is not None else obj["spec"].get("terminationGracePeriodSeconds", 30))
                obj["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=grace)
                self._spawn(self._terminate(ns, name, grace))
        elif resource == "persistentvolumeclaims":
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = now()
                self._spawn(self._release_claim(ns, name))
        else:
            del self.objects[resource][(ns, name)]
        return web.json_response(obj)

    # -- the "kubelet" ------------------------------------------------------------------------
    def _claim_users(self, ns: str, claim: str) -> list[str]:
        return [n for (pns, n), pod in self.objects["pods"].items() if pns == ns and any(
            (v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in pod["spec"].get("volumes", []))]

    async def _release_claim(self, ns: str, name: str) -> None:
        while self._claim_users(ns, name):  # kubernetes.io/pvc-protection
            await asyncio.sleep(0.05)
        obj = self.objects["persistentvolumeclaims"].get((ns, name))
        if obj is not None and name not in self.host_claims:
            # the claim is gone only once its volume is (a client that sees 404 may count on that)
            await asyncio.to_thread(self._remove_volume, self._volume_name(obj))
        self.objects["persistentvolumeclaims"].pop((ns, name), None)

    def _remove_volume(self, volume: str, patience: float = 15) -> None:
        """Remove a claim's volume, waiting out a pod container that Docker is still removing."""
        import docker.errors

        deadline = time.monotonic() + patience
        while True:
            try:
                self.docker.volumes.get(volume).remove(force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as e:
                if e.status_code != 409 or time.monotonic() > deadline:  # 409: still in use
                    return
                time.sleep(0.1)

    def _volume_name(self, pvc: dict) -> str:
        return f"{self.label}-{pvc['spec']['volumeName']}"

    def _condition(self, pod: dict, ctype: str, ok: bool, reason: str = "", message: str = "") -> None:
        conds = [c for c in pod["status"]["conditions"] if c["type"] != ctype]
        cond = {"type": ctype, "status": "True" if ok else "False", "lastTransitionTime": now()}
        if reason:
            cond.update(reason=reason, message=message)
        pod["status"]["conditions"] = conds + [cond]

    def _policy_denies_egress(self, ns: str, labels: dict) -> bool:
        for (pns, _), pol in self.objects["networkpolicies"].items():
            spec = pol.get("spec", {})
            sel = spec.get("podSelector", {}).get("matchLabels", {})
            if pns == ns and all(labels.get(k) == v for k, v in sel.items()) \
                    and "Egress" in spec.get("policyTypes", []) and not spec.get("egress"):
                return True
        return False

    async def _schedule(self, ns: str, name: str) -> None:
        pod = self.objects["pods"].get((ns, name))
        if pod is None:
            return
        spec = pod["spec"]
        selector = spec.get("nodeSelector") or {}
        if any(NODE_LABELS.get(k) != v for k, v in selector.items()):
            self._condition(pod, "PodScheduled", False, "Unschedulable",
                            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.")
            return
        for vol in spec.get("volumes", []):
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and (ns, claim) not in self.objects["persistentvolumeclaims"]:
                self._condition(pod, "PodScheduled", False, "Unschedulable",
                                f'0/1 nodes are available: persistentvolumeclaim "{claim}" not found.')
                return
        spec["nodeName"] = NODE
        self._condition(pod, "PodScheduled", True)
        container = spec["containers"][0]
        pod["status"]["containerStatuses"] = [{
            "name": container["name"], "image": container["image"], "imageID": "", "ready": False,
            "restartCount": 0, "started": False,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]
        try:
            cid = await asyncio.to_thread(self._run_container, ns, pod)
        except Exception as e:  # image missing, bad spec: what the kubelet reports
            import docker.errors

            reason = "ErrImagePull" if isinstance(e, docker.errors.ImageNotFound) else "CreateContainerError"
            pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": str(e)}}
            return
        if (ns, name) not in self.objects["pods"] or pod["metadata"].get("deletionTimestamp"):
            await asyncio.to_thread(self._remove_container, cid)
            return
        self.containers[(ns, name)] = cid
        await self._refresh(pod)

    def _run_container(self, ns: str, pod: dict) -> str:
        from docker.types import Mount

        spec, container = pod["spec"], pod["spec"]["containers"][0]
        psc, csc = spec.get("securityContext") or {}, container.get("securityContext") or {}
        user = csc.get("runAsUser", psc.get("runAsUser"))
        group = csc.get("runAsGroup", psc.get("runAsGroup"))
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts, tmpfs = [], {}
        for vm in container.get("volumeMounts", []):
            vol = volumes[vm["name"]]
            if "emptyDir" in vol:
                size = vol["emptyDir"].get("sizeLimit")
                tmpfs[vm["mountPath"]] = "rw,exec,nosuid,nodev,mode=1777" + (
                    f",size={int(quantity(size))}" if size else "")
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                pvc = self.objects["persistentvolumeclaims"][(ns, claim)]
                if claim in self.host_claims:  # a claim the "server pod" also mounts
                    host = Path(self.host_claims[claim]) / vm.get("subPath", "")
                    host.mkdir(parents=True, exist_ok=True)
                    mounts.append(Mount(vm["mountPath"], str(host), type="bind"))
                else:
                    name = self._volume_name(pvc)
                    self.docker.volumes.create(name, labels={"fakekube": self.label})
                    mounts.append(Mount(vm["mountPath"], name, type="volume"))
        limits = (container.get("resources") or {}).get("limits") or {}
        kwargs = {}
        if self._policy_denies_egress(ns, pod["metadata"].get("labels") or {}):
            kwargs["network_mode"] = "none"
        if "memory" in limits:
            kwargs["mem_limit"] = kwargs["memswap_limit"] = int(quantity(limits["memory"]))
        if "cpu" in limits:
            kwargs["nano_cpus"] = int(quantity(limits["cpu"]) * 1e9)
        if csc.get("allowPrivilegeEscalation") is False:
            kwargs["security_opt"] = ["no-new-privileges"]
        if psc.get("fsGroup") is not None:
            kwargs["group_add"] = [str(psc["fsGroup"])]
        c = self.docker.containers.create(
            container["image"], entrypoint=container.get("command"), command=container.get("args"),
            user=None if user is None else f"{user}:{group if group is not None else user}",
            working_dir=container.get("workingDir"), hostname=spec.get("hostname") or pod["metadata"]["name"],
            environment={e["name"]: e.get("value", "") for e in container.get("env", [])},
            labels={"fakekube": self.label, "fakekube.pod": f"{ns}/{pod['metadata']['name']}"},
            mounts=mounts, tmpfs=tmpfs, cap_drop=(csc.get("capabilities") or {}).get("drop"),
            name=f"{self.label}-{ns}-{pod['metadata']['name']}"[:120], **kwargs)
        try:
            c.start()
        except Exception:
            c.remove(force=True)
            raise
        return c.id

    def _remove_container(self, cid: str, grace: int = 0) -> None:
        import docker.errors

        try:
            c = self.docker.containers.get(cid)
            if grace:
                c.stop(timeout=grace)
            c.remove(force=True)
        except docker.errors.APIError:
            pass

    async def _terminate(self, ns: str, name: str, grace: int) -> None:
        while (ns, name) in self.objects["pods"] and self.objects["pods"][(ns, name)]["status"].get(
                "containerStatuses", [{}])[0].get("state", {}).get("waiting", {}).get("reason") == "ContainerCreating":
            await asyncio.sleep(0.05)  # let a starting container finish before killing it
        cid = self.containers.pop((ns, name), None)
        if cid:
            await asyncio.to_thread(self._remove_container, cid, grace)
        self.objects["pods"].pop((ns, name), None)

    async def _refresh(self, pod: dict) -> None:
        """Pod status from its container, the way the kubelet reports it."""
        import docker.errors

        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        cid = self.containers.get(key)
        if not cid:
            return
        try:
            attrs = await asyncio.to_thread(self.docker.api.inspect_container, cid)
        except docker.errors.NotFound:  # removed behind the kubelet's back
            attrs = {"State": {"Running": False, "ExitCode": 137, "OOMKilled": False, "Status": "removed"}}
        st = attrs["State"]
        cs = pod["status"]["containerStatuses"][0]
        cs["containerID"] = f"docker://{cid}"
        if st.get("Running"):
            pod["status"]["phase"] = "Running"
            cs.update(ready=True, started=True, state={"running": {"startedAt": st.get("StartedAt", now())}})
            self._condition(pod, "Ready", True)
        else:
            code = st.get("ExitCode", 0)
            reason = "OOMKilled" if st.get("OOMKilled") else ("Completed" if code == 0 else "Error")
            pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
            cs.update(ready=False, started=False, state={"terminated": {"exitCode": code, "reason": reason,
                                                                        "finishedAt": st.get("FinishedAt", now())}})
            self._condition(pod, "Ready", False, "PodFailed" if code else "PodCompleted")

    # -- exec ---------------------------------------------------------------------------------
    async def exec(self, request: web.Request):
        ns, name = request.match_info["ns"], request.match_info["name"]
        pod = self.objects["pods"].get((ns, name))
        if pod is None:
            return not_found("pods", name)
        await self._refresh(pod)
        cid = self.containers.get((ns, name))
        running = pod["status"].get("phase") == "Running"
        if not cid or not running:
            return status(400, "BadRequest", f'container sandbox is not valid for pod {name}' if cid else
                          f"pod {name} does not have a host assigned" if not pod["spec"].get("nodeName") else
                          f'unable to upgrade connection: container not found ("{name}")')
        q = request.query
        argv = q.getall("command", [])
        flag = lambda k: q.get(k, "false").lower() in ("1", "t", "true")
        if not argv:
            return status(400, "BadRequest", "you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        self.exec_protocols.append(ws.ws_protocol or "")
        if ws.ws_protocol not in PROTOCOLS:
            await ws.close(code=1002, message=b"unsupported subprotocol")
            return ws
        loop = asyncio.get_running_loop()
        try:
            eid = (await asyncio.to_thread(self.docker.api.exec_create, cid, argv, stdin=flag("stdin"),
                                           stdout=flag("stdout"), stderr=flag("stderr"), tty=False))["Id"]
            sock = await asyncio.to_thread(self.docker.api.exec_start, eid, socket=True)
        except Exception as e:
            await ws.send_bytes(b"\x03" + json.dumps({
                "metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": f"Internal error occurred: error executing command in container: {e}"}).encode())
            await ws.close()
            return ws
        raw = getattr(sock, "_sock", sock)
        raw.setblocking(False)

        async def from_container():
            pending = bytearray()
            while True:
                chunk = await loop.sock_recv(raw, 65536)
                if not chunk:
                    return
                pending += chunk
                while len(pending) >= 8:
                    size = int.from_bytes(pending[4:8], "big")
                    if len(pending) < 8 + size:
                        break
                    await ws.send_bytes(bytes([pending[0]]) + bytes(pending[8:8 + size]))
                    del pending[:8 + size]

        async def from_client():
            async for msg in ws:
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                channel, data = msg.data[0], msg.data[1:]
                if channel == 0:
                    await loop.sock_sendall(raw, data)
                elif channel == 255 and ws.ws_protocol == "v5.channel.k8s.io" and data[:1] == b"\x00":
                    raw.shutdown(socket.SHUT_WR)  # v5: the client closed stdin

        reader = asyncio.ensure_future(from_container())
        writer = asyncio.ensure_future(from_client())
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and not ws.closed:  # the command ended: report how
                info = await self._exec_done(eid)
                code = info.get("ExitCode")
                body = {"metadata": {}, "status": "Success"} if code == 0 else {
                    "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                    "message": f"command terminated with non-zero exit code: exit status {code}",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
                await ws.send_bytes(b"\x03" + json.dumps(body).encode())
                await ws.close()
        except (ConnectionResetError, OSError):
            pass
        finally:
            for task in (reader, writer):
                task.cancel()
            raw.close()
        return ws

    async def _exec_done(self, eid: str) -> dict:
        for _ in range(100):
            info = await asyncio.to_thread(self.docker.api.exec_inspect, eid)
            if not info.get("Running"):
                return info
            await asyncio.sleep(0.02)
        return info
