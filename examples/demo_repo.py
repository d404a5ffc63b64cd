"""A tiny git repository with a real bug, for the example notebooks (no network needed).

`stats.mean([])` raises ZeroDivisionError although its docstring promises 0.0.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

STATS = '''def mean(values):
    """Arithmetic mean of a list of numbers; 0.0 for an empty list."""
    return sum(values) / len(values)
'''

TESTS = '''import unittest

from stats import mean


class TestMean(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([1, 2, 3]), 2)


if __name__ == "__main__":
    unittest.main()
'''


def make_demo_repo(path: str | os.PathLike = "demo-repo") -> Path:
    """Create (or re-create) the demo repository at `path`; returns its absolute path."""
    repo = Path(path).resolve()
    if (repo / ".git").exists():
        return repo
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "stats.py").write_text(STATS)
    (repo / "test_stats.py").write_text(TESTS)
    (repo / "README.md").write_text("# demo-repo\n\nRun the tests with `python3 -m unittest -v`.\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "Demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid",
           "GIT_COMMITTER_NAME": "Demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid"}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "stats: mean()"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)
    return repo
