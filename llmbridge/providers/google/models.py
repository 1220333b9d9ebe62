"""What the Gemini models have in common, whichever Google API serves them: their limits, and how each
family thinks (Gemini 3 in levels, Gemini 2.5 in token budgets, Gemma not at all)."""

from __future__ import annotations

from dataclasses import dataclass

CONTEXT_WINDOW = 1_048_576  # input tokens, every Gemini 2.5 / 3 model
MAX_OUTPUT_TOKENS = 65_536


@dataclass(frozen=True)
class ModelSpec:
    id: str
    context_window: int | None = CONTEXT_WINDOW
    max_output_tokens: int | None = MAX_OUTPUT_TOKENS


def is_gemini3(model: str) -> bool:
    """Gemini 3 models think in levels and demand thought signatures on function calls."""
    return model.startswith("gemini-3")


def is_gemma(model: str) -> bool:
    return model.startswith("gemma-")


@dataclass(frozen=True)
class BudgetRange:
    """The thinkingBudget a Gemini 2.5 model accepts; `can_disable` when 0 turns thinking off."""

    low: int
    high: int
    can_disable: bool


def budget_range(model: str) -> BudgetRange:
    """Documented Gemini 2.5 limits: Pro always thinks (128..32768); Flash (-Lite) may switch off."""
    if "pro" in model:
        return BudgetRange(128, 32_768, can_disable=False)
    if "lite" in model:
        return BudgetRange(512, 24_576, can_disable=True)
    return BudgetRange(1, 24_576, can_disable=True)
