"""The kubernetes sandbox backend against a FAKE Kubernetes API server (no real cluster runs here).

tests/fakes/kube_api.py speaks the real REST paths and the exec websocket protocol over HTTPS with
a bearer token, and runs each pod as a Docker container, so the backend's client code (the
kubernetes-asyncio SDK, kubeconfig and in-cluster configuration, exec channels, status parsing)
runs on the wire. What it cannot show: a real scheduler, storage provisioner, CNI or RBAC.
Needs `kubernetes-asyncio` (and `cryptography` for the fake's TLS): not skipped when missing.

The sandbox suite every backend passes (tests/test_sandbox.py) runs here too, unchanged: its test
functions are imported below and get conftest's `sandbox` fixture made from this module's `backend`
(kubernetes, with the workspace on a shared claim, so the host sees the files like docker's bind mount).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from fakes.kube_api import FakeKube
from test_sandbox import (  # noqa: F401  (the shared suite, collected here too)
    test_cancelled_exec_kills_the_command,
    test_cwd_is_workspace,
    test_exec_output_and_exit_code,
    test_executable_bit_survives_a_write,
    test_kill_processes,
    test_no_server_secrets_in_env,
    test_output_cap_truncates,
    test_path_escapes_are_refused,
    test_read_errors,
    test_remove,
    test_stop_then_start_keeps_files,
    test_symlink_inside_workspace_is_fine,
    test_timeout_kills_the_process_group,
    test_write_read_round_trip,
)

from jupyter_sessions.sandbox import (
    Limits,
    SandboxError,
    SandboxGone,
    SandboxUnavailable,
    make_backend,
)

NS = "sessions"
TOKEN = "fake-service-account-token"


@pytest.fixture
def kube(docker_client, tmp_path, run):
    """The fake API server (HTTPS, bearer token); the claim "home" is the test's tmp_path."""
    fake = FakeKube(docker_client, token=TOKEN, tls=True, host_claims={"home": str(tmp_path)}, namespace=NS)
    run(fake.start())
    yield fake
    run(fake.stop())


def kube_backend(kube, tmp_path, sandbox_image, instance, **kw):
    config = kube.kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    settings = dict(image=sandbox_image, kube_config=str(config), instance=instance, memory="512m", cpus=1.0)
    return make_backend("kubernetes", **{**settings, **kw})


@pytest.fixture
def backend(kube, tmp_path, sandbox_image, instance, run):
    """Shared mode: the pod mounts the server's own workspace folder from the claim."""
    b = kube_backend(kube, tmp_path, sandbox_image, instance, workspace_mode="shared", workspace_claim="home",
                     workspace_claim_mount=str(tmp_path))
    run(b.check())
    yield b
    run(b.cleanup_orphans(set()))
    run(b.close())


@pytest.fixture
def pvc_backend(kube, tmp_path, sandbox_image, instance, run):
    b = kube_backend(kube, tmp_path, sandbox_image, instance, storage_class="fast", workspace_size="2Gi")
    run(b.check())
    yield b
    run(b.cleanup_orphans(set()))
    run(b.close())


def pod(kube, name):
    return kube.objects["pods"].get((NS, name))


