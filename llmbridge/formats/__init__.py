"""The front doors: the client dialects the bridge serves, one module each, and their registry.

Adding a door: a module here with a `ClientFormat` subclass (its routes, parsing and rendering; see
`base.py`), and one line in `FORMATS`. Its routes, banner line and response ids follow from that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmbridge.formats.base import ClientFormat

# door name -> "module:Class", imported lazily (the formats import this package's modules). The
# first is the default door: it answers /health and paths no door claims.
FORMATS: dict[str, str] = {
    "openai": "llmbridge.formats.openai:OpenAIFormat",
    "anthropic": "llmbridge.formats.anthropic:AnthropicFormat",
    "gemini": "llmbridge.formats.gemini:GeminiFormat",
    "responses": "llmbridge.formats.responses:ResponsesFormat",
}


def format_class(name: str) -> type[ClientFormat]:
    module_name, _, class_name = FORMATS[name].partition(":")
    door: type[ClientFormat] = getattr(importlib.import_module(module_name), class_name)
    return door


def load_formats() -> list[ClientFormat]:
    """One instance of every registered door, in registry order."""
    return [format_class(name)() for name in FORMATS]
