"""The extension-template checks, from a built wheel on a machine without Node.

Builds the wheel from this tree (the JupyterLab extension must already be built: hatch-jupyter-builder
then skips the npm step, exactly as a wheel built from an sdist does), installs it into a private
prefix, and runs, with no `node` on PATH: `jupyter labextension list` and `jupyter server extension
list` (both must say OK for jupyter-sessions) and `python -m jupyterlab.browser_check
--no-browser-test` (its browser part downloads a browser, which these machines cannot; the side
panel's real browser test is test_labpanel.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "jupyter_sessions" / "labextension"
EXT = "share/jupyter/labextensions/jupyter-sessions"

pytestmark = [
    pytest.mark.skipif(not (BUILT / "static" / "style.js").is_file(),
                       reason="the JupyterLab extension is not built (cd labextension && jlpm install && jlpm build)"),
    pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="jupyterlab is not installed"),
]

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build_wheel(out: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)]
    if importlib.util.find_spec("hatch_jupyter_builder") and importlib.util.find_spec("hatchling"):
        cmd.insert(4, "--no-build-isolation")  # the build requirements are here already: no download
    subprocess.run(cmd, check=True, timeout=600)
    wheels = list(out.glob("jupyter_sessions-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_the_extension_and_lists_ok_without_node(tmp_path):
    wheel = build_wheel(tmp_path / "dist")

    # what the wheel carries
    names = zipfile.ZipFile(wheel).namelist()
    data = next(n.split("/data/")[0] for n in names if ".data/data/" in n) + "/data/"
    for f in ("package.json", "install.json", "static/style.js", "schemas/jupyter-sessions/plugin.json"):
        assert data + f"{EXT}/{f}" in names, f
    assert data + "etc/jupyter/jupyter_server_config.d/jupyter_sessions.json" in names
    built = json.loads(zipfile.ZipFile(wheel).read(data + f"{EXT}/package.json"))
    assert data + f"{EXT}/{built['jupyterlab']['_build']['load']}" in names  # the remoteEntry it loads
    assert not [n for n in names if n.startswith("labextension/") or "node_modules" in n]

    # install it into a fresh virtualenv (its own sys.prefix: this tree's editable install and its
    # labextension copy are out of sight) and look at it with no Node anywhere on PATH
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    # --ignore-installed: without it pip "upgrades" by uninstalling the environment's own (editable)
    # jupyter-sessions first, and every later test whose kernel imports it fails.
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", "--prefix",
                    str(venv), str(wheel)],
                   check=True, timeout=300)
    site = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    bindir = venv / "bin"  # python and the activate scripts only: no node, no npm, no jlpm
    env = {
        "HOME": str(tmp_path / "home"),
        "PATH": str(bindir),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    assert shutil.which("node", path=env["PATH"]) is None

    def run(*args: str, timeout: int = 120) -> str:
        r = subprocess.run([str(bindir / "python"), *args], check=False, env=env, capture_output=True, text=True,
                           timeout=timeout, cwd=tmp_path)
        out = ANSI.sub("", r.stdout + r.stderr)
        assert r.returncode == 0, out
        return out

    # the wheel's copy of the package is the one imported
    where = run("-c", "import jupyter_sessions; print(jupyter_sessions.__file__)")
    assert where.strip().startswith(site), where

    labext = run("-m", "jupyterlab.labextensions", "list")
    section = labext.split(str(venv / "share" / "jupyter" / "labextensions"), 1)
    assert len(section) == 2, labext
    assert re.search(r"jupyter-sessions v\S+ enabled OK \(python, jupyter-sessions\)", section[1]), labext

    serverext = run("-m", "jupyter_server.extension.serverextension", "list")
    assert re.search(r"jupyter_sessions enabled", serverext), serverext
    assert re.search(r"jupyter_sessions \S+ OK", serverext), serverext
    assert str(venv / "etc" / "jupyter") in serverext, serverext

    check = run("-m", "jupyterlab.browser_check", "--no-browser-test", "--allow-root", timeout=180)
    assert "Exiting normally" in check or "Test Complete" in check, check[-3000:]
