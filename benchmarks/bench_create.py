"""Time from POST /sessions to Running, for the docker and local sandboxes.

Baselines, measured in the same run: a bare `docker run` of the same image (create + start + wait
+ remove through the docker SDK) and a bare subprocess start (`bash -c true`). Prints medians and
the ratios ours/baseline.

    python benchmarks/bench_create.py [--runs 10] [--backends docker,local]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_process import Server  # noqa: E402


def post_to_running(srv: Server) -> float:
    t0 = time.perf_counter()
    code, s = srv.call("POST", "sessions", body={})
    assert code == 201, s
    while True:
        _, s = srv.call("GET", "sessions", s["id"])
        if s["phase"] == "Running":
            dt = time.perf_counter() - t0
            break
        assert s["phase"] in ("Pending", "Creating"), s
        time.sleep(0.005)
    srv.call("DELETE", "sessions", s["id"])
    return dt


def bare_docker_run(image: str) -> float:
    import docker

    client = docker.from_env()
    t0 = time.perf_counter()
    c = client.containers.run(image, ["true"], network_mode="none", detach=True)
    c.wait()
    dt = time.perf_counter() - t0
    c.remove(force=True)
    return dt


def bare_subprocess() -> float:
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", "true"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--backends", default="docker,local")
    args = p.parse_args()
    for backend in args.backends.split(","):
        srv = Server(Path(tempfile.mkdtemp()), sandbox=backend)
        srv.start()
        try:
            post_to_running(srv)  # warm-up (image lookup, first connection)
            ours = statistics.median(post_to_running(srv) for _ in range(args.runs))
        finally:
            srv.stop()
        if backend == "docker":
            from jupyter_sessions.sandbox.image import build_image

            image = build_image()  # cached by content hash: returns the tag the server used
            bare_docker_run(image)
            base = statistics.median(bare_docker_run(image) for _ in range(args.runs))
            label = f"bare docker run {image}"
        else:
            base = statistics.median(bare_subprocess() for _ in range(args.runs))
            label = "bare subprocess start"
        print(f"{backend}: POST->Running median {ours * 1000:.0f} ms; {label} median {base * 1000:.0f} ms; "
              f"ratio {ours / base:.2f}")


if __name__ == "__main__":
    main()
