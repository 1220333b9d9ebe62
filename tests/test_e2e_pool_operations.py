"""The pool's operations through the real bridge and strict fakes, with faults injected: session
affinity, the first-token timeout, pool state across a restart, health probes, config reload under
traffic, and fifty concurrent streams over three accounts with one failing."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, Reply, text_reply


def account(name: str, fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "api_key": fake.api_key, "base_url": fake.base_url,
            "models": ["gpt-test"], **extra}  # fmt: skip


def client(bridge: BridgeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=30)


def ask(bridge: BridgeProcess, messages: list[dict[str, str]]) -> tuple[str | None, str, str]:
    """(answer, account, attempts) of one non-stream request."""
    raw = client(bridge).chat.completions.with_raw_response.create(model="gpt-test", messages=messages)  # type: ignore[arg-type]
    return (
        raw.parse().choices[0].message.content,
        raw.headers["x-llmbridge-account"],
        raw.headers["x-llmbridge-attempts"],
    )


def status(bridge: BridgeProcess) -> dict[str, dict[str, Any]]:
    answer = httpx.get(bridge.base_url + "/llmbridge/status", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    assert answer.status_code == 200, answer.text
    return {a["name"]: a for a in answer.json()["accounts"]}


def turns(topic: str, count: int) -> list[dict[str, str]]:
    """A conversation's history after `count` user turns: every turn repeats the first message."""
    messages = [{"role": "user", "content": f"let us talk about {topic}"}]
    for n in range(1, count):
        messages += [{"role": "assistant", "content": f"reply {n}"}, {"role": "user", "content": f"more, {n}"}]
    return messages


def rate_limited(body: Any) -> Reply:
    error = {"error": {"message": "slow down", "type": "rate_limit"}}
    return Reply(status=429, error_body=error, headers={"retry-after": "600"})


@pytest.fixture
def three_fakes():
    with FakeOpenAI() as a, FakeOpenAI() as b, FakeOpenAI() as c:
        for name, fake in (("a", a), ("b", b), ("c", c)):
            fake.default = text_reply(f"from {name}")
        yield {"a": a, "b": b, "c": c}


def test_a_conversation_stays_on_its_account_and_moves_when_it_cools(tmp_path: Path, three_fakes) -> None:
    config = write_config(tmp_path / "bridge.toml", [account(n, f) for n, f in three_fakes.items()], record=False)
    with BridgeProcess(tmp_path, config) as bridge:
        first = {ask(bridge, turns("tides", n))[1] for n in range(1, 5)}
        assert len(first) == 1, f"one conversation went to {first}"  # round-robin would spread it
        pinned = first.pop()
        others = {ask(bridge, turns(f"topic {n}", 1))[1] for n in range(4)}
        assert len(others) > 1  # new conversations are still spread
        assert status(bridge)[pinned]["pinned_conversations"] >= 1

        three_fakes[pinned].responder = rate_limited  # the pinned account starts cooling
        text, moved, attempts = ask(bridge, turns("tides", 5))
        assert moved != pinned and attempts == "2" and text == f"from {moved}"
        for n in range(6, 9):  # and the conversation sticks to the account it moved to
            assert ask(bridge, turns("tides", n))[1:] == (moved, "1")
        assert status(bridge)[pinned]["state"] == "cooling"


def test_affinity_off_spreads_a_conversation(tmp_path: Path, three_fakes) -> None:
    config = write_config(
        tmp_path / "bridge.toml", [account(n, f) for n, f in three_fakes.items()], record=False, session_affinity=False
    )
    with BridgeProcess(tmp_path, config) as bridge:
        assert len({ask(bridge, turns("tides", n))[1] for n in range(1, 4)}) == 3


