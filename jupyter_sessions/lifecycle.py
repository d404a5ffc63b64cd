"""Which operation is allowed in which phase: one table, used by the manager and the docs.

The README's operation x phase table is generated from `ALLOWED` (`python -m
jupyter_sessions.lifecycle`) and a test keeps the two equal.
"""

from __future__ import annotations

from .models import Phase

P = Phase
ACTIVE = {P.pending, P.creating, P.running}
RESTING = {P.stopped, P.completed, P.failed}
EVERY = set(Phase)

#: operation -> phases in which it is allowed (anything else is a 409 with `why`).
ALLOWED: dict[str, set[Phase]] = {
    "message": ACTIVE,
    "answer": {P.running},
    "add_repo": ACTIVE,
    "stop": ACTIVE,
    "resume": RESTING,
    "clone": EVERY,
    "rename": EVERY,
    "delete": EVERY,
    "export": EVERY,
}

_HINT = {
    "message": "resume it before sending messages",
    "answer": "resume it to answer the question",
    "add_repo": "resume it to attach repositories",
    "stop": "it is not running",
    "resume": "only Stopped, Completed or Failed sessions can be resumed",
}


class Conflict(RuntimeError):
    """The operation does not fit the session's phase (HTTP 409)."""


def check(operation: str, phase: str | Phase) -> None:
    """Raise Conflict with an actionable message when `operation` is not allowed in `phase`."""
    phase = Phase(phase)
    if phase not in ALLOWED[operation]:
        raise Conflict(f"cannot {operation.replace('_', ' ')}: the session is {phase.value}; {_HINT[operation]}")


def markdown_table() -> str:
    phases = list(Phase)
    head = "| operation | " + " | ".join(p.value for p in phases) + " |"
    rule = "|---" * (len(phases) + 1) + "|"
    rows = [
        f"| {op} | " + " | ".join("allowed" if p in ok else "409" for p in phases) + " |"
        for op, ok in ALLOWED.items()
    ]
    return "\n".join([head, rule, *rows])


if __name__ == "__main__":
    print(markdown_table())
