"""`llmbridge login kiro`: importing the Kiro IDE's token file and kiro-cli's SQLite store (social and
IdC logins, with the client registration) into a token file the kiro provider reads."""

from __future__ import annotations

import json
import sqlite3

import pytest

from llmbridge.config import AccountConfig, load_config
from llmbridge.providers.kiro.credentials import KiroCredentials, parse_expiry
from tests.fakes.kiro import FakeKiro
from tests.login_kit import isolated_machine, login, mode

PROFILE = "arn:aws:codewhisperer:us-east-1:123456789012:profile/ABCDEFGHIJKL"


@pytest.fixture
def machine(tmp_path, monkeypatch):
    return isolated_machine(tmp_path, monkeypatch)


def ide_file(machine):
    folder = machine.home / ".aws" / "sso" / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "kiro-auth-token.json"


def cli_store(machine):
    return machine.home / ".local" / "share" / "kiro-cli" / "data.sqlite3"


def write_cli_store(path, rows: dict[str, dict], profile: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE auth_kv (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB)")
        db.executemany("INSERT INTO auth_kv VALUES (?, ?)", [(k, json.dumps(v)) for k, v in rows.items()])
        if profile:
            db.execute("INSERT INTO state VALUES (?, ?)", ("api.codewhisperer.profile", json.dumps({"arn": profile})))
    db.close()


def imported(machine, name: str = "kiro") -> dict:
    path = machine.bridge_home / "credentials" / f"{name}.json"
    assert mode(path) == 0o600
    return json.loads(path.read_text())


def read_by_the_provider(machine, name: str = "kiro") -> KiroCredentials:
    account = next(a for a in load_config(machine.config).accounts if a.name == name)
    credentials = KiroCredentials(account)
    credentials.validate()
    return credentials


def test_the_ides_social_login_is_imported(machine):
    with FakeKiro() as kiro:
        kiro.write_token_file(ide_file(machine))
    result = login("kiro")
    assert result.exit_code == 0, result.output
    assert "Imported the social login of the Kiro IDE" in result.output and "Amazon suspends" in result.output
    token = imported(machine)
    assert token["authMethod"] == "social" and token["profileArn"] == kiro.profile_arn
    assert (token["accessToken"], token["refreshToken"]) == ("kiro-access-0", "kiro-refresh-0")
    credentials = read_by_the_provider(machine)
    assert credentials.auth_method == "social" and credentials.profile_arn == kiro.profile_arn


def test_the_ides_idc_login_carries_its_client_registration(machine):
    with FakeKiro(auth_method="IdC") as kiro:
        kiro.write_token_file(ide_file(machine))
    assert login("kiro", "--from", "ide").exit_code == 0
    token = imported(machine)
    assert (token["clientId"], token["clientSecret"]) == ("fake-client-id", "fake-client-secret")
    assert "clientIdHash" not in token  # it stands alone: nothing else of the cache directory is needed
    assert read_by_the_provider(machine).client_registration() == ("fake-client-id", "fake-client-secret")


def test_an_idc_login_without_its_registration_is_refused(machine):
    with FakeKiro(auth_method="IdC") as kiro:
        kiro.write_token_file(ide_file(machine), registration=False)
    result = login("kiro")
    assert result.exit_code == 1 and "0123abcd" in result.output and "does not exist" in result.output
    assert not (machine.bridge_home / "credentials").exists()


def test_kiro_clis_social_login_is_imported_with_the_profile_from_its_state(machine):
    write_cli_store(
        cli_store(machine),
        {
            "kirocli:social:token": {
                "access_token": "cli-access",
                "refresh_token": "cli-refresh",
                "expires_at": "2099-01-02T03:04:05.123456789Z",
                "region": "us-east-1",
            }
        },
        profile=PROFILE,
    )
    result = login("kiro", "--name", "laptop")
    assert result.exit_code == 0, result.output
    assert "Imported the social login of kiro-cli" in result.output
    token = imported(machine, "laptop")
    assert token["expiresAt"] == "2099-01-02T03:04:05.123Z"  # nanoseconds read, written as the IDE does
    assert token["profileArn"] == PROFILE and token["authMethod"] == "social"
    assert read_by_the_provider(machine, "laptop").profile_arn == PROFILE


def test_kiro_clis_idc_login_is_imported_with_its_device_registration(machine):
    write_cli_store(
        cli_store(machine),
        {
            "kirocli:odic:token": {
                "access_token": "idc-access",
                "refresh_token": "idc-refresh",
                "expires_at": "2020-01-01T00:00:00.5Z",
                "region": "eu-central-1",
                "start_url": "https://view.awsapps.com/start",
            },
            "kirocli:odic:device-registration": {
                "client_id": "reg-id",
                "client_secret": "reg-secret",
                "expires_at": "2099-01-01T00:00:00Z",
                "region": "eu-central-1",
            },
        },
    )
    result = login("kiro", "--from", "cli")
    assert result.exit_code == 0, result.output
    assert "access token has expired; the bridge refreshes it" in result.output
    token = imported(machine)
    assert (token["authMethod"], token["region"], token["clientId"], token["clientSecret"]) == (
        "IdC",
        "eu-central-1",
        "reg-id",
        "reg-secret",
    )
    assert parse_expiry(token["expiresAt"]) == parse_expiry("2020-01-01T00:00:00.500Z")
    credentials = read_by_the_provider(machine)
    assert (
        credentials.auth_method == "idc" and credentials.token_url() == "https://oidc.eu-central-1.amazonaws.com/token"
    )


def test_an_external_idp_login_is_refused_plainly(machine):
    write_cli_store(cli_store(machine), {"kirocli:external-idp:token": {"access_token": "a", "refresh_token": "r"}})
    result = login("kiro")
    assert result.exit_code == 1 and "external-IdP login" in result.output


def test_a_login_without_refresh_token_is_refused(machine):
    path = ide_file(machine)
    path.write_text(json.dumps({"accessToken": "a", "authMethod": "social", "expiresAt": "2099-01-01T00:00:00Z"}))
    result = login("kiro")
    assert result.exit_code == 1 and "no refresh token" in result.output
    assert not (machine.bridge_home / "credentials").exists()


def test_with_no_kiro_login_it_says_where_it_looked(machine):
    result = login("kiro")
    assert result.exit_code == 1
    assert "kiro-auth-token.json" in result.output and "data.sqlite3" in result.output


def test_a_source_named_with_source_is_read(machine, tmp_path):
    elsewhere = tmp_path / "backup.sqlite3"
    write_cli_store(elsewhere, {"kirocli:social:token": {"access_token": "a", "refresh_token": "r"}})
    result = login("kiro", "--source", str(elsewhere))
    assert result.exit_code == 0, result.output
    assert imported(machine)["refreshToken"] == "r"


def test_endpoints_and_base_url_go_into_the_account(machine):
    with FakeKiro() as kiro:
        kiro.write_token_file(ide_file(machine))
        urls = (kiro.social_refresh_url, kiro.base_url)
        result = login("kiro", "--token-url", urls[0], "--base-url", urls[1])
    assert result.exit_code == 0, result.output
    account = load_config(machine.config).accounts[0]
    assert (account.token_url, account.base_url) == urls


def test_the_source_is_never_written(machine):
    with FakeKiro() as kiro:
        source = kiro.write_token_file(ide_file(machine))
    before = source.read_bytes()
    assert login("kiro").exit_code == 0
    assert source.read_bytes() == before
    # the new config's only account is on the imported copy: the IDE's file, discovered until now, is
    # left out (two accounts on one login would refresh each other's tokens away)
    accounts: list[AccountConfig] = load_config(machine.config).accounts
    assert [a.credentials for a in accounts] == [str(machine.bridge_home / "credentials" / "kiro.json")]


def test_a_configured_account_on_the_imported_file_is_pointed_out(machine):
    with FakeKiro() as kiro:
        source = kiro.write_token_file(ide_file(machine))
    machine.config.write_text(f'[[accounts]]\nname = "ide"\nprovider = "kiro"\ncredentials = "{source}"\n')
    result = login("kiro")
    assert result.exit_code == 0, result.output
    assert "Remove account 'ide' from the config" in result.output


def test_a_relative_out_path_is_saved_in_the_config_as_absolute(machine):
    with FakeKiro() as kiro:
        kiro.write_token_file(ide_file(machine))
    assert login("kiro", "--out", "mine.json").exit_code == 0
    assert load_config(machine.config).accounts[0].credentials == str(machine.work / "mine.json")
    assert mode(machine.work / "mine.json") == 0o600
