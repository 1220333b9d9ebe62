"""Token refresh: social and IdC against the fake, rotation persisted atomically, single-flight."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import httpx
import pytest

from llmbridge.config import AccountConfig
from llmbridge.errors import AccountUnusable, ConfigError
from llmbridge.providers.kiro import credentials as creds_module
from llmbridge.providers.kiro.credentials import expiry_in, format_expiry, parse_expiry
from llmbridge.providers.kiro.provider import KiroProvider
from tests.fakes.kiro import FakeKiro


def account(fake: FakeKiro, path: Path, idc: bool = False, **extra) -> AccountConfig:
    return AccountConfig(
        name="kiro-test",
        provider="kiro",
        credentials=str(path),
        base_url=fake.base_url,
        token_url=fake.idc_token_url if idc else fake.social_refresh_url,
        **extra,
    )


def test_expiry_format_round_trip() -> None:
    assert parse_expiry("2026-06-14T16:38:19.427Z") == pytest.approx(1781455099.427)
    assert format_expiry(1781455099.427) == "2026-06-14T16:38:19.427Z"
    assert parse_expiry(1781455099427) == pytest.approx(1781455099.427)
    assert parse_expiry("garbage") is None


def test_social_refresh_rotates_and_persists(tmp_path: Path) -> None:
    with FakeKiro() as fake:
        path = fake.write_token_file(tmp_path / "kiro-auth-token.json", expires_at=expiry_in(120), customField="kept")
        old_refresh = fake.refresh_token

        async def main() -> None:
            async with httpx.AsyncClient() as http:
                provider = KiroProvider(account(fake, path), http)
                await provider.refresh_credentials()  # expires within 10 min: refreshes
                await provider.refresh_credentials()  # now fresh: no second refresh

        asyncio.run(main())
        assert fake.refresh_count == 1
        assert fake.refresh_requests[0].body == {"refreshToken": old_refresh}
        data = json.loads(path.read_text())
        assert data["accessToken"] == fake.access_token == "kiro-access-1"
        assert data["refreshToken"] == fake.refresh_token == "kiro-refresh-1"
        assert data["customField"] == "kept" and data["authMethod"] == "social"
        assert parse_expiry(data["expiresAt"]) > parse_expiry(expiry_in(3500))
        assert data["expiresAt"].endswith("Z")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_idc_refresh_uses_registration_file_only(tmp_path: Path) -> None:
    with FakeKiro(auth_method="idc") as fake:
        path = fake.write_token_file(tmp_path / "kiro-auth-token.json", expires_at=expiry_in(-10))
        # an unrelated JSON file with other credentials in the same directory must not be used
        (tmp_path / "other.json").write_text(json.dumps({"clientId": "wrong", "clientSecret": "wrong"}))

        async def main() -> None:
            async with httpx.AsyncClient() as http:
                provider = KiroProvider(account(fake, path, idc=True), http)
                await provider.refresh_credentials()

        asyncio.run(main())
        assert fake.refresh_count == 1
        assert fake.refresh_requests[0].body == {
            "clientId": "fake-client-id",
            "clientSecret": "fake-client-secret",
            "grantType": "refresh_token",
            "refreshToken": "kiro-refresh-0",
        }
        assert "json" in fake.refresh_requests[0].headers["content-type"]
        assert json.loads(path.read_text())["refreshToken"] == "kiro-refresh-1"


def test_idc_client_from_account_config(tmp_path: Path) -> None:
    with FakeKiro(auth_method="idc", client_id="cfg-id", client_secret="cfg-secret") as fake:
        path = fake.write_token_file(tmp_path / "t.json", expires_at=expiry_in(0), registration=False)

        async def main() -> None:
            async with httpx.AsyncClient() as http:
                acct = account(fake, path, idc=True, client_id="cfg-id", client_secret="cfg-secret")
                await KiroProvider(acct, http).refresh_credentials()

        asyncio.run(main())
        assert fake.refresh_count == 1


def test_idc_without_registration_is_a_config_error(tmp_path: Path) -> None:
    with FakeKiro(auth_method="idc") as fake:
        path = fake.write_token_file(tmp_path / "t.json", registration=False)
        (tmp_path / "unrelated.json").write_text(json.dumps({"clientId": "x", "clientSecret": "y"}))
        acct = AccountConfig(name="k", provider="kiro", credentials=str(path))
        with pytest.raises(ConfigError, match="client registration"):
            KiroProvider.validate_account(acct)


def test_missing_file_and_bad_method(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        KiroProvider.validate_account(AccountConfig(name="k", provider="kiro", credentials=str(tmp_path / "nope.json")))
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"accessToken": "a", "refreshToken": "r", "authMethod": "external_idp"}))
    with pytest.raises(ConfigError, match="not supported"):
        KiroProvider.validate_account(AccountConfig(name="k", provider="kiro", credentials=str(path)))


def test_single_flight(tmp_path: Path) -> None:
    with FakeKiro(refresh_delay=0.2) as fake:
        path = fake.write_token_file(tmp_path / "t.json", expires_at=expiry_in(60))

        async def main() -> None:
            async with httpx.AsyncClient() as http:
                provider = KiroProvider(account(fake, path), http)
                await asyncio.gather(
                    *[provider.refresh_credentials() for _ in range(5)],
                    *[provider.refresh_credentials(force=True) for _ in range(3)],
                )

        asyncio.run(main())
        assert fake.refresh_count == 1


def test_rotation_written_before_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeKiro() as fake:
        path = fake.write_token_file(tmp_path / "t.json", expires_at=expiry_in(60))
        before = path.read_text()

        def broken_write(path, data):
            raise OSError("disk full")

        monkeypatch.setattr(creds_module, "write_json_atomic", broken_write)

        async def main() -> KiroProvider:
            async with httpx.AsyncClient() as http:
                provider = KiroProvider(account(fake, path), http)
                with pytest.raises(OSError):
                    await provider.refresh_credentials()
                return provider

        provider = asyncio.run(main())
        assert provider.credentials.access_token == "kiro-access-0"  # the new token was never adopted
        assert path.read_text() == before


def test_rejected_refresh_token_makes_account_unusable(tmp_path: Path) -> None:
    with FakeKiro() as fake:
        path = fake.write_token_file(tmp_path / "t.json", expires_at=expiry_in(0))
        fake.refresh_token = "someone-else-rotated-it"

        async def main() -> None:
            async with httpx.AsyncClient() as http:
                with pytest.raises(AccountUnusable, match="log in"):
                    await KiroProvider(account(fake, path), http).refresh_credentials()

        asyncio.run(main())


def test_token_refreshed_by_ide_is_adopted(tmp_path: Path) -> None:
    with FakeKiro() as fake:
        path = fake.write_token_file(tmp_path / "t.json")

        async def main() -> None:
            async with httpx.AsyncClient() as http:
                provider = KiroProvider(account(fake, path), http)
                rejected = provider.credentials.access_token
                # the IDE refreshes meanwhile and rewrites the file
                data = json.loads(path.read_text())
                data["accessToken"], data["refreshToken"] = "ide-access", "ide-refresh"
                path.write_text(json.dumps(data))
                provider._rejected_tokens = [rejected]
                await provider.refresh_credentials(force=True)
                assert provider.credentials.access_token == "ide-access"

        asyncio.run(main())
        assert fake.refresh_count == 0


def test_the_background_refresh_replaces_a_token_before_requests_would(tmp_path: Path) -> None:
    with FakeKiro() as fake:
        path = fake.write_token_file(tmp_path / "kiro-auth-token.json", expires_at=expiry_in(11 * 60))

        async def main() -> None:
            async with httpx.AsyncClient() as http:
                provider = KiroProvider(account(fake, path), http)
                await provider.refresh_credentials()  # 11 minutes left: a request does not refresh yet
                assert fake.refresh_count == 0
                await asyncio.gather(*(provider.refresh_ahead(120) for _ in range(3)))  # the background one does

        asyncio.run(main())
        assert fake.refresh_count == 1
        assert parse_expiry(json.loads(path.read_text())["expiresAt"]) > parse_expiry(expiry_in(3500))
