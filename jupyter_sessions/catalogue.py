"""The model catalogue: which models exist, their provider limits, and spec checks that need them.

Admins add, hide or re-point models through `SessionsApp.models` (traitlets); this module holds the
built-in seven and the rules a provider imposes on a session's settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .models import ModelInfo, SessionSpec, ThinkingSpec

BUILTIN_MODELS: list[ModelInfo] = [
    ModelInfo(id="claude-sonnet-4-5", label="Claude Sonnet 4.5", provider="anthropic", default=True,
              max_temperature=1.0, max_output_tokens=64000),
    ModelInfo(id="claude-opus-4-5", label="Claude Opus 4.5", provider="anthropic",
              max_temperature=1.0, max_output_tokens=64000),
    ModelInfo(id="claude-haiku-4-5", label="Claude Haiku 4.5", provider="anthropic",
              max_temperature=1.0, max_output_tokens=64000),
    ModelInfo(id="gemini-2.5-flash", label="Gemini 2.5 Flash", provider="gemini",
              max_temperature=2.0, max_output_tokens=65536, thinking_default=True),
    ModelInfo(id="claude-opus-4-6", label="Claude Opus 4.6", provider="anthropic", gated=True,
              max_temperature=1.0, max_output_tokens=128000),
    ModelInfo(id="claude-sonnet-4-6", label="Claude Sonnet 4.6", provider="anthropic", gated=True,
              max_temperature=1.0, max_output_tokens=64000),
    ModelInfo(id="gemini-2.5-pro", label="Gemini 2.5 Pro", provider="gemini", gated=True,
              max_temperature=2.0, max_output_tokens=65536, thinking_default=True),
]


class SpecError(ValueError):
    """A setting the chosen model cannot honour; `field` names it for the 422 body."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status


class Catalogue:
    """The models a server offers, and which of them a workspace may use."""

    def __init__(self, models: list[ModelInfo], default_model: str,
                 endpoints: dict[str, dict[str, str]] | None = None):
        self._models = {m.id: m for m in models}
        self.default_model = default_model
        #: model id -> {"base_url", "api_key"}: admin re-pointing (e.g. a proxy); never sent to clients
        self.endpoints = {k: dict(v) for k, v in (endpoints or {}).items()}

    def provider_settings(self, model_id: str, base: Any) -> Any:
        """The agent's ProviderSettings for this model: `base` with the model's own base URL / key, if any."""
        ep = self.endpoints.get(model_id)
        info = self.get(model_id)
        if not ep or info is None or info.provider not in ("anthropic", "gemini"):
            return base
        changes = {f"{info.provider}_{k}": v for k, v in ep.items() if k in ("base_url", "api_key") and v}
        return dataclasses.replace(base, **changes) if changes else base

    def get(self, model_id: str) -> ModelInfo | None:
        """A model by id; `replay:<name>` names a recorded transcript of the replay model."""
        if model_id not in self._models and model_id.startswith("replay:") and "replay" in self._models:
            return self._models["replay"].model_copy(update={"id": model_id, "label": f"Replay: {model_id[7:]}"})
        return self._models.get(model_id)

    def visible(self, enabled_features: set[str]) -> list[ModelInfo]:
        """Models a workspace with these feature flags may use (gated ones need `model.<id>`)."""
        return [m for m in self._models.values() if not m.gated or f"model.{m.id}" in enabled_features]

    def effective_thinking(self, spec: SessionSpec) -> ThinkingSpec | None:
        """The thinking setting actually sent: the spec's, else the model's default."""
        info = self.get(spec.model)
        if spec.thinking is not None:
            return spec.thinking if spec.thinking.enabled else None
        if info and info.thinking_default:
            return ThinkingSpec(enabled=True, budget_tokens=min(2048, max(1, spec.max_tokens - 1)))
        return None

    def validate_spec(self, spec: SessionSpec, enabled_features: set[str]) -> None:
        """Raise SpecError for a setting the model or the workspace does not allow."""
        info = self.get(spec.model)
        if info is None:
            known = ", ".join(sorted(self._models))
            raise SpecError("model", f"unknown model {spec.model!r}; choose one of: {known}")
        if info.gated and f"model.{info.id}" not in enabled_features:
            raise SpecError("model", f"{info.label} is not enabled for workspace {spec.workspace!r}", status=403)
        if spec.temperature > info.max_temperature:
            raise SpecError(
                "temperature",
                f"{info.label} accepts temperature 0 to {info.max_temperature:g}; got {spec.temperature:g}",
            )
        if spec.max_tokens > info.max_output_tokens:
            raise SpecError(
                "max_tokens", f"{info.label} writes at most {info.max_output_tokens} tokens per response"
            )
        thinking = self.effective_thinking(spec)
        if thinking is None and info.id == "gemini-2.5-pro":
            raise SpecError("thinking.enabled", "Gemini 2.5 Pro always thinks; leave thinking on (or pick Gemini 2.5 Flash)")
        if thinking and info.provider == "anthropic":
            if thinking.budget_tokens < 1024:
                raise SpecError("thinking.budget_tokens", "Claude needs a thinking budget of at least 1024 tokens")
            if thinking.budget_tokens >= spec.max_tokens:
                raise SpecError("thinking.budget_tokens", "the thinking budget must be smaller than max_tokens")
            if spec.temperature != 1:
                raise SpecError(
                    "temperature",
                    "Claude allows extended thinking only at temperature 1; set temperature to 1 or turn thinking off",
                )
