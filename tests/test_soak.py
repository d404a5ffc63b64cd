"""100 replay sessions with reconnecting websocket subscribers: no errors, no gaps, no duplicates.

Bounded for CI (JUPYTER_SESSIONS_SOAK_SECONDS, default 90 s); `python benchmarks/soak.py
--seconds 600` runs it longer and prints the same figures.
"""

from __future__ import annotations

import os

from soak_harness import run_soak


def test_soak_100_sessions(tmp_path):
    seconds = float(os.environ.get("JUPYTER_SESSIONS_SOAK_SECONDS", "90"))
    stats = run_soak(tmp_path, sessions=int(os.environ.get("JUPYTER_SESSIONS_SOAK_SESSIONS", "100")),
                     seconds=seconds)
    summary = stats.summary()
    print("soak:", summary)
    assert stats.errors == [], stats.errors[:5]
    assert stats.gaps == 0 and stats.duplicates == 0
    assert stats.messages >= 100 and stats.reconnects >= 100
    # Memory stays flat: RSS may grow with the log caches, not without bound.
    assert stats.rss_end_kb < stats.rss_start_kb * 1.5 + 50_000, summary
