"""The parts every login shares (`llmbridge.login`): PKCE, the loopback redirect, pasted codes, the
progress line, the credential file and the config edit."""

from __future__ import annotations

import io
import json
import socket
import tomllib

import httpx
import pytest

from llmbridge import login
from llmbridge.config import load_config
from llmbridge.login import LoginError, LoopbackRedirect
from tests.login_kit import isolated_machine, leftovers, mode


@pytest.fixture
def machine(tmp_path, monkeypatch):
    return isolated_machine(tmp_path, monkeypatch)


# --- PKCE -----------------------------------------------------------------------------------------


def test_s256_matches_the_rfc_7636_example():
    assert login.s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pkce_pair_is_random_unpadded_base64url_of_the_asked_size():
    first, second = login.pkce_pair(32), login.pkce_pair(32)
    assert first[0] != second[0]
    verifier, challenge = first
    assert len(verifier) == 43 and "=" not in verifier and "+" not in verifier and "/" not in verifier
    assert challenge == login.s256(verifier)
    assert len(login.pkce_pair(96)[0]) == 128  # the longest verifier RFC 7636 allows


# --- the loopback redirect ------------------------------------------------------------------------


def test_loopback_receives_the_redirect_and_ignores_other_paths():
    with LoopbackRedirect() as loopback:
        assert loopback.redirect_uri.startswith("http://127.0.0.1:")
        base = loopback.redirect_uri.removesuffix("/oauth2callback")
        assert httpx.get(base + "/favicon.ico").status_code == 404
        page = httpx.get(loopback.redirect_uri, params={"code": "4/abc", "state": "s1"})
        assert page.status_code == 200 and "The terminal says whether the login succeeded" in page.text
        assert loopback.wait(5) == {"code": "4/abc", "state": "s1"}
        assert httpx.get(loopback.redirect_uri, params={"code": "again"}).status_code == 404  # one-shot


def test_loopback_is_not_held_up_by_an_idle_connection():
    with LoopbackRedirect() as loopback:
        port = int(loopback.redirect_uri.split(":")[2].split("/")[0])
        with socket.create_connection(("127.0.0.1", port)):  # a browser's speculative connection, never used
            httpx.get(loopback.redirect_uri, params={"code": "c", "state": "s"}, timeout=5)
            assert loopback.wait(5)["code"] == "c"


def test_loopback_gives_up_after_the_timeout():
    with LoopbackRedirect() as loopback, pytest.raises(LoginError, match="no sign-in arrived"):
        loopback.wait(0.3)


def test_redirect_with_the_wrong_state_is_rejected():
    with pytest.raises(LoginError, match="wrong state"):
        login.code_from_redirect({"code": "4/abc", "state": "forged"}, "s1", "Google")


def test_redirect_with_an_error_names_it():
    with pytest.raises(LoginError, match="Google refused the sign-in: access_denied"):
        login.code_from_redirect({"error": "access_denied", "state": "s1"}, "s1", "Google")


def test_redirect_without_a_code_is_rejected():
    with pytest.raises(LoginError, match="no authorization code"):
        login.code_from_redirect({"state": "s1"}, "s1", "Google")


@pytest.mark.parametrize(
    ("pasted", "code"),
    [
        ("  4/0AbCd  \n", "4/0AbCd"),
        ("https://codeassist.google.com/authcode?code=4%2F0AbCd&state=s1", "4/0AbCd"),
        ("http://127.0.0.1:8085/oauth2callback?code=4/0AbCd", "4/0AbCd"),
    ],
)
def test_a_pasted_code_or_redirect_url_gives_the_code(pasted, code):
    assert login.code_from_paste(pasted, "s1", "Google") == code


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("", "no authorization code was entered"),
        ("https://codeassist.google.com/authcode?code=4/x&state=other", "wrong state"),
        ("https://codeassist.google.com/authcode?scope=x", "no code= parameter"),
    ],
)
def test_a_bad_paste_is_refused(pasted, message):
    with pytest.raises(LoginError, match=message):
        login.code_from_paste(pasted, "s1", "Google")


# --- progress -------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_spins_on_a_terminal_and_prints_dots_elsewhere():
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = login.Progress("Waiting", stream)
        progress.tick(2.0)
        progress.tick(4.5, "slowing down")
        progress.end("Approved.")
    spinner = "\rWaiting | 2 s\rWaiting / 4 s (slowing down)"
    assert terminal.getvalue() == spinner + "\r" + " " * len("Waiting / 4 s (slowing down)") + "\rApproved.\n"
    assert log.getvalue() == "Waiting ..\nApproved.\n"


