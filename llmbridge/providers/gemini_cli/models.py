"""The models Code Assist serves.

The list follows the official Gemini CLI (`packages/core/src/config/models.ts`); aliases such as
`pro` or `auto` are resolved client-side by the CLI and are not names the server knows, so they are
not offered here. How each model thinks is in `llmbridge.providers.google.models`.
"""

from __future__ import annotations

from llmbridge.canonical import ModelInfo
from llmbridge.providers.google.models import ModelSpec

PROVIDER = "gemini-cli"

KNOWN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("gemini-2.5-pro"),
    ModelSpec("gemini-2.5-flash"),
    ModelSpec("gemini-3-pro-preview"),
    ModelSpec("gemini-3.1-pro-preview"),
    ModelSpec("gemini-3.1-pro-preview-customtools"),
    ModelSpec("gemini-3-flash-preview"),
    ModelSpec("gemini-3.5-flash"),
    ModelSpec("gemini-3-flash"),
    ModelSpec("gemini-3.1-flash-lite"),
    ModelSpec("gemini-3.5-flash-lite"),
    ModelSpec("gemini-3.8-flash"),
    ModelSpec("gemma-4-31b-it", context_window=None, max_output_tokens=None),
    ModelSpec("gemma-4-26b-a4b-it", context_window=None, max_output_tokens=None),
)
_BY_ID = {spec.id: spec for spec in KNOWN_MODELS}

# The CLI renames some public names before it calls Code Assist (CCPA_AI_MODEL_MAPPINGS). In API-key
# mode it uses the latest flash (3.8) and flash-lite (3.5, its auto-routing classifier); in Code Assist
# mode the same roles are 3.5-flash (sent as 3-flash) and 3.1-flash-lite, so those names go there.
UPSTREAM_NAMES = {
    "gemini-3.5-flash": "gemini-3-flash",
    "gemini-3.8-flash": "gemini-3-flash",
    "gemini-3.5-flash-lite": "gemini-3.1-flash-lite",
}


def model_list(restrict: list[str] | None) -> list[ModelInfo]:
    """The client-visible models: the official list, or exactly `restrict` when the account sets it
    (so an account can also name a model released after this list was written)."""
    names = restrict if restrict is not None else [spec.id for spec in KNOWN_MODELS]
    return [_info(name) for name in names]


def _info(name: str) -> ModelInfo:
    spec = _BY_ID.get(name, ModelSpec(name, None, None))
    return ModelInfo(
        id=name,
        provider=PROVIDER,
        display_name=name,
        context_window=spec.context_window,
        max_output_tokens=spec.max_output_tokens,
    )


def upstream_name(model: str) -> str:
    """The id Code Assist expects for a client model name."""
    bare = model.removeprefix("models/")
    return UPSTREAM_NAMES.get(bare, bare)
