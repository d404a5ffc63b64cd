"""Model providers: `anthropic` (default), `gemini` (google-genai, optional) and `replay` (recorded)."""

from __future__ import annotations

from ..context import AgentContext
from .base import Provider, ProviderError


def make_provider(ctx: AgentContext) -> Provider:
    """The provider for the session's model; ProviderError when it cannot be used here."""
    kind = ctx.model.provider
    if kind == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider(ctx)
    if kind == "gemini":
        from .gemini import GeminiProvider

        return GeminiProvider(ctx)
    if kind == "replay":
        from .replay import ReplayProvider

        return ReplayProvider(ctx)
    raise ProviderError(f"unknown model provider {kind!r}", retryable=False)


__all__ = ["make_provider", "Provider", "ProviderError"]
