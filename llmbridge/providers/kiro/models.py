"""Client-facing model names and the Kiro ids they map to.

Kiro's current ids are lowercase and dotted (`claude-sonnet-4.5`); clients speak Anthropic's names
(`claude-sonnet-4-5`, `claude-sonnet-4-5-20250929`). Both spellings, and the dotted id itself, are
accepted; an unknown name maps to None (the bridge answers 404), never to a substitute model.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmbridge.canonical import ModelInfo


@dataclass(frozen=True)
class KiroModel:
    kiro_id: str  # what goes into userInputMessage.modelId
    name: str  # the main client-facing name
    aliases: tuple[str, ...]  # further client names (dated Anthropic ids, ...)
    display_name: str
    context_window: int


MODELS: tuple[KiroModel, ...] = (
    KiroModel(
        "claude-sonnet-4.5",
        "claude-sonnet-4-5",
        ("claude-sonnet-4-5-20250929",),
        "Claude Sonnet 4.5 (Kiro)",
        200_000,
    ),
    KiroModel(
        "claude-haiku-4.5",
        "claude-haiku-4-5",
        ("claude-haiku-4-5-20251001",),
        "Claude Haiku 4.5 (Kiro)",
        200_000,
    ),
    KiroModel("claude-opus-4.5", "claude-opus-4-5", ("claude-opus-4-5-20251101",), "Claude Opus 4.5 (Kiro)", 200_000),
    KiroModel(
        "claude-sonnet-4",
        "claude-sonnet-4",
        ("claude-sonnet-4-20250514", "claude-sonnet-4-0"),
        "Claude Sonnet 4 (Kiro)",
        200_000,
    ),
    KiroModel("claude-sonnet-4.6", "claude-sonnet-4-6", (), "Claude Sonnet 4.6 (Kiro)", 200_000),
    KiroModel("claude-opus-4.6", "claude-opus-4-6", (), "Claude Opus 4.6 (Kiro)", 1_000_000),
)

_BY_NAME: dict[str, KiroModel] = {}
for _m in MODELS:
    for _n in (_m.name, _m.kiro_id, *_m.aliases):
        _BY_NAME[_n] = _m

DEFAULT_CONTEXT_WINDOW = 200_000


def lookup(name: str) -> KiroModel | None:
    return _BY_NAME.get(name.strip().lower()) if name else None


def kiro_model_id(name: str) -> str | None:
    model = lookup(name)
    return model.kiro_id if model else None


def context_window(kiro_id: str) -> int:
    model = lookup(kiro_id)
    return model.context_window if model else DEFAULT_CONTEXT_WINDOW


def model_infos(allowed: list[str] | None = None) -> list[ModelInfo]:
    """The client-facing names (main name and dated aliases), restricted to `allowed` if given
    (entries may be any accepted spelling)."""
    allowed_ids = {m.kiro_id for n in allowed if (m := lookup(n))} if allowed is not None else None
    infos = []
    for model in MODELS:
        if allowed_ids is not None and model.kiro_id not in allowed_ids:
            continue
        for name in (model.name, *model.aliases):
            infos.append(
                ModelInfo(
                    id=name,
                    provider="kiro",
                    display_name=model.display_name,
                    context_window=model.context_window,
                )
            )
    return infos
