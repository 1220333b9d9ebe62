"""Thinking-block signatures the bridge makes for Anthropic clients.

Anthropic signs every thinking block, and its clients send the block back, signature included, on
the next turn. A Gemini answer has no such block: its `thoughtSignature` rides on a thought part, on
the first functionCall part, or on a text part. So the Anthropic door puts a Gemini signature into a
thinking block's `signature`, marked so that it can be told from Anthropic's own signatures and put
back on the part Gemini gave it on:

    llmbridge:gemini:thought:<sig>   the thought part the thinking block itself becomes
    llmbridge:gemini:call:<sig>      the first functionCall part of the assistant turn
    llmbridge:gemini:text:<sig>      the first text part of the assistant turn

A thinking block with no signature at all (Gemini often signs nothing, OpenAI-compatible reasoning
never does) gets `llmbridge:unsigned`, as Anthropic's format has no unsigned thinking blocks.
Parsed back, a marked signature is never a `ReasoningPart.signature` (the Anthropic-family field that
Anthropic verifies): a Gemini signature goes to the `provider_metadata` of its part
(`canonical.with_gemini_signature`), the placeholder goes nowhere.
"""

from __future__ import annotations

from typing import Literal

PREFIX = "llmbridge:"
GEMINI_PREFIX = PREFIX + "gemini:"
UNSIGNED = PREFIX + "unsigned"
Placement = Literal["thought", "call", "text"]
PLACEMENTS: tuple[Placement, ...] = ("thought", "call", "text")


def mark_gemini(placement: Placement, signature: str) -> str:
    return f"{GEMINI_PREFIX}{placement}:{signature}"


def is_bridge_made(signature: str) -> bool:
    return signature.startswith(PREFIX)


def read_gemini(signature: str) -> tuple[Placement, str] | None:
    """(placement, Gemini signature) of a marked signature; None for anything else."""
    if not signature.startswith(GEMINI_PREFIX):
        return None
    placement, sep, value = signature[len(GEMINI_PREFIX) :].partition(":")
    if not sep or not value or placement not in PLACEMENTS:
        return None
    return placement, value