# -- the wire -------------------------------------------------------------------------------------
async def test_kube_speaks_the_real_rest_paths(sandbox, kube):
    await sandbox.exec("true")
    await sandbox.stop()
    calls = {(m, p) for m, p, _ in kube.requests}
    base = f"/api/v1/namespaces/{NS}"
    assert ("GET", f"{base}/pods") in calls  # check(): list with a label selector
    assert ("GET", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/"
                   "jupyter-sessions-sandbox-no-network") in calls
    assert ("POST", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies") in calls
    assert ("POST", f"{base}/pods") in calls
    assert ("GET", f"{base}/pods/{sandbox.name}") in calls
    assert ("GET", f"{base}/pods/{sandbox.name}/exec") in calls
    assert ("DELETE", f"{base}/pods/{sandbox.name}") in calls
    queries = [parse_qsl(q) for m, p, q in kube.requests if p.endswith("/exec")]
    commands = [[v for k, v in q if k == "command"] for q in queries]
    assert any(c[0] == "env" and c[1].startswith("JUPYTER_SESSIONS_EXEC=") and c[-2:] == ["true", str(1024 * 1024)]
               for c in commands)  # the user's command, wrapped with its kill token and file-size limit
    assert all(("container", "sandbox") in q and ("stdout", "True") in q and ("tty", "False") in q for q in queries)
    assert set(kube.exec_protocols) == {"v4.channel.k8s.io"}


async def test_kube_pod_spec(sandbox, kube, instance):
    obj = pod(kube, sandbox.name)
    meta, spec = obj["metadata"], obj["spec"]
    assert meta["labels"] == {"app.kubernetes.io/managed-by": "jupyter-sessions",
                              "app.kubernetes.io/component": "sandbox",
                              "jupyter-sessions/session": sandbox.session_id,
                              "jupyter-sessions/instance": instance, "jupyter-sessions/network": "none"}
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["fsGroup"] == 1000
    (c,) = spec["containers"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"] == {"limits": {"cpu": "1000m", "memory": str(512 * 1024**2)},
                              "requests": {"cpu": "100m", "memory": str(int(512 * 1024**2 * 0.1))}}
    assert spec["volumes"][0] == {"name": "workspace", "persistentVolumeClaim": {"claimName": "home"}}
    assert c["volumeMounts"][0] == {"name": "workspace", "mountPath": "/workspace", "subPath": "ws"}
    res = await sandbox.exec("id -u; id -g; grep -E 'NoNewPrivs|CapEff' /proc/self/status; "
                             "test -e /var/run/secrets/kubernetes.io && echo TOKEN-INSIDE; env | grep -c KUBERNETES_")
    assert res.output.split("\n")[:4] == ["1000", "1000", "CapEff:\t0000000000000000", "NoNewPrivs:\t1"]
    assert "TOKEN-INSIDE" not in res.output and res.output.strip().endswith("0")


async def test_kube_network_is_off(sandbox, kube):
    policy = kube.objects["networkpolicies"][(NS, "jupyter-sessions-sandbox-no-network")]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "sandbox",
                                                            "jupyter-sessions/network": "none"}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["egress"] == []
    # The fake enforces the policy like a policy-enforcing CNI (here: no route at all): no packet is sent.
    res = await sandbox.exec(
        "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)\"", timeout=20)
    assert res.exit_code != 0 and "unreachable" in res.output.lower()


async def test_kube_file_size_limit(backend, tmp_path):
    sb = backend.sandbox("t-fsize-" + uuid.uuid4().hex[:6], tmp_path / "fsize", Limits(max_file_mb=1))
    await sb.start()
    try:
        res = await sb.exec("head -c 3000000 /dev/zero > big; ls -l big | awk '{print $5}'")
        assert "File size limit exceeded" in res.output and res.output.strip().endswith("1048576")
        res = await sb.exec("ulimit -f unlimited")  # the command can't raise it again
        assert res.exit_code != 0
    finally:
        await sb.remove()


async def test_kube_keeper_survives_kill_all_and_reaps(sandbox):
    await sandbox.exec("for i in 1 2 3; do (sleep 0.1 &) ; done; sleep 0.5")  # orphans reparent to PID 1
    await sandbox.kill_processes()
    res = await sandbox.exec("ps -eo pid=,stat=,comm= | awk '$2 ~ /Z/' | wc -l; ps -o comm= -p 1")
    zombies, init = res.output.split()
    assert zombies == "0" and init == "python3"
    assert await sandbox.is_alive()


# -- configuration and errors ---------------------------------------------------------------------
async def test_kube_in_cluster_config(kube, tmp_path, sandbox_image, monkeypatch):
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(TOKEN)
    (sa / "ca.crt").write_text(Path(kube.ca_file).read_text())
    (sa / "namespace").write_text("from-pod")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(kube.port))
    b = make_backend("kubernetes", image=sandbox_image, service_account_dir=str(sa))
    try:
        await b.check()
        assert b.namespace == "from-pod"
        assert ("GET", "/api/v1/namespaces/from-pod/pods") in {(m, p) for m, p, _ in kube.requests}
    finally:
        await b.close()


