"""Soak: N replay sessions for S seconds; prints errors, gaps, p50/p99 event latency, RSS start/end.

    python benchmarks/soak.py [--sessions 100] [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from soak_harness import run_soak  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--seconds", type=float, default=600)
    a = p.parse_args()
    print(json.dumps(run_soak(Path(tempfile.mkdtemp()), a.sessions, a.seconds).summary(), indent=2))
