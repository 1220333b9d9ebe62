"""Replay: record through the real bridge, export a fixture, answer the same request again offline."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest

from llmbridge.replay import NO_MATCH_STATUS, Fixture, ReplayServer, first_difference, load_fixtures, normalize
from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.code_assist import FakeCodeAssist, text_reply

LLMBRIDGE = Path(sys.executable).parent / "llmbridge"


def test_normalize_ignores_volatile_fields_only():
    a = {"model": "m", "user_prompt_id": "x########1", "request": {"session_id": "s1", "contents": [1]}}
    b = {"model": "m", "user_prompt_id": "y########7", "request": {"session_id": "s2", "contents": [1]}}
    assert normalize(a) == normalize(b)
    assert (
        first_difference(normalize(a), {"model": "m", "request": {"contents": [2]}})
        == "body.request.contents[0] is 2, the fixture has 1"
    )


class ReplayThread:
    """A ReplayServer on its own event loop, for tests whose clients are synchronous."""

    def __init__(self, fixtures: list[Fixture]) -> None:
        self.server = ReplayServer(fixtures, chunk_size=7)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ReplayServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def account(fake_or_replay_url: str, creds: Path, project: str, token_url: str) -> dict:
    return {
        "name": "g",
        "provider": "gemini-cli",
        "credentials": str(creds),
        "base_url": fake_or_replay_url,
        "token_url": token_url,
        "project": project,
        "requests_per_minute": 1000,
    }


QUESTION = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture
def recorded_fixture(tmp_path) -> Path:
    """One exchange recorded through the real bridge against the strict fake, then exported."""
    database = tmp_path / "rec.db"
    with FakeCodeAssist() as fake:
        creds = tmp_path / "creds.json"
        fake.write_credentials(creds)
        fake.enqueue(text_reply("Teal", ", of course.", thoughts=("Pick one.",), signature="SIG"))
        config = write_config(
            tmp_path / "record.toml",
            [account(fake.base_url, creds, fake.project, fake.token_url)],
            database=str(database),
        )
        with BridgeProcess(tmp_path, config) as bridge:
            client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
            reply = client.chat.completions.create(model="gemini-2.5-flash", messages=QUESTION)
            assert reply.choices[0].message.content == "Teal, of course."
    exchange_id = sqlite3.connect(database).execute("SELECT id FROM exchanges").fetchone()[0]
    out = tmp_path / "replay"
    subprocess.run(
        [str(LLMBRIDGE), "export-fixture", exchange_id, "--db", str(database), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (path,) = out.glob("*.json")
    return path


def test_recorded_exchange_replays_offline_through_the_bridge(tmp_path, recorded_fixture):
    fixture = json.loads(recorded_fixture.read_text())
    assert fixture["provider"] == "gemini-cli" and "Bearer" not in json.dumps(fixture)
    creds = tmp_path / "replay-creds.json"
    creds.write_text(
        json.dumps(
            {"access_token": "replay-token", "refresh_token": "r", "token_type": "Bearer", "expiry_date": 4102444800000}
        )
    )
    with ReplayThread(load_fixtures([recorded_fixture])) as replay:
        config = write_config(
            tmp_path / "replay.toml",
            [account(replay.base_url, creds, fixture["request"]["body"]["project"], replay.base_url + "/token")],
            record=False,
        )
        workdir = tmp_path / "second"
        workdir.mkdir()
        with BridgeProcess(workdir, config) as bridge:
            client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
            reply = client.chat.completions.create(model="gemini-2.5-flash", messages=QUESTION)
            assert reply.choices[0].message.content == "Teal, of course."
            assert reply.choices[0].message.model_extra["reasoning_content"] == "Pick one."
            assert replay.unused() == []
            # a request the fixtures do not hold fails loudly, naming the difference
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(
                    model="gemini-2.5-flash", messages=[{"role": "user", "content": "Name a fruit."}]
                )
            assert "no fixture matches" in str(info.value) or replay.mismatches
            # (the account's start-up calls, retrieveUserQuota and listExperiments, have no fixture
            # here: they are refused too, and the bridge carries on without their answers)
            generate = [m for m in replay.mismatches if "GenerateContent" in m]
            assert generate and "contents" in generate[0]


def test_unmatched_request_gets_599(tmp_path, recorded_fixture):
    async def run() -> int:
        server = await ReplayServer(load_fixtures([recorded_fixture])).start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /nope HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        writer.close()
        await server.close()
        return status

    assert asyncio.run(run()) == NO_MATCH_STATUS


def test_printed_base_url_is_used_as_is_for_an_openai_fixture(tmp_path):
    """`llmbridge replay` prints the base_url for each provider of its fixtures (OpenAI-compatible ones
    end in /v1); pasted verbatim into the account, the recorded answer comes back."""
    from tests.fakes.openai_upstream import FakeOpenAI
    from tests.fakes.openai_upstream import text_reply as openai_text

    database = tmp_path / "rec.db"
    question = [{"role": "user", "content": "Say hi."}]
    with FakeOpenAI() as fake:
        fake.enqueue(openai_text("Hi from the record"))
        config = write_config(
            tmp_path / "record.toml",
            [{"name": "o", "provider": "openai", "api_key": fake.api_key, "base_url": fake.base_url, "models": ["m"]}],
            database=str(database),
        )
        with BridgeProcess(tmp_path, config) as bridge:
            openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY).chat.completions.create(
                model="m", messages=question
            )
    exchange_id = sqlite3.connect(database).execute("SELECT id FROM exchanges").fetchone()[0]
    out = tmp_path / "fixtures"
    subprocess.run(
        [str(LLMBRIDGE), "export-fixture", exchange_id, "--db", str(database), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    replay = subprocess.Popen([str(LLMBRIDGE), "replay", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert replay.stdout is not None
        header = [replay.stdout.readline() for _ in range(2)]
        assert header[1].startswith("  provider 'openai': base_url = "), header
        base_url = header[1].split(" = ", 1)[1].strip().strip('"')
        assert base_url.endswith("/v1")
        config = write_config(
            tmp_path / "replay.toml",
            [{"name": "o", "provider": "openai", "api_key": "sk-replayed", "base_url": base_url, "models": ["m"]}],
            record=False,
        )
        workdir = tmp_path / "second"
        workdir.mkdir()
        with BridgeProcess(workdir, config) as bridge:
            reply = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY).chat.completions.create(
                model="m", messages=question
            )
            assert reply.choices[0].message.content == "Hi from the record"
    finally:
        replay.terminate()
        replay.wait(10)


def test_a_qwen_exchange_replays_with_new_session_ids(tmp_path):
    """Recorded against the strict fake Qwen, exported, and answered again offline by a bridge whose
    session secret (so `metadata.sessionId` / `promptId`) is new: the ids are volatile, the rest matches."""
    from tests.fakes.qwen import FakeQwen, cumulative_reply

    database = tmp_path / "rec.db"
    creds = tmp_path / "creds.json"
    with FakeQwen() as fake:
        fake.write_credentials(creds)
        fake.enqueue(cumulative_reply("Teal", ", of course.", reasoning="Pick one."))
        account = {"name": "q", "provider": "qwen", "credentials": str(creds), "base_url": fake.base_url}
        config = write_config(tmp_path / "record.toml", [account], database=str(database))
        with BridgeProcess(tmp_path, config) as bridge:
            client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
            assert client.chat.completions.create(model="coder-model", messages=QUESTION).choices[0].message.content
    exchange_id = sqlite3.connect(database).execute("SELECT id FROM exchanges").fetchone()[0]
    out = tmp_path / "replay"
    subprocess.run(
        [str(LLMBRIDGE), "export-fixture", exchange_id, "--db", str(database), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (path,) = out.glob("*.json")
    fixture = json.loads(path.read_text())
    assert fixture["provider"] == "qwen" and "fake-qwen-access" not in json.dumps(fixture)
    with ReplayThread(load_fixtures([path])) as replay:
        account = {"name": "q", "provider": "qwen", "credentials": str(creds), "base_url": replay.base_url + "/v1"}
        workdir = tmp_path / "second"
        workdir.mkdir()
        with BridgeProcess(workdir, write_config(tmp_path / "replay.toml", [account], record=False)) as bridge:
            client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
            reply = client.chat.completions.create(model="coder-model", messages=QUESTION)
            assert reply.choices[0].message.content == "Teal, of course."
            assert reply.choices[0].message.model_extra["reasoning_content"] == "Pick one."
            assert replay.unused() == [] and replay.mismatches == []
