"""Client-facing model names and the Kiro ids they map to.

Kiro's current ids are lowercase and dotted (`claude-sonnet-4.5`); clients speak Anthropic's names
(`claude-sonnet-4-5`, `claude-sonnet-4-5-20250929`). Both spellings, and the dotted id itself, are
accepted; an unknown name maps to None (the bridge answers 404), never to a substitute model.

`MODELS` is the catalog until the account's own list arrives: the provider asks Kiro's
`ListAvailableModels`, as the Kiro IDE does, and `from_listing` turns its answer into a catalog (a
model the table knows keeps its names and aliases; a new one is named as Anthropic would name it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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

DEFAULT_CONTEXT_WINDOW = 200_000
NOT_MODELS = frozenset({"auto"})  # Kiro's "let the service choose": not a model a client can name


def _by_name(catalog: tuple[KiroModel, ...]) -> dict[str, KiroModel]:
    return {name: model for model in catalog for name in (model.name, model.kiro_id, *model.aliases)}


_BY_NAME = _by_name(MODELS)


def lookup(name: str, catalog: tuple[KiroModel, ...] | None = None) -> KiroModel | None:
    if not name:
        return None
    by_name = _BY_NAME if catalog is None or catalog is MODELS else _by_name(catalog)
    return by_name.get(name.strip().lower())


def kiro_model_id(name: str, catalog: tuple[KiroModel, ...] | None = None) -> str | None:
    model = lookup(name, catalog)
    return model.kiro_id if model else None


def context_window(kiro_id: str, catalog: tuple[KiroModel, ...] | None = None) -> int:
    model = lookup(kiro_id, catalog)
    return model.context_window if model else DEFAULT_CONTEXT_WINDOW


def client_name(kiro_id: str) -> str:
    """`claude-opus-4.7` -> `claude-opus-4-7` (Anthropic's spelling); other ids stay as they are."""
    return re.sub(r"(?<=\d)\.(?=\d)", "-", kiro_id) if kiro_id.startswith("claude-") else kiro_id


def from_listing(body: Any) -> tuple[KiroModel, ...]:
    """The catalog a `ListAvailableModels` answer describes (empty when it lists nothing usable)."""
    entries = body.get("models") if isinstance(body, dict) else None
    catalog: list[KiroModel] = []
    for entry in entries if isinstance(entries, list) else []:
        kiro_id = entry.get("modelId") if isinstance(entry, dict) else None
        if not isinstance(kiro_id, str) or not kiro_id or kiro_id.lower() in NOT_MODELS:
            continue
        limits = entry.get("tokenLimits")
        window = limits.get("maxInputTokens") if isinstance(limits, dict) else None
        known = lookup(kiro_id)
        if known is not None:
            window = window if isinstance(window, int) and window > 0 else known.context_window
            catalog.append(KiroModel(known.kiro_id, known.name, known.aliases, known.display_name, window))
            continue
        title = entry.get("modelName") if isinstance(entry.get("modelName"), str) else kiro_id
        window = window if isinstance(window, int) and window > 0 else DEFAULT_CONTEXT_WINDOW
        catalog.append(KiroModel(kiro_id.lower(), client_name(kiro_id.lower()), (), f"{title} (Kiro)", window))
    return tuple(catalog)


def model_infos(allowed: list[str] | None = None, catalog: tuple[KiroModel, ...] = MODELS) -> list[ModelInfo]:
    """The client-facing names (main name and dated aliases), restricted to `allowed` if given
    (entries may be any accepted spelling)."""
    allowed_ids = {m.kiro_id for n in allowed if (m := lookup(n, catalog))} if allowed is not None else None
    infos = []
    for model in catalog:
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
