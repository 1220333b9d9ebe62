"""Config reload without a restart, through the real bridge: accounts added and removed, an invalid
edit reported with the old config kept, client keys and prompt rules changed, requests in flight
finishing on the account they started with."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, text_reply


def account(name: str, fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "api_key": fake.api_key, "base_url": fake.base_url,
            "models": ["gpt-test"], **extra}  # fmt: skip


def ask(bridge: BridgeProcess, key: str = CLIENT_KEY) -> tuple[str | None, str]:
    client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=key, max_retries=0, timeout=20)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    return raw.parse().choices[0].message.content, raw.headers.get("x-llmbridge-account", "")


def wait_for(bridge: BridgeProcess, text: str, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while text not in bridge.output():
        assert time.time() < deadline, f"{text!r} not in the bridge's output:\n{bridge.output()[-2000:]}"
        time.sleep(0.05)


def rewrite(path: Path, accounts: list[dict[str, Any]], **settings: Any) -> None:
    time.sleep(0.01)  # a distinct mtime even on coarse clocks (the size usually differs too)
    write_config(path, accounts, record=False, **settings)


def test_accounts_keys_and_rules_reload_and_a_bad_edit_keeps_the_old_config(tmp_path: Path) -> None:
    with FakeOpenAI() as first, FakeOpenAI() as second:
        first.default = text_reply("from first", pieces=20, delay=0.1)  # 2 s: in flight across the reload
        second.default = text_reply("from second")
        config = tmp_path / "bridge.toml"
        write_config(config, [account("first", first)], record=False)
        with BridgeProcess(tmp_path, config) as bridge:
            slow: dict[str, Any] = {}
            in_flight = threading.Thread(target=lambda: slow.update(answer=ask(bridge)))
            in_flight.start()
            time.sleep(0.3)

            rewrite(config, [account("second", second)], api_keys=[CLIENT_KEY, "sk-new-key-0123456789"])
            wait_for(bridge, "accounts added or changed: second; accounts removed: first")
            assert ask(bridge) == ("from second", "second")
            assert ask(bridge, "sk-new-key-0123456789")[0] == "from second"  # a new client key works at once
            in_flight.join(10)
            assert slow["answer"] == ("from first", "first")  # finished on the account it started with

            rewrite(config, [account("second", second, provider_typo="x")])
            wait_for(bridge, "not reloaded")
            assert "the previous config stays in force" in bridge.output()
            assert ask(bridge, "sk-new-key-0123456789")[0] == "from second"  # the old config still rules

            rewrite(
                config,
                [account("second", second)],
                extra_toml='[[system_prompt]]\nmode = "overwrite"\ntext = "Reloaded rules."\n',
            )
            wait_for(bridge, "config " + str(config) + " reloaded: nothing that matters changed")
            ask(bridge)
            assert second.requests[-1]["messages"][0] == {"role": "system", "content": "Reloaded rules."}
            with pytest.raises(openai.AuthenticationError):
                ask(bridge, "sk-new-key-0123456789")  # gone from api_keys: refused now
            status = httpx.get(bridge.base_url + "/llmbridge/status", headers={"authorization": f"Bearer {CLIENT_KEY}"})
            assert [a["name"] for a in status.json()["accounts"]] == ["second"]
