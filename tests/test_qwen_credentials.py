"""Qwen OAuth refresh: before expiry and on demand, single flight, the rotated refresh token written
atomically (0600) before use, and a dead refresh token marking the account unusable."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time

import httpx
import pytest

from llmbridge.errors import AccountUnusable, UpstreamUnavailable
from llmbridge.providers.qwen.credentials import CLIENT_ID, QwenCredentials
from tests.fakes.qwen import FakeQwen


@pytest.fixture
def fake():
    with FakeQwen() as server:
        yield server


async def refresh_many(creds: QwenCredentials, n: int, force: bool = False) -> None:
    async with httpx.AsyncClient() as http:
        await asyncio.gather(*(creds.refresh(http, force=force) for _ in range(n)))


def test_expiring_token_is_refreshed_once_for_concurrent_callers(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    old = fake.write_credentials(path, expired=True)
    creds = QwenCredentials(path, fake.token_url)
    asyncio.run(refresh_many(creds, 5))
    assert len(fake.refresh_requests) == 1
    assert fake.refresh_requests[0] == {
        "grant_type": "refresh_token",
        "refresh_token": old["refresh_token"],
        "client_id": CLIENT_ID,
    }
    assert creds.access_token in fake.access_tokens


def test_rotated_refresh_token_is_on_disk_0600_before_use(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    old = fake.write_credentials(path, expired=True, custom={"keep": 1})
    os.chmod(path, 0o644)
    before = time.time()
    asyncio.run(refresh_many(QwenCredentials(path, fake.token_url), 1))
    saved = json.loads(path.read_text())
    assert saved["refresh_token"] != old["refresh_token"] and saved["refresh_token"] in fake.refresh_tokens
    assert saved["access_token"] in fake.access_tokens and saved["custom"] == {"keep": 1}
    assert saved["resource_url"] == "portal.qwen.ai"
    assert before * 1000 + 3500_000 < saved["expiry_date"] < time.time() * 1000 + 3601_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))


def test_valid_token_is_kept_until_30_seconds_before_expiry(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path, expiry_date=int(time.time() * 1000 + 120_000))
    creds = QwenCredentials(path, fake.token_url)
    assert not creds.needs_refresh()
    creds.clock = lambda: time.time() + 100  # 20 s before expiry
    assert creds.needs_refresh()


def test_forced_refresh_after_a_401_replaces_the_token_once(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    old = fake.write_credentials(path)
    creds = QwenCredentials(path, fake.token_url)
    creds.reject(old["access_token"])
    asyncio.run(refresh_many(creds, 3, force=True))
    assert len(fake.refresh_requests) == 1 and creds.access_token != old["access_token"]
    assert creds.fresh()


def test_dead_refresh_token_marks_the_account_unusable_and_keeps_the_file(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    old = fake.write_credentials(path, expired=True)
    fake.dead_refresh = True
    with pytest.raises(AccountUnusable) as caught:
        asyncio.run(refresh_many(QwenCredentials(path, fake.token_url), 1))
    assert "invalid_grant" in caught.value.message and "log in again" in caught.value.message
    assert json.loads(path.read_text()) == old


def test_token_endpoint_failure_is_transient(tmp_path):
    path = tmp_path / "oauth_creds.json"
    path.write_text(json.dumps({"access_token": "a", "refresh_token": "r", "expiry_date": 0}))
    creds = QwenCredentials(path, "http://127.0.0.1:9/token")  # nothing listens on the discard port
    with pytest.raises(UpstreamUnavailable):
        asyncio.run(refresh_many(creds, 1))


def test_file_changed_by_qwen_code_is_reread(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path)
    creds = QwenCredentials(path, fake.token_url)
    first = creds.access_token
    time.sleep(0.01)
    newer = fake.write_credentials(path, resource_url="other.example")
    assert creds.access_token == newer["access_token"] != first
    assert creds.resource_url == "other.example"


def test_refresh_waits_for_qwen_codes_lock_and_uses_its_token(fake, tmp_path):
    """Qwen Code holds oauth_creds.lock while it refreshes: the bridge waits, re-reads the file, and
    does not spend the (rotated) refresh token a second time."""
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path, expired=True)
    lock = tmp_path / "oauth_creds.lock"
    lock.write_text("qwen-code-lock-id")
    creds = QwenCredentials(path, fake.token_url)

    async def qwen_code_refreshes() -> None:
        await asyncio.sleep(0.3)
        fake.write_credentials(path)  # what Qwen Code wrote with its own refresh
        lock.unlink()

    async def both() -> None:
        async with httpx.AsyncClient() as http:
            await asyncio.gather(creds.refresh(http), qwen_code_refreshes())

    asyncio.run(both())
    assert fake.refresh_requests == [] and creds.access_token in fake.access_tokens
    assert not lock.exists()


def test_a_stale_lock_is_removed_and_ours_released(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path, expired=True)
    lock = tmp_path / "oauth_creds.lock"
    lock.write_text("crashed-process")
    old = time.time() - 60
    os.utime(lock, (old, old))
    asyncio.run(refresh_many(QwenCredentials(path, fake.token_url), 1))
    assert len(fake.refresh_requests) == 1 and not lock.exists()
    assert not list(tmp_path.glob("*.stale.*"))


def test_a_lock_held_too_long_is_a_transient_error(fake, tmp_path, monkeypatch):
    from llmbridge.providers.qwen import credentials

    monkeypatch.setattr(credentials, "LOCK_ATTEMPTS", 3)
    path = tmp_path / "oauth_creds.json"
    fake.write_credentials(path, expired=True)
    (tmp_path / "oauth_creds.lock").write_text("busy")
    with pytest.raises(UpstreamUnavailable, match="oauth_creds.lock"):
        asyncio.run(refresh_many(QwenCredentials(path, fake.token_url), 1))
    assert fake.refresh_requests == [] and (tmp_path / "oauth_creds.lock").read_text() == "busy"


def test_background_refresh_replaces_a_token_ahead_of_the_request_margin(fake, tmp_path):
    """`refresh_if_needed(ahead=...)` (llmbridge.probes) refreshes a token that requests would still
    use for a while; without `ahead` the same token is kept."""
    path = tmp_path / "oauth_creds.json"
    old = fake.write_credentials(path, expiry_date=int(time.time() * 1000 + 120_000))
    creds = QwenCredentials(path, fake.token_url)

    async def background(ahead: float) -> None:
        async with httpx.AsyncClient() as http:
            await asyncio.gather(*(creds.refresh_if_needed(http, ahead=ahead) for _ in range(3)))

    asyncio.run(background(0))
    assert fake.refresh_requests == [] and creds.access_token == old["access_token"]
    asyncio.run(background(120))
    assert len(fake.refresh_requests) == 1 and creds.access_token != old["access_token"]


def test_the_health_probe_is_a_forced_refresh(fake, tmp_path):
    from llmbridge.config import AccountConfig
    from llmbridge.providers.qwen.provider import QwenProvider

    path = tmp_path / "oauth_creds.json"
    old = fake.write_credentials(path)
    account = AccountConfig(name="q", provider="qwen", credentials=str(path), token_url=fake.token_url)

    async def probe() -> bool:
        async with httpx.AsyncClient() as http:
            return await QwenProvider(account, http).probe()

    assert asyncio.run(probe()) is True
    assert len(fake.refresh_requests) == 1 and json.loads(path.read_text())["access_token"] != old["access_token"]
    fake.refresh_tokens.clear()  # the login is gone: the probe says so
    with pytest.raises(AccountUnusable):
        asyncio.run(probe())
