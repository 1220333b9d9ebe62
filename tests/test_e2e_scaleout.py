"""Scale-out through real processes: `scripts/serve-many` (mitmdump bridges behind a real HAProxy),
a real redis-server holding the shared pool state (`state_url`), and the strict fakes.

Each test checks one promise of the README's "Scale-out" section: a cool-down one process meets
holds in the other, pacing holds across processes, one credential refresh for both, every request
recorded exactly once in the one database, answers go on when Redis stops; and the throughput of two
processes against one is measured and printed."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.bridge_process import CLIENT_KEY, write_config
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.code_assist import text_reply as gemini_reply
from tests.fakes.openai_upstream import FakeOpenAI, Reply, text_reply
from tests.scaleout_kit import RedisServer, ServeMany


def account(name: str, fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "api_key": fake.api_key, "base_url": fake.base_url,
            "models": ["gpt-test"], **extra}  # fmt: skip


def client_of(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=60)


def ask(
    base_url: str, text: str = "hello", model: str = "gpt-test", client: openai.OpenAI | None = None
) -> tuple[str | None, str]:
    """(answer, account) of one non-stream request."""
    client = client or client_of(base_url)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}])
    return raw.parse().choices[0].message.content, raw.headers["x-llmbridge-account"]


def status(base_url: str) -> dict[str, dict[str, Any]]:
    answer = httpx.get(base_url + "/llmbridge/status", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert answer.status_code == 200, answer.text
    return {a["name"]: a for a in answer.json()["accounts"]}


def eventually(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def rate_limited() -> Reply:
    return Reply(status=429, error_body={"error": {"message": "slow down", "type": "rate_limit"}},
                 headers={"retry-after": "600"})  # fmt: skip


def test_one_processes_429_stops_the_other_from_calling_that_account(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis, FakeOpenAI() as limited, FakeOpenAI() as spare:
        limited.enqueue(rate_limited())
        limited.default, spare.default = text_reply("from limited"), text_reply("from spare")
        accounts = [account("limited", limited), account("spare", spare)]
        config = write_config(tmp_path / "bridge.toml", accounts, strategy="fill-first", state_url=redis.url,
                              record=False)  # fmt: skip
        with ServeMany(tmp_path, 2, config) as many:
            assert ask(many.bridge_url(0)) == ("from spare", "spare")  # bridge 1 met the 429 and failed over
            assert len(limited.requests) == 1
            assert eventually(lambda: status(many.bridge_url(1))["limited"]["state"] == "cooling"), many.output()
            answers = [ask(many.bridge_url(1))] + [ask(many.base_url) for _ in range(6)]
            assert answers == [("from spare", "spare")] * 7
            assert len(limited.requests) == 1, "the other process called the cooling account"


def test_pacing_holds_across_processes(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis, FakeOpenAI() as fake:
        fake.default = text_reply("paced answer", pieces=3, delay=0.25)
        accounts = [account("only", fake, max_concurrent=1, requests_per_minute=1000)]
        config = write_config(tmp_path / "bridge.toml", accounts, state_url=redis.url, record=False)
        with ServeMany(tmp_path, 2, config) as many:
            targets = [many.bridge_url(0), many.bridge_url(1)] * 3  # both processes, three requests each
            with ThreadPoolExecutor(len(targets)) as pool:
                answers = list(pool.map(lambda url: ask(url)[0], targets))
        assert answers == ["paced answer"] * 6
        assert len(fake.requests) == 6
        assert fake.max_in_flight == 1, "max_concurrent = 1 was exceeded across the two processes"


def test_one_refresh_for_concurrent_requests_on_both_processes(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis, FakeCodeAssist() as fake:
        fake.token_delay = 0.5  # a refresh long enough for the other process's requests to arrive during it
        fake.default = gemini_reply("refreshed once")
        creds = tmp_path / "oauth_creds.json"
        fake.write_credentials(creds, expired=True)
        gemini = {"name": "g1", "provider": "gemini-cli", "credentials": str(creds), "base_url": fake.base_url,
                  "token_url": fake.token_url, "requests_per_minute": 1000, "max_concurrent": 50}  # fmt: skip
        config = write_config(tmp_path / "bridge.toml", [gemini], state_url=redis.url, record=False)
        with ServeMany(tmp_path, 2, config) as many:
            targets = [many.bridge_url(0), many.bridge_url(1)] * 4
            with ThreadPoolExecutor(len(targets)) as pool:
                answers = list(pool.map(lambda url: ask(url, model="gemini-2.5-flash")[0], targets))
        assert answers == ["refreshed once"] * 8
        assert fake.refresh_count == 1, many.output()
        assert creds.stat().st_mode & 0o777 == 0o600


def test_every_request_through_haproxy_is_recorded_exactly_once(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis, FakeOpenAI() as fake:
        fake.default = text_reply("recorded")
        database = tmp_path / "recordings.db"
        config = write_config(tmp_path / "bridge.toml", [account("only", fake)], state_url=redis.url,
                              database=str(database))  # fmt: skip
        questions = [f"question number {n}" for n in range(60)]
        with ServeMany(tmp_path, 2, config) as many:
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda q: ask(many.base_url, q)[0], questions))
            logs = [many.bridge_log(0), many.bridge_log(1)]
        assert answers == ["recorded"] * len(questions)
        assert all("gpt-test" in log for log in logs), "HAProxy did not spread the requests over both bridges"
        with sqlite3.connect(database) as db:
            count, distinct = db.execute(
                "SELECT count(*), count(DISTINCT request_message_hash) FROM exchanges WHERE status = 200"
            ).fetchone()
        assert (count, distinct) == (len(questions), len(questions))


def test_answers_go_on_when_redis_stops(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as redis, FakeOpenAI() as fake:
        fake.default = text_reply("still here")
        config = write_config(tmp_path / "bridge.toml", [account("only", fake)], state_url=redis.url, record=False)
        with ServeMany(tmp_path, 2, config) as many:
            assert ask(many.base_url)[0] == "still here"
            redis.stop()
            answers = [ask(many.base_url, f"q{n}")[0] for n in range(4)]
            logs = many.bridge_log(0) + many.bridge_log(1)
        assert answers == ["still here"] * 4
        assert "this process paces, cools and pins its accounts on its own" in logs


def test_throughput_of_two_processes_against_one(tmp_path: Path) -> None:
    requests, concurrency = 150, 8
    rates: dict[int, float] = {}
    with RedisServer(tmp_path / "redis") as redis, FakeOpenAI() as fake:
        fake.default = text_reply("fast")
        config = write_config(tmp_path / "bridge.toml", [account("only", fake)], state_url=redis.url, record=False)
        for count in (1, 2):
            with ServeMany(tmp_path / f"n{count}", count, config) as many:
                client = client_of(many.base_url)  # one connection pool, as a real client keeps
                ask(many.base_url, client=client)  # warm: connections, first-request setup
                started = time.perf_counter()
                with ThreadPoolExecutor(concurrency) as pool:
                    questions = [f"q{n}" for n in range(requests)]
                    answers = list(pool.map(lambda q, c=client: ask(many.base_url, q, client=c)[0], questions))
                rates[count] = requests / (time.perf_counter() - started)
                assert answers == ["fast"] * requests
    print(f"\nthroughput through HAProxy, {requests} requests, {concurrency} at a time: "
          f"1 process {rates[1]:.0f} req/s, 2 processes {rates[2]:.0f} req/s ({rates[2] / rates[1]:.2f}x)")  # fmt: skip
    assert rates[2] > 0.3 * rates[1]  # a sanity bound only: the machine's two cores are shared
