"""Fixtures shared by the browser tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def artifacts(tmp_path) -> Path:
    """Where screenshots go: $JUPYTER_SESSIONS_UI_ARTIFACTS, else the test's tmp dir."""
    d = Path(os.environ.get("JUPYTER_SESSIONS_UI_ARTIFACTS") or tmp_path / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d
