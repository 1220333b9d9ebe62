"""`llmbridge login qwen` against a fake Qwen device-code server: approval after authorization_pending
and slow_down, the back-off, expiry, refusal, a cancelled login, and the credential file in exactly
Qwen Code's format."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time

import pytest

from llmbridge.config import load_config
from llmbridge.login import LoginError, Progress
from llmbridge.providers.base import PROVIDERS
from llmbridge.providers.qwen import login as qwen
from tests.bridge_process import LLMBRIDGE
from tests.fakes.oauth import FakeQwenOAuth, s256
from tests.login_kit import as_from_a_terminal, isolated_machine, login, mode


@pytest.fixture
def machine(tmp_path, monkeypatch):
    return isolated_machine(tmp_path, monkeypatch)


@pytest.fixture
def server():
    with FakeQwenOAuth() as fake:
        yield fake


def endpoints(server: FakeQwenOAuth, poll: str = "0.01") -> list[str]:
    return ["--device-url", server.device_url, "--token-url", server.token_url, "--poll-interval", poll]


def creds_path(machine):
    return machine.home / ".qwen" / "oauth_creds.json"


def test_login_after_pending_and_slow_down_writes_qwen_codes_file(machine, server):
    server.enqueue("pending", "slow_down", "pending")
    result = login("qwen", *endpoints(server), "--no-browser")
    assert result.exit_code == 0, result.output
    assert f"open {server.origin}/authorize?user_code=ABCD-1234" in result.output
    assert "enter the code ABCD-1234" in result.output
    assert "Approved." in result.output and "discontinued its free OAuth tier" in result.output
    assert len(server.token_forms) == 4
    path = creds_path(machine)
    assert mode(path) == 0o600
    assert json.loads(path.read_text())["access_token"] == server.issued["access_token"]
    if "qwen" in PROVIDERS:  # once the provider is merged the account goes into the config
        assert load_config(machine.config).accounts[0].provider == "qwen"
    else:  # until then: the block to add, and the config untouched
        assert '[[accounts]]\nname = "qwen"\nprovider = "qwen"\n' in result.stdout
        assert not machine.config.exists()


def test_the_file_matches_qwen_codes_format_exactly(machine, server):
    assert login("qwen", *endpoints(server), "--no-browser").exit_code == 0
    data = json.loads(creds_path(machine).read_text())
    issued = server.issued
    assert list(data) == ["access_token", "refresh_token", "token_type", "resource_url", "expiry_date"]
    assert {k: data[k] for k in list(data)[:4]} == {
        "access_token": issued["access_token"],
        "refresh_token": issued["refresh_token"],
        "token_type": "Bearer",
        "resource_url": "portal.qwen.ai",
    }
    # what Qwen Code's token manager requires: strings, and expiry_date a number of milliseconds
    assert all(isinstance(data[k], str) and data[k] for k in ("access_token", "refresh_token", "token_type"))
    assert isinstance(data["expiry_date"], int)
    assert 21500_000 < data["expiry_date"] - time.time() * 1000 <= 21600_000


def test_fields_qwen_did_not_send_are_left_out_as_qwen_code_does():
    data = qwen.credentials_from({"access_token": "a", "refresh_token": "r", "token_type": "Bearer", "expires_in": 60})
    assert list(data) == ["access_token", "refresh_token", "token_type", "expiry_date"]


def test_an_answer_without_refresh_token_is_refused():
    with pytest.raises(LoginError, match="no refresh token"):
        qwen.credentials_from({"access_token": "a", "token_type": "Bearer", "expires_in": 60})


def test_pkce_and_the_device_grant_are_sent_as_qwen_code_sends_them(machine, server):
    assert login("qwen", *endpoints(server), "--no-browser").exit_code == 0
    device, token = server.device_forms[0], server.token_forms[0]
    assert device["scope"] == "openid profile email model.completion" and device["code_challenge_method"] == "S256"
    assert s256(token["code_verifier"]) == device["code_challenge"]
    assert token["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"


def test_slow_down_backs_off_1_5x_up_to_10_s_and_pending_resets_it(server):
    server.enqueue("pending", "slow_down", "slow_down", "pending", *["slow_down"] * 5)
    slept: list[float] = []
    flow = qwen.QwenLogin(device_url=server.device_url, token_url=server.token_url, no_browser=True)
    qwen.sign_in(flow, lambda text: None, Progress("Waiting", io.StringIO()), sleep=slept.append)
    assert slept == [2.0, 3.0, 4.5, 2.0, 3.0, 4.5, 6.75, 10.0, 10.0]


def test_the_browser_opens_unless_no_browser(server):
    opened: list[str] = []
    flow = qwen.QwenLogin(device_url=server.device_url, token_url=server.token_url, poll_seconds=0)
    qwen.sign_in(flow, lambda text: None, Progress("Waiting", io.StringIO()), opened.append)
    assert opened == [f"{server.origin}/authorize?user_code=ABCD-1234&client=qwen-code"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("expired", "the sign-in code expired before it was approved"),
        ("denied", "the sign-in was declined (access_denied"),
    ],
)
def test_an_expired_or_declined_code_saves_nothing(machine, server, step, message):
    server.enqueue("pending", step)
    result = login("qwen", *endpoints(server), "--no-browser")
    assert result.exit_code == 1
    assert message in result.output
    assert not (machine.home / ".qwen").exists() and not machine.config.exists()


def test_the_codes_lifetime_ends_the_polling(machine):
    with FakeQwenOAuth(expires_in=1) as server:
        server.enqueue(*["pending"] * 1000)
        result = login("qwen", *endpoints(server, poll="0.2"), "--no-browser")
    assert result.exit_code == 1 and "expired before it was approved" in result.output
    assert not (machine.home / ".qwen").exists()


def test_a_refused_device_request_says_the_free_tier_is_gone(machine, server):
    server.refuse_device = (403, {"error": "access_denied", "error_description": "Free tier discontinued"})
    result = login("qwen", *endpoints(server), "--no-browser")
    assert result.exit_code == 1
    assert "Qwen refused to start the sign-in (access_denied: Free tier discontinued)" in result.output
    assert "discontinued its free OAuth tier on 2026-04-15" in result.output
    assert not (machine.home / ".qwen").exists()


def test_an_existing_login_is_kept_unless_forced(machine, server):
    path = creds_path(machine)
    path.parent.mkdir()
    path.write_text("{}")
    assert login("qwen", *endpoints(server), "--no-browser").exit_code == 1
    assert server.device_forms == [] and path.read_text() == "{}"
    assert login("qwen", *endpoints(server), "--no-browser", "--force").exit_code == 0
    assert json.loads(path.read_text())["refresh_token"] == server.issued["refresh_token"]


def test_ctrl_c_while_polling_leaves_nothing(machine, server):
    server.enqueue(*["pending"] * 10_000)
    env = dict(os.environ, HOME=str(machine.home), LLMBRIDGE_HOME=str(machine.bridge_home), NO_PROXY="127.0.0.1")
    process = subprocess.Popen(
        [str(LLMBRIDGE), "login", "qwen", *endpoints(server, poll="0.05"), "--no-browser"],
        cwd=machine.work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    deadline = time.monotonic() + 30
    while len(server.token_forms) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1, err
    assert "login cancelled; nothing was saved" in err
    assert not (machine.home / ".qwen").exists() and not machine.config.exists()
