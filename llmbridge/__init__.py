"""llmbridge: one local endpoint for the OpenAI, Anthropic and Gemini APIs, answered from
coding-assistant backends and API-key providers (see README.md)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llmbridge")
except PackageNotFoundError:  # running from a checkout without installing it
    __version__ = "0+unknown"
