"""What the session manager hands an agent: everything it may touch, and nothing else.

The agent never sees the server's configuration object; keys reach it only inside
`ProviderSettings`, which stays in the server process (never in the sandbox, an event or a log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..events import EventLog
from ..models import ModelInfo, SessionSpec, ThinkingSpec
from ..sandbox.base import Sandbox
from ..store import Store


@dataclass
class ProviderSettings:
    """Credentials and endpoints for the model providers (from SessionsApp config or env)."""

    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    gemini_api_key: str | None = None
    gemini_base_url: str | None = None
    replay_dir: str | None = None  # folder of recorded transcripts for the `replay` provider
    max_retries: int = 4
    stream_idle_timeout: float = 120.0  # no bytes from the model for this long = a broken stream
    retry_base_delay: float = 0.5  # backoff without retry-after: base * 2**attempt, jittered ...
    retry_max_delay: float = 8.0  # ... and capped here

    def secrets(self) -> list[str]:
        """Values that must never appear in an event, a log line or an export."""
        return [s for s in (self.anthropic_api_key, self.gemini_api_key) if s]


@dataclass
class AgentContext:
    session_id: str
    spec: SessionSpec
    model: ModelInfo
    thinking: ThinkingSpec | None
    sandbox: Sandbox
    events: EventLog  # await events.append(session_id, TYPE, data, agent_state=...) commits + broadcasts
    store: Store  # message history: append_message / replace_message / load_messages; update_session(state=...)
    providers: ProviderSettings
    #: ask the manager to stop the session (e.g. reason "timeout"); the manager calls agent.shutdown()
    request_stop: Callable[[str], Awaitable[None]] = field(default=None)  # type: ignore[assignment]
    #: the agent finished a run; the manager completes one-shot sessions here
    on_run_finished: Callable[[], Awaitable[None]] | None = None
    #: extra instructions appended to the agent's built-in system prompt (e.g. a workflow's)
    system_prompt: str | None = None
    #: the active workflow (`workflows.Workflow`: name, source, description, prompt_section()) or None;
    #: the manager sets system_prompt to its prompt_section() and updates both when one is attached
    workflow: Any = None