async def test_kube_check_explains(kube, tmp_path, sandbox_image, instance):
    b = make_backend("kubernetes", kube_config=str(kube.kubeconfig(tmp_path / "kc", NS)))
    with pytest.raises(SandboxUnavailable, match="kubernetes_image"):
        await b.check()  # no image: nothing can be pulled by default
    await b.close()

    kube.forbidden.add(("list", "pods"))
    b = kube_backend(kube, tmp_path, sandbox_image, instance)
    with pytest.raises(SandboxUnavailable, match=r"may not list pods in namespace 'sessions' \(HTTP 403\).*Role"):
        await b.check()
    await b.close()
    kube.forbidden.clear()

    kube.forbidden.add(("create", "networkpolicies"))
    b = kube_backend(kube, tmp_path, sandbox_image, instance)
    with pytest.raises(SandboxUnavailable, match="create networkpolicies"):
        await b.check()  # fail closed: no sandbox without the no-network policy
    await b.close()
    b = kube_backend(kube, tmp_path, sandbox_image, instance, manage_network_policy=False)
    with pytest.raises(SandboxUnavailable, match="NetworkPolicy jupyter-sessions-sandbox-no-network is missing"):
        await b.check()
    await b.close()

    bad = kube.kubeconfig(tmp_path / "bad", NS, token="wrong")
    b = make_backend("kubernetes", image=sandbox_image, kube_config=str(bad))
    with pytest.raises(SandboxUnavailable, match="HTTP 401"):
        await b.check()
    await b.close()

    b = make_backend("kubernetes", image=sandbox_image, api_url="http://127.0.0.1:9")
    with pytest.raises(SandboxUnavailable, match="not reachable"):
        await b.check()
    await b.close()


async def test_kube_unschedulable_says_why(kube, tmp_path, sandbox_image, instance):
    b = kube_backend(kube, tmp_path, sandbox_image, instance, node_selector={"disktype": "ssd"}, start_timeout=2)
    sb = b.sandbox("t-nowhere", tmp_path / "nowhere")
    try:
        with pytest.raises(SandboxError, match="did not start within 2 s: Unschedulable: 0/1 nodes are available"):
            await sb.start()
        assert pod(kube, sb.name) is None  # deleted, so it can't start later unobserved
    finally:
        await sb.remove()
        await b.close()


async def test_kube_missing_image_fails_fast(kube, tmp_path, instance):
    b = kube_backend(kube, tmp_path, "jupyter-sessions-no-such-image:1", instance)
    sb = b.sandbox("t-noimage", tmp_path / "noimage")
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(SandboxError, match="could not start: ErrImagePull"):
            await sb.start()
        assert asyncio.get_running_loop().time() - started < 30
    finally:
        await sb.remove()
        await b.close()


# -- lifecycle --------------------------------------------------------------------------------------
async def test_kube_pvc_workspace_lifecycle(pvc_backend, kube, tmp_path):
    host = tmp_path / "pvc-ws"
    (host / "repo").mkdir(parents=True)
    (host / "repo/README.md").write_text("cloned by the server\n")
    (host / "repo/run.sh").write_text("#!/bin/sh\necho ran\n")
    (host / "repo/run.sh").chmod(0o755)
    (host / "repo/escape").symlink_to("/etc/passwd")  # copied as a link, never as the host's file
    sb = pvc_backend.sandbox("t-pvc-" + uuid.uuid4().hex[:6], host)
    info = await sb.start()
    claim = kube.objects["persistentvolumeclaims"][(NS, sb.claim)]
    assert info.detail["claim"] == sb.claim == sb.name
    assert claim["spec"]["storageClassName"] == "fast" and claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["metadata"]["annotations"]["jupyter-sessions/seeded"] == "true"
    assert await sb.read_file("repo/README.md") == b"cloned by the server\n"  # seeded on first start
    assert (await sb.exec("./repo/run.sh")).output == "ran\n"
    assert (await sb.exec("readlink repo/escape")).output == "/etc/passwd\n"
    await sb.write_file("repo/README.md", b"edited by the agent\n")
    assert (host / "repo/README.md").read_text() == "cloned by the server\n"  # pvc mode: not on the host

    await sb.stop()
    assert pod(kube, sb.name) is None and (NS, sb.claim) in kube.objects["persistentvolumeclaims"]
    (host / "repo/README.md").write_text("changed on the host later\n")
    await sb.start()  # Resume: the claim's files, not a second copy of the host's
    assert await sb.read_file("repo/README.md") == b"edited by the agent\n"

    (host / "repo2").mkdir()
    (host / "repo2/new.txt").write_text("attached later\n")
    await sb.adopt(host / "repo2")
    assert await sb.read_file("repo2/new.txt") == b"attached later\n"
    await sb.adopt(host)  # the whole workspace again: a no-op, the claim wins
    assert await sb.read_file("repo/README.md") == b"edited by the agent\n"

    volume = f"{kube.label}-{claim['spec']['volumeName']}"
    assert kube.docker.volumes.get(volume)
    await sb.remove()
    assert (NS, sb.claim) not in kube.objects["persistentvolumeclaims"]
    assert volume not in [v.name for v in kube.docker.volumes.list()]
    assert host.is_dir()  # the host workspace belongs to the manager


