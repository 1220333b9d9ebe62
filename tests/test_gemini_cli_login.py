"""`llmbridge login gemini-cli` against a fake Google (consent page + token endpoint) and the strict
fake Code Assist: the loopback flow driven by a fake browser, the pasted-code flow, refusals, and a
cancelled login. Nothing is saved unless the whole login succeeded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmbridge.config import load_config
from tests.bridge_process import LLMBRIDGE, ROOT
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.oauth import FakeGoogleOAuth, s256
from tests.login_kit import as_from_a_terminal, isolated_machine, login, mode

OFFICIAL_FIELDS = ["access_token", "refresh_token", "scope", "token_type", "id_token", "expiry_date"]


@pytest.fixture
def machine(tmp_path, monkeypatch):
    return isolated_machine(tmp_path, monkeypatch)


@pytest.fixture
def code_assist():
    with FakeCodeAssist(onboarded=False, onboard_polls=1) as fake:
        yield fake


@pytest.fixture
def google(code_assist):
    with FakeGoogleOAuth(code_assist, email="dev@example.com") as fake:
        yield fake


@pytest.fixture
def browser(monkeypatch):
    """The person's browser: opens the consent URL and follows Google's redirect to the loopback."""
    opened: list[str] = []

    def open_url(url: str) -> bool:
        opened.append(url)
        httpx.get(url, follow_redirects=True, timeout=10)
        return True

    monkeypatch.setattr("webbrowser.open", open_url)
    return opened


def endpoints(google: FakeGoogleOAuth, code_assist: FakeCodeAssist) -> list[str]:
    return [
        "--auth-url",
        google.auth_url,
        "--token-url",
        google.token_url,
        "--base-url",
        code_assist.base_url,
        "--onboard-poll-interval",
        "0",
    ]


def test_browser_login_writes_the_official_file_and_adds_the_account(machine, google, code_assist, browser):
    result = login("gemini-cli", *endpoints(google, code_assist))
    assert result.exit_code == 0, result.output
    creds_path = machine.home / ".gemini" / "oauth_creds.json"
    creds = json.loads(creds_path.read_text())
    assert list(creds) == OFFICIAL_FIELDS  # google-auth-library's answer, expires_in turned into expiry_date
    assert creds["access_token"] in code_assist.access_tokens and creds["refresh_token"] in code_assist.refresh_tokens
    assert 3500_000 < creds["expiry_date"] - time.time() * 1000 <= 3600_000
    assert mode(creds_path) == 0o600
    account = load_config(machine.config).accounts[0]
    assert (account.name, account.provider, account.credentials) == ("gemini-cli", "gemini-cli", str(creds_path))
    assert (account.project, account.token_url, account.base_url) == (
        code_assist.project,
        google.token_url,
        code_assist.base_url,
    )
    assert "Signed in as dev@example.com" in result.output and "tier free-tier" in result.output
    assert "Google's terms forbid" in result.output
    # the consent request: a loopback redirect, PKCE S256, a fresh 64-hex state
    sent = google.auth_requests[0]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/oauth2callback", sent["redirect_uri"])
    assert re.fullmatch(r"[0-9a-f]{64}", sent["state"])
    assert s256(google.token_forms[0]["code_verifier"]) == sent["code_challenge"]
    # onboarding happened as the provider does it: loadCodeAssist, onboardUser, then polling
    assert [c.path.split(":")[-1] for c in code_assist.requests][:2] == ["loadCodeAssist", "onboardUser"]


def test_print_shows_the_block_and_leaves_the_config_alone(machine, google, code_assist, browser):
    result = login("gemini-cli", *endpoints(google, code_assist), "--print", "--name", "work")
    assert result.exit_code == 0, result.output
    assert not machine.config.exists()
    assert '[[accounts]]\nname = "work"\nprovider = "gemini-cli"\n' in result.stdout
    assert f'project = "{code_assist.project}"' in result.stdout


def test_a_redirect_with_the_wrong_state_saves_nothing(machine, google, code_assist, browser):
    google.enqueue("wrong-state")
    result = login("gemini-cli", *endpoints(google, code_assist))
    assert result.exit_code == 1
    assert "wrong state" in result.output and "nothing was saved" in result.output
    assert not (machine.home / ".gemini").exists() and not machine.config.exists()
    assert google.token_forms == []  # the code was never exchanged


def test_a_declined_consent_is_reported(machine, google, code_assist, browser):
    google.enqueue("deny")
    result = login("gemini-cli", *endpoints(google, code_assist))
    assert result.exit_code == 1
    assert "Google refused the sign-in: access_denied" in result.output
    assert not (machine.home / ".gemini").exists()


def test_an_ineligible_account_is_refused_with_googles_reason_and_no_file(machine, google, code_assist, browser):
    code_assist.ineligible_tiers = [
        {
            "reasonCode": "INELIGIBLE_ACCOUNT",
            "reasonMessage": "This client is no longer supported for Gemini Code Assist for individuals.",
            "tierId": "free-tier",
        }
    ]
    result = login("gemini-cli", *endpoints(google, code_assist))
    assert result.exit_code == 1
    assert "cannot use Gemini Code Assist: This client is no longer supported" in result.output
    assert "nothing was saved" in result.output
    assert not (machine.home / ".gemini").exists() and not machine.config.exists()


def test_an_existing_login_is_kept_unless_forced(machine, google, code_assist, browser):
    existing = machine.home / ".gemini" / "oauth_creds.json"
    existing.parent.mkdir()
    existing.write_text('{"refresh_token": "theirs"}')
    refused = login("gemini-cli", *endpoints(google, code_assist))
    assert refused.exit_code == 1 and "--out PATH" in refused.output
    assert google.auth_requests == [] and existing.read_text() == '{"refresh_token": "theirs"}'
    other = machine.home / "second.json"
    assert login("gemini-cli", *endpoints(google, code_assist), "--out", str(other)).exit_code == 0
    assert json.loads(other.read_text())["refresh_token"] != "theirs"
    assert login("gemini-cli", *endpoints(google, code_assist), "--force").exit_code == 0
    assert json.loads(existing.read_text())["refresh_token"] in code_assist.refresh_tokens


def test_endpoints_come_from_the_environment_too(machine, google, code_assist, browser, monkeypatch):
    monkeypatch.setenv("LLMBRIDGE_LOGIN_AUTH_URL", google.auth_url)
    monkeypatch.setenv("LLMBRIDGE_LOGIN_TOKEN_URL", google.token_url)
    monkeypatch.setenv("LLMBRIDGE_LOGIN_BASE_URL", code_assist.base_url)
    result = login("gemini-cli", "--onboard-poll-interval", "0")
    assert result.exit_code == 0, result.output
    assert browser[0].startswith(google.auth_url + "?")


# --- as a user runs it (a real process) -----------------------------------------------------------


def user_env(machine) -> dict[str, str]:
    return dict(
        os.environ,
        HOME=str(machine.home),
        LLMBRIDGE_HOME=str(machine.bridge_home),
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )


def start_login(machine, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(LLMBRIDGE), "login", "gemini-cli", *args],
        cwd=machine.work,
        env={**user_env(machine), **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )


def read_until(stream, pattern: str, seen: list[str], timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if found := re.search(pattern, line):
            return found
    raise AssertionError(f"{pattern!r} not seen in:\n{''.join(seen)}")


def test_no_browser_login_reads_the_pasted_code(machine, google, code_assist):
    process = start_login(machine, *endpoints(google, code_assist), "--no-browser")
    seen: list[str] = []
    url = read_until(process.stderr, r"(http://127\.0\.0\.1:\d+/auth\?\S+)", seen).group(1)
    assert "redirect_uri=https%3A%2F%2Fcodeassist.google.com%2Fauthcode" in url
    out, err = process.communicate(google.code_for(url) + "\n", timeout=60)
    assert process.returncode == 0, "".join(seen) + err
    creds = json.loads((machine.home / ".gemini" / "oauth_creds.json").read_text())
    assert list(creds) == OFFICIAL_FIELDS
    assert google.token_forms[0]["redirect_uri"] == "https://codeassist.google.com/authcode"


def test_ctrl_c_while_waiting_for_the_browser_leaves_nothing(machine, google, code_assist):
    # a browser that opens nothing: the login waits until the person gives up
    process = start_login(machine, *endpoints(google, code_assist), BROWSER=f"{sys.executable} -c pass %s")
    seen: list[str] = []
    read_until(process.stderr, r"Waiting for the sign-in", seen)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "login cancelled; nothing was saved" in err
    assert not (machine.home / ".gemini").exists() and not machine.config.exists()
    assert list(Path(machine.bridge_home).iterdir()) == []


def test_the_fake_browser_script_completes_a_real_login(machine, google, code_assist):
    browser = f"{sys.executable} {ROOT / 'tests' / 'fakes' / 'browser.py'} %s"
    process = start_login(machine, *endpoints(google, code_assist), BROWSER=browser)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert (machine.home / ".gemini" / "oauth_creds.json").is_file()
    assert "Added account" in err or "Created the config" in err
