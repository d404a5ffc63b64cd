"""Build the default sandbox image offline, from Debian packages, cached by a content hash.

These machines reach no image registry, so the image is made here: `mmdebstrap` writes a minimal
Debian root filesystem to a tar, `docker import` turns it into a base image, and a two-line
`docker build` adds the non-root `sandbox` user. The tag carries a hash of the recipe, so a changed
recipe builds a new image and an unchanged one is reused. A file lock stops two servers (or a server
and the CLI) from building at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("jupyter_sessions.sandbox")

#: Bump when the recipe changes in a way the package list and Dockerfile don't show.
RECIPE_VERSION = "1"
SUITE = "bookworm"
REPOSITORY = "jupyter-sessions-sandbox"
PACKAGES = [
    "bash", "coreutils", "git", "ripgrep", "grep", "findutils", "python3", "procps",
    "ca-certificates", "tini",
]
#: Documentation and translations the agent never needs (~50 MB).
PATH_EXCLUDES = ["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*"]
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# No useradd in a minbase root (passwd is not Essential), so the user is written directly.
DOCKERFILE = """\
FROM {base}
RUN echo 'sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/bash' >> /etc/passwd \\
 && echo 'sandbox:x:1000:' >> /etc/group \\
 && mkdir -p /home/sandbox /workspace \\
 && chown 1000:1000 /home/sandbox /workspace
ENV LANG=C.UTF-8 HOME=/home/sandbox
WORKDIR /workspace
USER 1000:1000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["sleep", "infinity"]
"""


def recipe_hash() -> str:
    """First 12 hex digits of sha256 over everything that decides the image's content."""
    recipe = "\n".join([RECIPE_VERSION, SUITE, ",".join(PACKAGES), ",".join(PATH_EXCLUDES), DOCKERFILE])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def default_tag() -> str:
    return f"{REPOSITORY}:{recipe_hash()}"


def debian_mirror() -> str:
    """The Debian mirror apt on this machine uses (deb822 or one-line format), else deb.debian.org."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    with contextlib.suppress(OSError):
        for stanza in deb822.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            m = re.match(rf"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{SUITE}\s", line)
            if m:
                return m.group(1)
    return DEFAULT_MIRROR


def _image_exists(client, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


@contextlib.contextmanager
def _build_lock(tag: str):
    """Hold an exclusive lock while building `tag`, shared by every process of every user."""
    path = Path(tempfile.gettempdir()) / f"{tag.replace(':', '-').replace('/', '-')}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)  # beat the umask, so another user's server can take the lock too
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is building %s; waiting for it", tag)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _rootfs(tar: Path, mirror: str) -> None:
    mmdebstrap = shutil.which("mmdebstrap")
    if not mmdebstrap:
        raise RuntimeError(
            "building the sandbox image needs mmdebstrap (apt-get install mmdebstrap), "
            "or configure an existing image with c.SessionsApp.docker_image"
        )
    cmd = [mmdebstrap, "--variant=minbase", "--quiet", f"--include={','.join(PACKAGES)}"]
    cmd += [f"--dpkgopt=path-exclude={p}" for p in PATH_EXCLUDES]
    cmd += [SUITE, str(tar), mirror]
    log.info("sandbox image: mmdebstrap %s from %s", SUITE, mirror)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed ({proc.returncode}):\n{proc.stdout[-4000:]}")


def build_image(client=None, *, force: bool = False, mirror: str | None = None) -> str:
    """Return the default image's tag, building it first when it isn't in the engine (sync)."""
    import docker

    client = client or docker.from_env()
    tag = default_tag()
    if not force and _image_exists(client, tag):
        return tag
    with _build_lock(tag):
        if not force and _image_exists(client, tag):  # built by whoever held the lock
            return tag
        started = time.monotonic()
        digest = recipe_hash()
        base = f"{REPOSITORY}-base:{digest}"
        if force or not _image_exists(client, base):
            with tempfile.TemporaryDirectory(prefix="jupyter-sessions-rootfs-") as tmp:
                tar = Path(tmp) / "rootfs.tar"
                _rootfs(tar, mirror or debian_mirror())
                log.info("sandbox image: docker import (%d MiB)", tar.stat().st_size >> 20)
                client.api.import_image_from_file(str(tar), repository=f"{REPOSITORY}-base", tag=digest)
        log.info("sandbox image: adding the sandbox user")
        dockerfile = DOCKERFILE.format(base=base).encode()
        try:
            client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True, forcerm=True,
                                network_mode="none", labels={"jupyter-sessions.recipe": digest})
        except docker.errors.BuildError as e:
            lines = "".join(str(x.get("stream", x.get("error", ""))) for x in e.build_log)
            raise RuntimeError(f"building {tag} failed: {e}\n{lines[-4000:]}") from e
        log.info("sandbox image %s built in %.1f s", tag, time.monotonic() - started)
        return tag


async def ensure_image(client) -> str:
    """Async wrapper: build (if needed) in a thread so the event loop keeps serving."""
    return await asyncio.to_thread(build_image, client)


def main(argv: list[str] | None = None) -> int:
    """`jupyter-sessions-image`: build the default sandbox image and print its tag."""
    parser = argparse.ArgumentParser(prog="jupyter-sessions-image", description=main.__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    parser.add_argument("--mirror", help="Debian mirror (default: the one apt uses)")
    parser.add_argument("--docker-url", help="engine URL (default: DOCKER_HOST or the unix socket)")
    parser.add_argument("--print-tag", action="store_true", help="only print the tag; build nothing")
    args = parser.parse_args(argv)
    if args.print_tag:
        print(default_tag())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    import docker

    try:
        client = docker.DockerClient(base_url=args.docker_url) if args.docker_url else docker.from_env()
        print(build_image(client, force=args.force, mirror=args.mirror))
    except (docker.errors.DockerException, RuntimeError) as e:
        print(f"jupyter-sessions-image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