# --- the credential file --------------------------------------------------------------------------


def test_an_existing_login_is_not_replaced_without_force(tmp_path):
    path = tmp_path / "oauth_creds.json"
    path.write_text("{}")
    with pytest.raises(LoginError, match="--out PATH .* or --force"):
        login.check_target(path, force=False, provider="gemini-cli")
    login.check_target(path, force=True, provider="gemini-cli")


def test_credentials_are_written_whole_with_mode_0600(tmp_path):
    path = tmp_path / "sub" / "creds.json"
    login.save_credentials(path, {"access_token": "a", "refresh_token": "r"})
    assert json.loads(path.read_text()) == {"access_token": "a", "refresh_token": "r"}
    assert mode(path) == 0o600
    assert leftovers(path.parent) == ["creds.json"]


# --- the config -----------------------------------------------------------------------------------


def test_account_block_is_toml_with_unset_values_left_out():
    block = login.account_block({"name": 'we"ird', "provider": "kiro", "credentials": "C:\\x", "token_url": None})
    assert tomllib.loads(block) == {"accounts": [{"name": 'we"ird', "provider": "kiro", "credentials": "C:\\x"}]}


def test_adding_to_an_existing_config_appends_and_keeps_its_text(machine):
    machine.config.write_text(
        '# my settings\napi_keys = ["sk-test-key-0123456789"]\n\n'
        '[[accounts]]\nname = "kiro"\nprovider = "kiro"\ncredentials = "/x/kiro.json"\n'
    )
    machine.config.chmod(0o640)
    added = login.add_account({"name": "kiro", "provider": "kiro", "credentials": "/y/kiro.json"}, None)
    assert (added.config_path, added.name, added.created_config) == (machine.config, "kiro-2", False)
    text = machine.config.read_text()
    assert text.startswith("# my settings\n")
    assert [a.name for a in load_config(machine.config).accounts] == ["kiro", "kiro-2"]
    assert mode(machine.config) == 0o640
    assert leftovers(machine.bridge_home) == ["bridge.toml"]


def test_an_account_on_the_same_file_is_not_added_twice(machine):
    machine.config.write_text('[[accounts]]\nname = "mine"\nprovider = "kiro"\ncredentials = "/x/kiro.json"\n')
    added = login.add_account({"name": "kiro", "provider": "kiro", "credentials": "/x/../x/kiro.json"}, None)
    assert added.already and added.name == "mine"
    assert len(load_config(machine.config).accounts) == 1


def test_without_a_config_one_is_created_in_the_home_keeping_the_discovered_accounts(machine):
    gemini = machine.home / ".gemini" / "oauth_creds.json"
    gemini.parent.mkdir()
    gemini.write_text("{}")
    added = login.add_account({"name": "kiro", "provider": "kiro", "credentials": "/x/kiro.json"}, None)
    assert added.created_config and added.config_path == machine.config
    accounts = load_config(machine.config).accounts
    assert [(a.name, a.provider) for a in accounts] == [("gemini-cli", "gemini-cli"), ("kiro", "kiro")]


def test_the_config_named_with_config_is_the_one_edited(machine, tmp_path):
    explicit = tmp_path / "elsewhere.toml"
    added = login.add_account({"name": "kiro", "provider": "kiro", "credentials": "/x/kiro.json"}, explicit)
    assert added.config_path == explicit and explicit.is_file()
    assert not machine.config.exists()


def test_a_broken_config_is_left_alone(machine):
    machine.config.write_text("retention_day = 3\n")
    with pytest.raises(LoginError, match="did you mean 'retention_days'.*fix the config first"):
        login.add_account({"name": "kiro", "provider": "kiro", "credentials": "/x/kiro.json"}, None)
    assert machine.config.read_text() == "retention_day = 3\n"


def test_a_config_that_cannot_take_the_account_leaves_the_block_to_paste(machine):
    machine.config.write_text('[[accounts]]\nname = "kiro"\nprovider = "kiro"\ncredentials = "/x/kiro.json"\n')
    said: list[str] = []
    shown: list[str] = []
    account = {"name": "k", "provider": "kiro", "credentials": str(machine.home / "k.json"), "region": 5}
    with pytest.raises(LoginError, match="would not load"):
        login.finish(
            account,
            {"accessToken": "a"},
            machine.home / "k.json",
            print_only=False,
            explicit_config=None,
            say=said.append,
            show_block=shown.append,
        )
    assert "add this block yourself" in said[-1] and shown == [login.account_block(account)]
    assert f"config file {machine.config}: accounts.1.region" in said[-1]
    assert (machine.home / "k.json").is_file()  # the login itself is kept