async def test_kube_killed_from_outside_then_resumed(sandbox, kube):
    await sandbox.write_file("keep.txt", b"kept")
    kube.docker.containers.get(kube.containers[(NS, sandbox.name)]).kill()
    for _ in range(50):
        if not await sandbox.is_alive():
            break
        await asyncio.sleep(0.1)
    assert not await sandbox.is_alive()
    assert "exit code 137" in await sandbox.death_cause()
    with pytest.raises(SandboxGone):
        await sandbox.exec("true")
    await sandbox.start()  # a failed pod is replaced; the workspace stays
    assert await sandbox.read_file("keep.txt") == b"kept"


async def test_kube_out_of_memory_is_explained(backend, tmp_path):
    sb = backend.sandbox("t-oom-" + uuid.uuid4().hex[:6], tmp_path / "oom", Limits(memory="64m"))
    await sb.start()
    try:
        res = await sb.exec("python3 -c 'x = bytearray(300 * 1024 * 1024)'")
        assert res.exit_code == 137 and "out of memory (limit 64m)" in res.output
    finally:
        await sb.remove()


async def test_kube_reattach_after_server_restart(sandbox, kube, tmp_path, sandbox_image, instance):
    uid = pod(kube, sandbox.name)["metadata"]["uid"]
    fresh = kube_backend(kube, tmp_path, sandbox_image, instance, workspace_mode="shared", workspace_claim="home",
                         workspace_claim_mount=str(tmp_path))
    try:
        again = fresh.sandbox(sandbox.session_id, sandbox.workspace)
        assert await again.is_alive()
        info = await again.start()
        assert info.detail["uid"] == uid  # the same pod, not a new one
    finally:
        await fresh.close()


async def test_kube_cleanup_orphans(pvc_backend, kube, tmp_path, instance):
    live = pvc_backend.sandbox("t-live-" + uuid.uuid4().hex[:6], tmp_path / "live")
    orphan = pvc_backend.sandbox("orphan-" + uuid.uuid4().hex[:6], tmp_path / "orphan")
    await live.start()
    await orphan.start()
    core = await pvc_backend.core()
    other = {"app.kubernetes.io/managed-by": "jupyter-sessions", "app.kubernetes.io/component": "sandbox",
             "jupyter-sessions/session": "bystander", "jupyter-sessions/instance": "someone-else"}
    await core.create_namespaced_persistent_volume_claim(NS, {
        "metadata": {"name": "bystander", "labels": other},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    removed = await pvc_backend.cleanup_orphans({live.session_id})
    assert removed == [orphan.session_id]
    assert pod(kube, orphan.name) is None and pod(kube, live.name) is not None
    assert (NS, "bystander") in kube.objects["persistentvolumeclaims"]
    for _ in range(50):
        if (NS, orphan.claim) not in kube.objects["persistentvolumeclaims"]:
            break
        await asyncio.sleep(0.1)
    assert (NS, orphan.claim) not in kube.objects["persistentvolumeclaims"]
    assert await live.is_alive()
    await live.remove()


# -- the fake itself ------------------------------------------------------------------------------
async def test_fake_exec_v5_closes_stdin(sandbox, kube):
    """v5.channel.k8s.io: the client can close stdin (channel 255), so `cat` ends on its own."""
    import ssl

    import aiohttp

    ctx = ssl.create_default_context(cafile=kube.ca_file)
    url = (f"{kube.url.replace('https', 'wss')}/api/v1/namespaces/{NS}/pods/{sandbox.name}/exec"
           "?command=cat&stdin=true&stdout=true&stderr=true")
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"), ssl=ctx,
            headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert ws.protocol == "v5.channel.k8s.io"
        await ws.send_bytes(b"\x00hello over v5")
        await ws.send_bytes(b"\xff\x00")
        out, status = b"", None
        async for msg in ws:
            if msg.data[0] == 1:
                out += msg.data[1:]
            elif msg.data[0] == 3:
                status = json.loads(msg.data[1:])
    assert out == b"hello over v5" and status == {"metadata": {}, "status": "Success"}


async def test_fake_exec_of_a_missing_pod_is_404(kube, backend, tmp_path):
    sb = backend.sandbox("t-never-started", tmp_path / "never")
    with pytest.raises(SandboxGone, match="no longer exists"):
        await sb.exec("true")

