"""The README is the spec: every setting, account key, provider, endpoint and command is in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbridge.config import AccountConfig, BridgeConfig
from llmbridge.providers.base import PROVIDERS

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


@pytest.mark.parametrize("endpoint", ["/v1/chat/completions", "/v1/models", "/v1/messages",
                                      "/v1/messages/count_tokens", ":generateContent", ":streamGenerateContent",
                                      ":countTokens", "/v1beta/models", "/health"])
def test_every_endpoint_is_documented(endpoint):
    assert endpoint in README


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