def test_a_silent_upstream_is_abandoned_and_the_client_sees_one_clean_stream(tmp_path: Path) -> None:
    with FakeOpenAI() as silent, FakeOpenAI() as quiet, FakeOpenAI() as good:
        silent.default = text_reply("never seen", header_delay=6)  # not even a response head
        quiet.default = text_reply("never seen", pieces=1, delay=6)  # a head and a role chunk, then nothing
        good.default = text_reply("from the good account")
        accounts = [account("silent", silent), account("quiet", quiet), account("good", good)]
        config = write_config(
            tmp_path / "bridge.toml", accounts, record=False, strategy="fill-first", first_token_timeout=1
        )
        with BridgeProcess(tmp_path, config) as bridge:
            started = time.monotonic()
            stream = client(bridge).chat.completions.with_raw_response.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            chunks = list(stream.parse())
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "from the good account"
            assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
            assert stream.headers["x-llmbridge-account"] == "good" and stream.headers["x-llmbridge-attempts"] == "3"
            assert time.monotonic() - started < 10  # two abandoned after 1 s each, not waited for (6 s each)
            accounts_now = status(bridge)
            for name in ("silent", "quiet"):
                assert accounts_now[name]["state"] == "cooling"
                assert "no first token within 1 s" in accounts_now[name]["reason"]


def test_the_last_account_that_can_answer_is_waited_for(tmp_path: Path) -> None:
    with FakeOpenAI() as slow:
        slow.default = text_reply("slow but sure", header_delay=2)
        config = write_config(tmp_path / "bridge.toml", [account("slow", slow)], record=False, first_token_timeout=1)
        with BridgeProcess(tmp_path, config) as bridge:
            assert ask(bridge, turns("patience", 1)) == ("slow but sure", "slow", "1")


def test_a_restart_keeps_cooldowns_dead_reasons_and_counts(tmp_path: Path) -> None:
    with FakeOpenAI() as limited, FakeOpenAI() as revoked, FakeOpenAI() as good:
        limited.responder = rate_limited
        revoked.api_key = "sk-the-key-the-upstream-now-wants"  # the account's key is refused: 401
        good.default = text_reply("from good")
        accounts = [account("limited", limited), account("revoked", revoked, api_key="sk-upstream-secret"),
                    account("good", good)]  # fmt: skip
        config = write_config(tmp_path / "bridge.toml", accounts, record=False, strategy="fill-first")
        with BridgeProcess(tmp_path, config) as bridge:
            assert ask(bridge, turns("restarts", 1))[1:] == ("good", "3")
            before = status(bridge)
        assert before["limited"]["state"] == "cooling" and before["revoked"]["state"] == "dead"

        state_file = tmp_path / "recordings" / "pool_state.db"
        assert state_file.stat().st_mode & 0o777 == 0o600
        with sqlite3.connect(state_file) as db:
            stored = repr(db.execute("select * from pool_state").fetchall())
        assert "sk-upstream-secret" not in stored and "revoked" in stored

        calls = len(limited.requests), len(revoked.requests)
        with BridgeProcess(tmp_path, config) as bridge:
            after = status(bridge)
            assert after["limited"]["state"] == "cooling"
            assert after["limited"]["cooling_until"] == before["limited"]["cooling_until"]
            assert after["revoked"]["state"] == "dead" and after["revoked"]["reason"] == before["revoked"]["reason"]
            assert after["good"]["requests_today"] == 1
            assert ask(bridge, turns("after the restart", 1))[1:] == ("good", "1")
        assert (len(limited.requests), len(revoked.requests)) == calls  # neither was hammered on start


def test_a_health_probe_revives_a_dead_account(tmp_path: Path) -> None:
    with FakeOpenAI() as flaky, FakeOpenAI() as good:
        flaky.default, good.default = text_reply("from flaky"), text_reply("from good")
        configured_key = flaky.api_key
        flaky.api_key = "sk-something-else-for-now"  # the upstream refuses the account's key
        accounts = [account("flaky", flaky, api_key=configured_key), account("good", good)]
        config = write_config(tmp_path / "bridge.toml", accounts, record=False, strategy="fill-first", probe_interval=1)
        with BridgeProcess(tmp_path, config) as bridge:
            assert ask(bridge, turns("probes", 1))[1] == "good"
            assert status(bridge)["flaky"]["state"] == "dead"

            flaky.api_key = configured_key  # fixed upstream: the key is accepted again
            deadline = time.time() + 15
            while (flaky_now := status(bridge)["flaky"])["state"] != "healthy":
                assert time.time() < deadline, flaky_now
                time.sleep(0.2)
            assert flaky_now["last_probe"]["result"] == "ok" and flaky.model_listings >= 1
            assert ask(bridge, turns("probes again", 1))[1] == "flaky"


