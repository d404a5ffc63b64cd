"""Export speed: a long session (default 1000 turns) to Markdown and to PDF.

Ours: event log -> fold -> transcript notebook -> nbconvert (MarkdownExporter / Chromium WebPDF).
Baseline, measured in the same run: nbconvert converting an equivalent plain notebook (the same
markdown cell texts, built directly with nbformat) with the same exporters. Prints seconds for
both and the ratio ours/baseline, so the cost of our layer over nbconvert itself is visible.

    python benchmarks/bench_export.py [--turns 1000] [--no-pdf] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from nbformat.v4 import new_markdown_cell, new_notebook

from jupyter_sessions.export.exporters import find_chromium, render
from jupyter_sessions.export.notebook import NotebookOptions, SessionFacts, build_notebook


def session_events(turns: int) -> list[dict]:
    """A user message and an agent turn (text, one tool call with a 30-line result, a closing text)."""
    evs: list[dict] = []
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def add(t: str, **d) -> None:
        evs.append({"seq": len(evs) + 1, "type": t, "ts": (t0 + timedelta(seconds=len(evs))).isoformat(), "data": d})

    add("PHASE_CHANGED", phase="Running", reason="sandbox ready")
    for i in range(turns):
        add("USER_MESSAGE", message_id=f"m-{i}", text=f"Turn {i}: please check file_{i}.py and fix the bug.", status="queued")
        add("RUN_STARTED", threadId="s", runId=f"run-{i}")
        add("MESSAGE_DELIVERED", message_id=f"m-{i}")
        add("TEXT_MESSAGE_START", messageId=f"a-{i}", role="assistant")
        for chunk in ("I'll look at ", f"`file_{i}.py` ", "first."):
            add("TEXT_MESSAGE_CONTENT", messageId=f"a-{i}", delta=chunk)
        add("TEXT_MESSAGE_END", messageId=f"a-{i}")
        add("TOOL_CALL_START", toolCallId=f"t-{i}", toolCallName="read_file", parentMessageId=f"a-{i}")
        add("TOOL_CALL_ARGS", toolCallId=f"t-{i}", delta=json.dumps({"path": f"file_{i}.py"}))
        add("TOOL_CALL_END", toolCallId=f"t-{i}")
        add("TOOL_CALL_RESULT", toolCallId=f"t-{i}", messageId=f"r-{i}", isError=False,
            content="".join(f"{n:4d}  def f{n}(x): return x + {n}\n" for n in range(30)))
        add("TEXT_MESSAGE_START", messageId=f"b-{i}", role="assistant")
        add("TEXT_MESSAGE_CONTENT", messageId=f"b-{i}", delta=f"Fixed the off-by-one in `file_{i}.py`.")
        add("TEXT_MESSAGE_END", messageId=f"b-{i}")
        add("RUN_FINISHED", threadId="s", runId=f"run-{i}")
    return evs


FACTS = dict(id="s-bench", display_name="Benchmark session", model="claude-sonnet-4-5", phase="Running",
             created=datetime(2025, 1, 1, tzinfo=timezone.utc), owner="bench", workflow=None)
EXPORTED = datetime(2025, 1, 2, tzinfo=timezone.utc)


def ours(events, fmt: str) -> bytes:
    nb = build_notebook(events, SessionFacts(**FACTS), NotebookOptions(open_details=fmt == "pdf"), EXPORTED)
    return render(nb, fmt)[0]


def plain_notebook(events, fmt: str):
    """The same text as plain markdown cells: what a user would hand nbconvert themselves."""
    nb = build_notebook(events, SessionFacts(**FACTS), NotebookOptions(open_details=fmt == "pdf"), EXPORTED)
    return new_notebook(cells=[new_markdown_cell(c.source) for c in nb.cells])


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def pdf_pages(data: bytes) -> int:
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(data)
        f.flush()
        info = subprocess.run(["pdfinfo", f.name], capture_output=True, text=True).stdout
    return next((int(ln.split()[-1]) for ln in info.splitlines() if ln.startswith("Pages:")), -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per Markdown measurement (median)")
    ap.add_argument("--no-pdf", action="store_true")
    args = ap.parse_args()

    events = session_events(args.turns)
    print(f"session: {args.turns} turns, {len(events)} events")

    t_ours, md = timed(lambda: ours(events, "markdown"), args.repeat)
    baseline_nb = plain_notebook(events, "markdown")
    t_base, md_base = timed(lambda: render(baseline_nb, "markdown")[0], args.repeat)
    assert md == md_base, "ours and the baseline must produce the same Markdown"
    print(f"markdown: ours {t_ours:.3f} s, baseline nbconvert {t_base:.3f} s, ratio {t_ours / t_base:.2f} "
          f"({len(md) / 1e6:.1f} MB, {len(baseline_nb.cells)} cells)")

    if args.no_pdf:
        return
    try:
        find_chromium()
    except Exception as e:  # noqa: BLE001
        print(f"pdf: skipped ({e})")
        return
    t_ours_pdf, pdf = timed(lambda: ours(events, "pdf"), 1)
    baseline_pdf_nb = plain_notebook(events, "pdf")
    t_base_pdf, pdf_base = timed(lambda: render(baseline_pdf_nb, "pdf")[0], 1)
    assert pdf_pages(pdf) == pdf_pages(pdf_base), "ours and the baseline must print the same pages"
    print(f"pdf: ours {t_ours_pdf:.2f} s, baseline nbconvert {t_base_pdf:.2f} s, ratio {t_ours_pdf / t_base_pdf:.2f} "
          f"({len(pdf) / 1e6:.1f} MB, {pdf_pages(pdf)} pages; baseline {pdf_pages(pdf_base)} pages)")


if __name__ == "__main__":
    main()
