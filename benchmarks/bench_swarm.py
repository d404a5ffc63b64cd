"""N sandboxes started at once on the swarm and docker backends, against bare engine commands.

For each of four rows, N (default 50) starts are launched concurrently and we measure the time
until all N run, and the p50/p95 of each one's own start latency:

- `docker run`      : bare `docker run -d --network none IMAGE sleep infinity` (CLI), N at once
- docker backend    : `DockerSandbox.start()` x N (create, start, limits, image check)
- `service create`  : bare `docker service create -d --restart-condition none IMAGE sleep infinity`
                      (CLI), N at once, until each service's task is running (one tasks poll for all)
- swarm backend     : `SwarmSandbox.start()` x N (own internal overlay network, volume, limits,
                      wait for the task, set-id strip)

Ratios are printed against the bare command of the same engine, measured in the same run. The
engine is made a one-node swarm when it is not one (and left again afterwards); everything created
is labelled and removed at the end.

    python benchmarks/bench_swarm.py [-n 50] [--reservation 0.02] [--rows run,docker,service,swarm]

`--rows ...,swarm-shared,swarm-net` adds the swarm backend with one shared internal overlay, and
with network on (no overlay at all), to show what the per-session internal overlay costs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jupyter_sessions.sandbox import make_backend
from jupyter_sessions.sandbox.swarm import single_node_swarm

ACTIVE = ("new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting")


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("docker", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode(errors="replace")


async def row_docker_run(n: int, image: str, tag: str) -> tuple[float, list[float]]:
    async def one(i: int) -> float:
        t0 = time.perf_counter()
        code, out = await cli("run", "-d", "--network", "none", "--label", f"bench={tag}",
                              "--name", f"bench-run-{tag}-{i}", image, "sleep", "infinity")
        assert code == 0, out
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    each = await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0, list(each)


async def row_service_create(n: int, image: str, tag: str, client) -> tuple[float, list[float]]:
    launched: dict[str, float] = {}
    running: dict[str, float] = {}

    async def one(i: int) -> None:
        name = f"bench-svc-{tag}-{i}"
        launched[name] = time.perf_counter()
        code, out = await cli("service", "create", "-d", "-q", "--restart-condition", "none", "--label",
                              f"bench={tag}", "--stop-grace-period", "1s", "--name", name, image, "sleep", "infinity")
        assert code == 0, out

    t0 = time.perf_counter()
    creating = asyncio.gather(*(one(i) for i in range(n)))
    while len(running) < n:
        await asyncio.sleep(0.05)
        services = {s["ID"]: s["Spec"]["Name"] for s in await asyncio.to_thread(
            client.api.services, filters={"label": f"bench={tag}"})}
        if not services:
            continue
        tasks = await asyncio.to_thread(client.api.tasks, filters={"service": list(services)})
        now = time.perf_counter()
        for t in tasks:
            name = services.get(t["ServiceID"])
            if name and t["Status"]["State"] == "running" and name not in running:
                running[name] = now
            assert t["Status"]["State"] in ACTIVE + ("running",), t["Status"]
        assert now - t0 < 600, f"only {len(running)}/{n} services running after 600 s"
    await creating
    total = time.perf_counter() - t0
    return total, [running[k] - launched[k] for k in running]


async def row_backend(kind: str, n: int, image: str, tag: str, work: Path, **settings) -> tuple[float, list[float]]:
    backend = make_backend(kind, image=image, instance=f"bench-{tag}", **settings)
    await backend.check()
    sandboxes = [backend.sandbox(f"bench-{kind}-{i}", work / f"{kind}-{i}") for i in range(n)]

    async def one(sb) -> float:
        t0 = time.perf_counter()
        await sb.start()
        return time.perf_counter() - t0

    try:
        t0 = time.perf_counter()
        each = await asyncio.gather(*(one(sb) for sb in sandboxes))
        total = time.perf_counter() - t0
        alive = await asyncio.gather(*(sb.is_alive() for sb in sandboxes))
        assert all(alive), f"{alive.count(False)} of {n} {kind} sandboxes are not running"
        return total, list(each)
    finally:
        await asyncio.gather(*(sb.remove() for sb in sandboxes), return_exceptions=True)
        await backend.cleanup_orphans(set())
        await backend.close()


def cleanup_bare(client, tag: str) -> None:
    """Remove the bare rows' services and containers (only ours: named bench-*-<tag>-N)."""
    for s in client.services.list(filters={"label": f"bench={tag}"}):
        s.remove()
    mine = (f"bench-run-{tag}-", f"bench-svc-{tag}-")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = [c for c in client.containers.list(all=True, filters={"name": "bench-"}) if c.name.startswith(mine)]
        if not left:
            return
        for c in left:
            try:
                c.remove(force=True)
            except Exception:
                pass
        time.sleep(0.2)


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=50, help="sandboxes started at once (default 50)")
    p.add_argument("--reservation", type=float, default=0.02,
                   help="swarm: fraction of each sandbox's cpu/memory limits reserved (0.02: 50 fit on 2 cores)")
    p.add_argument("--rows", default="run,docker,service,swarm")
    args = p.parse_args()
    rows = args.rows.split(",")

    import docker

    from jupyter_sessions.sandbox.image import build_image

    client = docker.from_env(timeout=300)
    image = build_image(client)
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    results: dict[str, tuple[float, list[float]]] = {}
    with single_node_swarm(client):
        try:
            if "run" in rows:
                results["run"] = await row_docker_run(args.n, image, tag)
                cleanup_bare(client, tag)
            if "docker" in rows:
                results["docker"] = await row_backend("docker", args.n, image, tag, work)
            if "service" in rows:
                results["service"] = await row_service_create(args.n, image, tag, client)
                cleanup_bare(client, tag)
            if "swarm" in rows:
                results["swarm"] = await row_backend("swarm", args.n, image, tag, work, reservation=args.reservation)
            if "swarm-shared" in rows:  # one internal overlay for all sandboxes (no per-session network)
                results["swarm-shared"] = await row_backend("swarm", args.n, image, tag, work,
                                                            network_per_session=False, reservation=args.reservation)
            if "swarm-net" in rows:  # attribution: the same without the per-session internal overlay
                results["swarm-net"] = await row_backend("swarm", args.n, image, tag, work, network=True,
                                                         reservation=args.reservation)
        finally:
            cleanup_bare(client, tag)
            shutil.rmtree(work, ignore_errors=True)

    names = {"run": "bare docker run", "docker": "docker backend", "service": "bare docker service create",
             "swarm": "swarm backend", "swarm-shared": "swarm, one shared overlay",
             "swarm-net": "swarm backend, network on"}
    print(f"\n{args.n} sandboxes started concurrently, image {image}, engine "
          f"{client.version()['Version']}, {args.reservation} reservation on swarm")
    print(f"{'':28} {'all running':>12} {'p50 each':>10} {'p95 each':>10}")
    for key in ("run", "docker", "service", "swarm", "swarm-shared", "swarm-net"):
        if key in results:
            total, each = results[key]
            print(f"{names[key]:28} {total:11.2f}s {statistics.median(each):9.2f}s {p95(each):9.2f}s")
    print()
    for ours, base in (("docker", "run"), ("swarm", "service"), ("swarm-shared", "service"), ("swarm-net", "service"),
                       ("swarm", "docker")):
        if ours in results and base in results:
            (t1, e1), (t0, e0) = results[ours], results[base]
            print(f"{names[ours]} / {names[base]}: all-running x{t1 / t0:.2f}, p95 x{p95(e1) / p95(e0):.2f}")
    client.close()


if __name__ == "__main__":
    asyncio.run(main())
