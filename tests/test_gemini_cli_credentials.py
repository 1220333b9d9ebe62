"""Google OAuth refresh: single flight, atomic write-back keeping every field, mode 0600, re-login errors."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time

import httpx
import pytest

from llmbridge.errors import AccountUnusable
from llmbridge.providers.gemini_cli.credentials import CLIENT_ID, GoogleCredentials
from tests.fakes.code_assist import FakeCodeAssist


@pytest.fixture
def fake():
    with FakeCodeAssist() as server:
        yield server


def run(coro):
    return asyncio.run(coro)


async def refresh_many(creds: GoogleCredentials, n: int, force: bool = False) -> None:
    async with httpx.AsyncClient() as http:
        await asyncio.gather(*(creds.refresh(http, force=force) for _ in range(n)))


def test_five_concurrent_requests_cause_one_refresh(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    old = fake.write_credentials(path, expired=True)
    fake.token_delay = 0.2  # keep the refresh in flight while the others arrive
    creds = GoogleCredentials(path, fake.token_url)
    run(refresh_many(creds, 5))
    assert fake.refresh_count == 1
    assert creds.access_token != old["access_token"] and creds.access_token in fake.access_tokens
    form = fake.calls("/token")[0].body
    assert form == {
        "refresh_token": old["refresh_token"],
        "client_id": CLIENT_ID,
        "client_secret": form["client_secret"],
        "grant_type": "refresh_token",
    }


def test_refresh_writes_atomically_keeping_other_fields(fake, tmp_path):
    path = tmp_path / "oauth_creds.json"
    old = fake.write_credentials(path, expired=True, custom_field={"keep": True})
    os.chmod(path, 0o644)
    before = time.time()
    run(refresh_many(GoogleCredentials(path, fake.token_url), 1))
    saved = json.loads(path.read_text())
    assert saved["custom_field"] == {"keep": True}
    assert saved["refresh_token"] == old["refresh_token"]  # Google returned none: the old one stays
    assert saved["access_token"] != old["access_token"]
    assert saved["id_token"] == "eyJfake.id.token.refreshed"
    assert before * 1000 + 3599_000 <= saved["expiry_date"] <= time.time() * 1000 + 3600_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["oauth_creds.json"]  # no temp file left behind


def test_rotated_refresh_token_is_stored(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"access_token": "a", "refresh_token": "r1", "expiry_date": 0}))

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "a2", "refresh_token": "r2", "expires_in": 60})

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            await GoogleCredentials(path, "http://token.invalid/token").refresh(http)

    run(go())
    saved = json.loads(path.read_text())
    assert saved["refresh_token"] == "r2" and saved["access_token"] == "a2"


def test_fresh_token_is_not_refreshed_but_one_expiring_within_5_minutes_is(fake, tmp_path):
    path = tmp_path / "c.json"
    data = fake.write_credentials(path)
    clock = [time.time()]
    creds = GoogleCredentials(path, fake.token_url, clock=lambda: clock[0])
    run(refresh_many(creds, 1))
    assert fake.refresh_count == 0
    clock[0] = data["expiry_date"] / 1000 - 299
    run(refresh_many(creds, 1))
    assert fake.refresh_count == 1


def test_forced_refresh_after_401_happens_once_for_many_failures(fake, tmp_path):
    path = tmp_path / "c.json"
    fake.write_credentials(path)
    creds = GoogleCredentials(path, fake.token_url)
    creds.reject(creds.access_token)
    run(refresh_many(creds, 5, force=True))
    run(refresh_many(creds, 3, force=True))  # late callers of the same 401 wave
    assert fake.refresh_count == 1


def test_forced_refresh_without_recorded_401_refreshes(fake, tmp_path):
    path = tmp_path / "c.json"
    fake.write_credentials(path)
    run(refresh_many(GoogleCredentials(path, fake.token_url), 1, force=True))
    assert fake.refresh_count == 1


def test_file_refreshed_by_the_cli_is_picked_up_without_refreshing(fake, tmp_path):
    path = tmp_path / "c.json"
    fake.write_credentials(path, expired=True)
    creds = GoogleCredentials(path, fake.token_url)
    assert creds.needs_refresh()
    time.sleep(0.01)
    fake.write_credentials(path)  # the Gemini CLI wrote a fresh token meanwhile
    run(refresh_many(creds, 1))
    assert fake.refresh_count == 0 and not creds.needs_refresh()


def test_invalid_grant_asks_to_log_in_again(fake, tmp_path):
    path = tmp_path / "c.json"
    fake.write_credentials(path, expired=True, refresh_token="1//revoked")
    with pytest.raises(AccountUnusable) as info:
        run(refresh_many(GoogleCredentials(path, fake.token_url), 1))
    assert "invalid_grant" in info.value.message and "log in again with the Gemini CLI" in info.value.message
    assert json.loads(path.read_text())["refresh_token"] == "1//revoked"  # file untouched


def test_all_waiters_see_the_failure(fake, tmp_path):
    path = tmp_path / "c.json"
    fake.write_credentials(path, expired=True)
    fake.token_error = (401, {"error": "unauthorized_client"})
    fake.token_delay = 0.1
    creds = GoogleCredentials(path, fake.token_url)

    async def go() -> list:
        async with httpx.AsyncClient() as http:
            return await asyncio.gather(*(creds.refresh(http) for _ in range(3)), return_exceptions=True)

    results = run(go())
    assert all(isinstance(r, AccountUnusable) for r in results) and fake.refresh_count == 1


def test_missing_or_broken_file(fake, tmp_path):
    path = tmp_path / "c.json"
    with pytest.raises(AccountUnusable, match="cannot read"):
        GoogleCredentials(path, fake.token_url).needs_refresh()
    data = fake.write_credentials(path)
    creds = GoogleCredentials(path, fake.token_url)
    assert creds.access_token == data["access_token"]
    path.write_text("{half")  # the CLI is rewriting it: the last good copy stays in use
    assert creds.access_token == data["access_token"]


def test_the_background_refresh_replaces_a_token_before_requests_would(fake, tmp_path):
    path = tmp_path / "c.json"
    fake.write_credentials(path, expiry_date=int((time.time() + 6 * 60) * 1000))  # 6 minutes left
    creds = GoogleCredentials(path, fake.token_url)
    assert not creds.needs_refresh()  # a request would not refresh it yet
    assert creds.needs_refresh(ahead=120)  # the background refresh (two looks ahead) does

    async def refresh_ahead() -> None:
        async with httpx.AsyncClient() as http:
            await asyncio.gather(*(creds.refresh_if_needed(http, ahead=120) for _ in range(3)))

    run(refresh_ahead())
    assert fake.refresh_count == 1 and not creds.needs_refresh(ahead=120)
