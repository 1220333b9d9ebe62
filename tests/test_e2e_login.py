"""End to end: `llmbridge login` run as a user runs it, then the account it added serves a request
through the real bridge (mitmdump) against the strict fakes - including a token refresh, which proves
the saved refresh token and the client it belongs to are right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from llmbridge.config import load_config
from tests.bridge_process import CLIENT_KEY, LLMBRIDGE, ROOT, BridgeProcess, write_config
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.kiro import FakeKiro, Text
from tests.fakes.oauth import FakeGoogleOAuth

FAKE_BROWSER = f"{sys.executable} {ROOT / 'tests' / 'fakes' / 'browser.py'} %s"


def run_login(workdir: Path, config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`llmbridge --config CONFIG login ...` with the same home folders BridgeProcess gives the bridge."""
    environment = dict(
        os.environ,
        HOME=str(workdir / "userhome"),
        LLMBRIDGE_HOME=str(workdir / "home"),
        NO_PROXY="127.0.0.1,localhost",
        **env,
    )
    return subprocess.run(
        [str(LLMBRIDGE), "--config", str(config), "login", *args],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def client(bridge: BridgeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)


@pytest.fixture
def config(tmp_path):
    (tmp_path / "userhome").mkdir()
    return write_config(tmp_path / "bridge.toml", [], record=False)


def test_a_gemini_cli_login_serves_requests_and_refreshes(tmp_path, config):
    with FakeCodeAssist(onboarded=False, onboard_polls=0) as code_assist, FakeGoogleOAuth(code_assist) as google:
        done = run_login(
            tmp_path,
            config,
            "gemini-cli",
            "--auth-url",
            google.auth_url,
            "--token-url",
            google.token_url,
            "--base-url",
            code_assist.base_url,
            BROWSER=FAKE_BROWSER,
        )
        assert done.returncode == 0, done.stderr
        assert f"Added account 'gemini-cli' to the config {config}" in done.stderr
        creds = tmp_path / "userhome" / ".gemini" / "oauth_creds.json"
        assert load_config(config).accounts[0].credentials == str(creds)
        with BridgeProcess(tmp_path, config) as bridge:
            answer = client(bridge).chat.completions.create(
                model="gemini-2.5-pro", messages=[{"role": "user", "content": "hi"}]
            )
            assert answer.choices[0].message.content == "Hello from the fake Code Assist."
            assert code_assist.generate_requests[-1]["project"] == code_assist.project
            code_assist.revoke_access_tokens()  # the next call gets 401: the bridge refreshes with the saved token
            again = client(bridge).chat.completions.create(
                model="gemini-2.5-pro", messages=[{"role": "user", "content": "again"}]
            )
            assert again.choices[0].message.content == "Hello from the fake Code Assist."
        assert [f["grant_type"] for f in google.token_forms] == ["authorization_code", "refresh_token"]


def test_an_imported_kiro_login_serves_requests_and_refreshes_its_own_copy(tmp_path, config):
    with FakeKiro() as kiro:
        ide_file = kiro.write_token_file(tmp_path / "userhome" / ".aws" / "sso" / "cache" / "kiro-auth-token.json")
        before = ide_file.read_bytes()
        done = run_login(tmp_path, config, "kiro", "--token-url", kiro.social_refresh_url, "--base-url", kiro.base_url)
        assert done.returncode == 0, done.stderr
        imported = tmp_path / "home" / "credentials" / "kiro.json"
        assert load_config(config).accounts[0].credentials == str(imported)
        kiro.expire_access_token()  # the first request is refused: the bridge refreshes the imported copy
        kiro.enqueue(Text("Hello from Kiro"))
        with BridgeProcess(tmp_path, config) as bridge:
            answer = client(bridge).chat.completions.create(
                model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}]
            )
        assert answer.choices[0].message.content == "Hello from Kiro"
        assert kiro.refresh_count == 1
        saved = json.loads(imported.read_text())
        assert (saved["accessToken"], saved["refreshToken"]) == ("kiro-access-1", "kiro-refresh-1")  # rotated, kept
        assert ide_file.read_bytes() == before


def test_a_qwen_login_serves_requests(tmp_path, config):
    """The device-code login against the fake Qwen OAuth server; the account it adds answers through the
    qwen provider from the fake Qwen API named by the `resource_url` the login saved."""
    from tests.fakes.oauth import FakeQwenOAuth
    from tests.fakes.qwen import FakeQwen, Reply

    with FakeQwen() as qwen, FakeQwenOAuth(resource_url=qwen.origin) as portal:
        portal.enqueue("pending", "slow_down")
        done = run_login(
            tmp_path,
            config,
            "qwen",
            "--no-browser",
            "--device-url",
            portal.device_url,
            "--token-url",
            portal.token_url,
            "--poll-interval",
            "0.05",
        )
        assert done.returncode == 0, done.stderr
        assert "Added account 'qwen' to the config" in done.stderr
        creds = tmp_path / "userhome" / ".qwen" / "oauth_creds.json"
        account = load_config(config).accounts[0]
        assert (account.provider, account.credentials, account.token_url) == ("qwen", str(creds), portal.token_url)
        assert portal.issued is not None
        qwen.access_tokens.add(portal.issued["access_token"])  # the API accepts what the portal issued
        qwen.default = Reply(deltas=[{"content": "Hello from Qwen"}])
        with BridgeProcess(tmp_path, config) as bridge:
            answer = client(bridge).chat.completions.create(
                model="coder-model", messages=[{"role": "user", "content": "hi"}]
            )
        assert answer.choices[0].message.content == "Hello from Qwen"
        assert qwen.rejections == []