def test_reload_adds_and_removes_accounts_under_traffic_with_nothing_dropped(tmp_path: Path, three_fakes) -> None:
    for name, fake in three_fakes.items():
        fake.default = text_reply(f"from {name}", pieces=4, delay=0.05)
    config = tmp_path / "bridge.toml"
    fakes = three_fakes
    write_config(config, [account("a", fakes["a"]), account("b", fakes["b"])], record=False)
    with BridgeProcess(tmp_path, config) as bridge:
        stop = threading.Event()
        results: list[str] = []
        failures: list[BaseException] = []

        def traffic(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    text, name, _ = ask(bridge, turns(f"worker {worker} request {n}", 1))
                    assert text == f"from {name}"
                    results.append(name)
                except BaseException as error:  # noqa: BLE001 - every failure is reported below
                    failures.append(error)

        workers = [threading.Thread(target=traffic, args=(w,)) for w in range(4)]
        for worker in workers:
            worker.start()
        for reloads, accounts in enumerate((["a", "b", "c"], ["b", "c"], ["c"]), start=1):
            time.sleep(1.0)
            write_config(config, [account(n, fakes[n]) for n in accounts], record=False)
            wait_for_output(bridge, f"config {config} reloaded", reloads)
        time.sleep(1.0)
        stop.set()
        for worker in workers:
            worker.join(30)
        assert not failures, failures[:3]
        assert len(results) > 20 and {"a", "b", "c"} <= set(results)
        assert results[-4:] == ["c"] * 4
        assert list(status(bridge)) == ["c"]


def wait_for_output(bridge: BridgeProcess, text: str, count: int, timeout: float = 10) -> None:
    """Until `text` is in the bridge's output `count` times."""
    deadline = time.time() + timeout
    while bridge.output().count(text) < count:
        assert time.time() < deadline, bridge.output()[-2000:]
        time.sleep(0.05)


def test_fifty_concurrent_streams_over_three_accounts_with_one_failing(tmp_path: Path) -> None:
    with FakeOpenAI() as one, FakeOpenAI() as two, FakeOpenAI() as broken:
        one.default = text_reply("an answer in several pieces", pieces=5, delay=0.02)
        two.default = one.default
        calls = iter(range(10_000))
        lock = threading.Lock()

        def failing(body: Any) -> Reply:
            with lock:
                n = next(calls)
            if n % 2:  # fails before any content: the next account answers instead
                return Reply(status=500, error_body={"error": {"message": "internal error", "type": "server_error"}})
            return text_reply("cut off mid", pieces=3, delay=0.02, cut=True)  # fails after content was sent

        broken.responder = failing
        accounts = [account("one", one), account("two", two), account("broken", broken)]
        config = write_config(tmp_path / "bridge.toml", accounts, record=False)
        with BridgeProcess(tmp_path, config) as bridge:

            def stream(n: int) -> str:
                try:
                    chunks = client(bridge).chat.completions.create(
                        model="gpt-test",
                        messages=turns(f"stream {n}", 1),
                        stream=True,  # type: ignore[arg-type]
                    )
                    pieces = list(chunks)
                except openai.APIError as error:  # a clean failure: an error in the OpenAI dialect
                    assert not isinstance(error, openai.APIConnectionError), error
                    return "failed cleanly"
                text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
                assert text == "an answer in several pieces", text
                assert pieces[-1].usage is not None or pieces[-1].choices[0].finish_reason == "stop"
                return "complete"

            with ThreadPoolExecutor(max_workers=50) as pool:
                outcomes = list(pool.map(stream, range(50)))
            assert len(outcomes) == 50 and outcomes.count("complete") >= 25 and "failed cleanly" in outcomes
            assert all(s["in_flight"] == 0 for s in status(bridge).values())
        assert broken.requests, "the failing account was never tried"
