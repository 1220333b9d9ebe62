"""The README is the spec: every setting, account key, provider, endpoint and command is in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbridge.config import AccountConfig, BridgeConfig
from llmbridge.formats import load_formats
from llmbridge.providers.base import PROVIDERS
from llmbridge.routing import HEALTH

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("key", sorted(BridgeConfig.model_fields))
def test_every_setting_is_documented(key):
    assert f"`{key}`" in README


@pytest.mark.parametrize("key", sorted(AccountConfig.model_fields))
def test_every_account_key_is_documented(key):
    assert f"`{key}`" in README


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_every_provider_is_documented(provider):
    assert f"### `{provider}`:" in README  # a section of its own under "Providers"


def endpoints() -> list[str]:
    """The bridge's own /health and every path template a registered door serves."""
    paths = {HEALTH.path} | {e.path for fmt in load_formats() for e in fmt.endpoints}
    return sorted(paths)


@pytest.mark.parametrize("path", endpoints())
def test_every_endpoint_is_documented(path):
    # `/v1beta/models/{model}:countTokens` may be written as the model path and `:countTokens` beside it
    stem, colon, method = path.rpartition(":") if "}:" in path else (path, "", "")
    assert path in README or (f"`{stem}`" in README or f"{stem}:" in README) and f"{colon}{method}" in README


def test_every_cli_command_is_documented():
    click = pytest.importorskip("click")
    from llmbridge.cli import main

    def walk(group, prefix):
        for name, command in group.commands.items():
            yield f"{prefix} {name}"
            if isinstance(command, click.Group):
                yield from walk(command, f"{prefix} {name}")

    for command in walk(main, "llmbridge"):
        assert command in README, command


def test_the_two_commands_exist():
    root = Path(__file__).resolve().parents[1]
    for script in ("scripts/serve", "scripts/test"):
        assert script in README and (root / script).stat().st_mode & 0o111


def test_code_a_reader_may_paste_is_plain_ascii():
    """A key placeholder such as `sk-llmbridge-…` pasted into a client fails inside the HTTP library
    (headers are ASCII) instead of reaching the bridge's 401: code blocks hold no such characters."""
    blocks = README.split("```")[1::2]
    for block in blocks:
        for line in block.splitlines():
            if any(word in line for word in ("api_key", "Bearer", "API_KEY", "--set")):
                assert line.isascii(), line
