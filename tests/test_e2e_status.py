"""The pool as a user sees it, through the real bridge: `GET /llmbridge/status`, `llmbridge accounts`,
the account and attempt headers, and upstream account failures reported as 502/503, never 401/403."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, Reply, text_reply

ROOT = Path(__file__).resolve().parents[1]


def account(name: str, fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "api_key": fake.api_key, "base_url": fake.base_url,
            "models": ["gpt-test"], **extra}  # fmt: skip


def refused(body: dict[str, Any]) -> Reply:
    return Reply(status=401, error_body={"error": {"message": "Incorrect API key provided", "type": "invalid"}})


@pytest.fixture
def bridge(tmp_path: Path):
    with FakeOpenAI() as bad, FakeOpenAI() as good:
        bad.responder = refused
        good.default = text_reply("from the good account")
        config = write_config(
            tmp_path / "bridge.toml",
            [account("bad", bad), account("good", good, daily_limit=100)],
            strategy="fill-first",
            record=False,
        )
        with BridgeProcess(tmp_path, config) as process:
            process.config_path = config  # type: ignore[attr-defined]
            yield process


def client(bridge: BridgeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


def test_failover_headers_and_status(bridge: BridgeProcess) -> None:
    raw = client(bridge).chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "from the good account"
    assert raw.headers["x-llmbridge-account"] == "good" and raw.headers["x-llmbridge-attempts"] == "2"

    assert httpx.get(bridge.base_url + "/llmbridge/status").status_code == 401  # needs a client key
    status = httpx.get(bridge.base_url + "/llmbridge/status", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert status.status_code == 200
    by_name = {a["name"]: a for a in status.json()["accounts"]}
    assert by_name["bad"]["state"] == "dead" and "api_key" in by_name["bad"]["reason"]
    assert by_name["good"]["state"] == "healthy" and by_name["good"]["reason"] is None
    assert by_name["good"]["requests_today"] == 1 and by_name["good"]["models"] == ["gpt-test", "gpt-test"][:1]
    assert by_name["good"]["pacing"] == {"requests_per_minute": None, "max_concurrent": None, "daily_limit": 100}
    assert CLIENT_KEY not in status.text and "sk-" not in status.text.replace("sk-client", "")


def test_llmbridge_accounts_prints_the_table(bridge: BridgeProcess) -> None:
    client(bridge).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "llmbridge"), "--config", str(bridge.config_path),  # type: ignore[attr-defined]
         "accounts", "--url", bridge.base_url],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ACCOUNT", "PROVIDER", "STATE", "IN", "FLIGHT", "TODAY", "PINNED", "UNTIL"]
    assert lines[1].split()[:3] == ["bad", "openai", "dead"] and "api_key" in lines[2]
    assert lines[3].split()[:3] == ["good", "openai", "healthy"]


def test_a_refused_upstream_key_is_503_not_403_and_names_the_account(tmp_path: Path) -> None:
    with FakeOpenAI() as bad:
        bad.responder = refused
        config = write_config(tmp_path / "bridge.toml", [account("only", bad)], record=False)
        with BridgeProcess(tmp_path, config) as bridge:
            with pytest.raises(openai.APIStatusError) as caught:
                client(bridge).chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 503, caught.value
    assert "only: dead" in str(caught.value) and "api_key" in str(caught.value)
    assert caught.value.response.headers["x-llmbridge-account"] == "only"
