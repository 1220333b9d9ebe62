"""End to end: the real bridge records every exchange, whole, once, without secrets.

Every test runs `mitmdump -s addons/openai_bridge.py` with `record = true` and a database in the
test's directory, drives traffic through it, then reads the database it wrote.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmbridge.recorder.browse import datasette_app
from llmbridge.recorder.metadata import QUERIES, build_metadata
from tests.bridge_process import BridgeProcess, run_bridge_expecting_failure, write_config
from tests.fakes import code_assist
from tests.fakes.code_assist import FakeCodeAssist
from tests.fakes.kiro import FakeKiro, HttpError, Text
from tests.fakes.openai_upstream import FakeOpenAI, Reply, text_reply

LLMBRIDGE = Path(sys.executable).parent / "llmbridge"
PACED_FOR_LOAD = {"requests_per_minute": 100000, "max_concurrent": 1000}


def openai_account(name: str, fake: FakeOpenAI, models: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "api_key": fake.api_key,
        "base_url": fake.base_url,
        "models": models,
        **PACED_FOR_LOAD,
        **extra,
    }


def rows(db: Path, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def count(db: Path, table: str) -> int:
    return rows(db, f"SELECT count(*) AS n FROM {table}")[0]["n"]


def wait_for_exchanges(db: Path, expected: int, timeout: float = 10) -> None:
    """The recorder writes on its own thread: poll until `expected` exchanges are in."""
    deadline = time.time() + timeout
    seen = -1
    while time.time() < deadline:
        seen = count(db, "exchanges") if db.exists() else 0
        if seen >= expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"{seen} exchanges recorded after {timeout}s, expected {expected}")


def wait_for_output(bridge: BridgeProcess, text: str, count: int, timeout: float) -> None:
    """Until the bridge's console shows `text` `count` times (fails after `timeout` seconds)."""
    deadline = time.time() + timeout
    while bridge.output().count(text) < count:
        assert time.time() < deadline, f"{bridge.output().count(text)} of {count} {text!r} lines"
        time.sleep(0.05)


def stop_gracefully(bridge: BridgeProcess) -> int:
    """SIGTERM, as a service manager would stop it; the exit status."""
    assert bridge.proc is not None
    bridge.stop()
    return bridge.proc.returncode


# --- 1. reliability under load ------------------------------------------------------------------------

CLIENT_KEY = "sk-client-e2e-recorder-0123456789"
KINDS = (  # (kind, how many, stream)
    ("ok", 40, False),
    ("ok", 40, True),
    ("failover", 15, False),
    ("failover", 15, True),  # first account 500, second answers
    ("rejected", 20, False),  # upstream 400: stop, no failover
    ("limited", 10, False),
    ("limited", 10, True),  # the only account for the model answers 429
    ("leave", 50, True),  # the client closes the stream after the first content chunk
)
SLOW_PIECES = 40  # a "leave" answer: this many chunks, SLOW_DELAY apart, so the client leaves mid-way
SLOW_DELAY = 0.05


def full_text(tag: str) -> str:
    return f"answer to {tag}."


def primary_reply(body: dict[str, Any]) -> Reply:
    tag = body["messages"][-1]["content"]
    kind = tag.split(":")[0]
    if kind == "failover":
        return Reply(status=500, error_body={"error": {"message": "fake: primary is down"}})
    if kind == "rejected":
        return Reply(status=400, error_body={"error": {"message": "fake: bad request", "type": "invalid"}})
    if kind == "leave":
        text = "x" * SLOW_PIECES
        return text_reply(text, pieces=SLOW_PIECES, delay=SLOW_DELAY)
    return text_reply(full_text(tag))


def secondary_reply(body: dict[str, Any]) -> Reply:
    return text_reply(full_text(body["messages"][-1]["content"]))


def limited_reply(body: dict[str, Any]) -> Reply:
    # A tiny Retry-After: the account cools down only briefly, so every request makes exactly one attempt.
    return Reply(
        status=429,
        error_body={"error": {"message": "fake: slow down", "type": "rate_limit"}},
        headers={"retry-after": "0.05"},
    )


async def one_request(client: httpx.AsyncClient, kind: str, tag: str, stream: bool) -> dict[str, Any]:
    model = "gpt-limited" if kind == "limited" else "gpt-test"
    body = {"model": model, "messages": [{"role": "user", "content": tag}], "stream": stream}
    if not stream:
        response = await client.post("/v1/chat/completions", json=body)
        text = response.json()["choices"][0]["message"]["content"] if response.status_code == 200 else None
        return {"tag": tag, "kind": kind, "stream": stream, "status": response.status_code, "text": text}
    received = ""
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"tag": tag, "kind": kind, "stream": stream, "status": response.status_code, "text": None}
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices") or []:
                received += choice.get("delta", {}).get("content") or ""
            if kind == "leave" and received:
                break  # leaving the block closes the connection mid-stream
    return {"tag": tag, "kind": kind, "stream": stream, "status": 200, "text": received}


async def run_load(base_url: str) -> list[dict[str, Any]]:
    jobs = [(kind, f"{kind}:{'s' if stream else 'n'}:{i}", stream) for kind, n, stream in KINDS for i in range(n)]
    # Interleave the kinds, so failures, failovers and departures overlap with successes.
    jobs = [jobs[i] for i in sorted(range(len(jobs)), key=lambda i: (i * 7919) % len(jobs))]
    limits = httpx.Limits(max_connections=len(jobs), max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=30, limits=limits
    ) as client:
        return await asyncio.gather(*(one_request(client, *job) for job in jobs))


def test_200_concurrent_exchanges_are_each_recorded_once_and_whole(tmp_path):
    total = sum(n for _, n, _ in KINDS)
    assert total == 200
    db = tmp_path / "rec" / "bridge.db"
    with FakeOpenAI() as primary, FakeOpenAI() as secondary, FakeOpenAI() as limited:
        primary.responder, secondary.responder, limited.responder = primary_reply, secondary_reply, limited_reply
        config = write_config(
            tmp_path / "bridge.toml",
            [
                openai_account("primary", primary, ["gpt-test"]),
                openai_account("secondary", secondary, ["gpt-test"]),
                openai_account("limited", limited, ["gpt-limited"]),
            ],
            api_keys=[CLIENT_KEY],
            database=str(db),
            strategy="fill-first",
        )
        bridge = BridgeProcess(tmp_path, config).start()
        try:
            started = time.time()
            seen = asyncio.run(asyncio.wait_for(run_load(bridge.base_url), 45))
            elapsed = time.time() - started
            # A departure travels client -> mitmproxy -> relay; a stop that overtakes it would rightly
            # record the stream as interrupted. Stop once every departure was noticed (its console line).
            wait_for_output(bridge, "client disconnected", count=50, timeout=15)
        finally:
            code = stop_gracefully(bridge)  # at once: shutdown must flush what is still queued
    output = bridge.output()
    print(f"200 requests in {elapsed:.2f}s; exit {code}")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output and "not recorded" not in output and "not written" not in output, output

    # What the clients saw is what was scripted.
    expected_status = {"ok": 200, "failover": 200, "rejected": 400, "limited": 429, "leave": 200}
    for request in seen:
        assert request["status"] == expected_status[request["kind"]], request
        if request["kind"] in ("ok", "failover"):
            assert request["text"] == full_text(request["tag"]), request

    exchanges = rows(db, "SELECT * FROM exchanges")
    assert len(exchanges) == 200
    by_tag: dict[str, dict[str, Any]] = {}
    for exchange in exchanges:
        tag = json.loads(exchange["request_raw"])["messages"][-1]["content"]
        assert tag not in by_tag, f"exchange for {tag} recorded twice"
        by_tag[tag] = exchange
    assert set(by_tag) == {r["tag"] for r in seen}

    attempts: dict[str, list[dict[str, Any]]] = {}
    for attempt in rows(db, "SELECT * FROM attempts ORDER BY exchange_id, position"):
        attempts.setdefault(attempt["exchange_id"], []).append(attempt)
    for request in seen:
        exchange = by_tag[request["tag"]]
        tries = attempts.get(exchange["id"], [])
        kind, where = request["kind"], request["tag"]
        assert exchange["status"] == request["status"], where
        assert exchange["stream"] == int(request["stream"]), where
        assert exchange["key_label"] == "key1" and exchange["client_format"] == "openai", where
        assert exchange["attempt_count"] == len(tries), where
        assert [a["position"] for a in tries] == list(range(1, len(tries) + 1)), where
        for failed in tries[:-1]:
            assert failed["error_kind"] and failed["status"] >= 400, where
        if exchange["status"] == 200:
            assert tries and tries[-1]["status"] == 200 and tries[-1]["error_kind"] is None, where
            assert exchange["error_kind"] is None, where
        else:
            assert exchange["error_kind"], where
            assert all(a["error_kind"] for a in tries), where
        accounts = [a["account"] for a in tries]
        if kind == "ok":
            assert accounts == ["primary"] and exchange["account"] == "primary", where
            assert exchange["client_disconnected"] == 0 and exchange["finish_reason"] == "stop", where
            assert exchange["input_tokens"] == 11 and exchange["output_tokens"] == 7, where
        elif kind == "failover":
            assert accounts == ["primary", "secondary"] and exchange["account"] == "secondary", where
            assert tries[0]["status"] == 500 and tries[0]["error_kind"] == "upstream_unavailable", where
            assert b"primary is down" in tries[0]["response_body"], where
        elif kind == "rejected":
            assert accounts == ["primary"] and tries[0]["status"] == 400, where
            assert exchange["error_kind"] == "invalid_request", where
        elif kind == "limited":
            assert accounts == ["limited"] and tries[0]["status"] == 429, where
            assert exchange["error_kind"] == "rate_limited" == tries[0]["error_kind"], where
        if kind in ("ok", "failover"):
            answer = rows(
                db,
                "SELECT group_concat(text, '') AS t FROM parts WHERE message_hash = ?",
                (exchange["response_message_hash"],),
            )[0]["t"]
            assert answer == full_text(where), where

    # Streams the client left: marked, and what was answered until then is recorded (the upstream
    # is closed when the bridge notices; an answer cut short has no finish reason).
    left = [r for r in seen if r["kind"] == "leave"]
    cut_short = 0
    for request in left:
        exchange, where = by_tag[request["tag"]], request["tag"]
        (attempt,) = attempts[exchange["id"]]
        assert exchange["client_disconnected"] == 1 and exchange["status"] == 200, where
        assert attempt["status"] == 200 and attempt["response_body"].startswith(b"data: {"), where
        answer = rows(
            db,
            "SELECT group_concat(text, '') AS t FROM parts WHERE message_hash = ?",
            (exchange["response_message_hash"],),
        )[0]["t"]
        assert answer and set(answer) == {"x"} and len(answer) >= len(request["text"]), where
        finished = b"[DONE]" in attempt["response_body"]
        assert exchange["finish_reason"] == ("stop" if finished else None), where
        cut_short += not finished
    assert cut_short, "every upstream finished before its client left: departures were not tested"
    print(f"{cut_short} of {len(left)} departed streams were cut short upstream")


GRACE = 4.0  # shutdown_grace_seconds in the SIGTERM tests
IN_FLIGHT = (  # (kind, how many, stream): "quick" answers end within the grace period, "slow" ones not
    ("quick", 100, True),
    ("quick", 100, False),
    ("slow", 100, True),
    ("slow", 100, False),
)


def drain_reply(body: dict[str, Any]) -> Reply:
    kind = body["messages"][-1]["content"].split(":")[0]
    if kind == "quick":
        return text_reply("q" * 20, pieces=2, delay=0.05)  # at once
    return text_reply("s" * 60, pieces=60, delay=0.25)  # ~15 s: cut off at the end of the grace period


async def ask_and_note(client: httpx.AsyncClient, tag: str, stream: bool) -> dict[str, Any]:
    """What the client received: status, whether a stream ended with [DONE], carried an error event,
    ended cleanly; or that the connection failed."""
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": tag}], "stream": stream}
    got: dict[str, Any] = {"tag": tag, "stream": stream}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            data = b"".join([chunk async for chunk in response.aiter_bytes()])
        got.update(status=response.status_code, content_type=response.headers.get("content-type", ""))
        if stream and response.status_code == 200:
            events = [line[6:] for line in data.decode().split("\n") if line.startswith("data: ")]
            got.update(done=events[-1:] == ["[DONE]"], error=any('"error"' in e for e in events))
        else:
            payload = json.loads(data)
            got.update(done=response.status_code == 200, error="error" in payload)
    except httpx.HTTPError as e:
        got.update(status=None, failed=repr(e))
    return got


def test_sigterm_with_400_in_flight_drains_and_each_row_records_what_its_client_got(tmp_path):
    """SIGTERM with 400 requests in flight: the listener closes, answers that can end within
    `shutdown_grace_seconds` end normally, the rest end in their dialect (an error event in a stream,
    a 503 for a whole answer), never with mitmproxy's HTML 502 or an empty 404. Each exchange's row
    records exactly the status and ending its client got, and the bridge exits within the grace
    period plus a small margin."""
    db = tmp_path / "bridge.db"
    total = sum(n for _, n, _ in IN_FLIGHT)
    with FakeOpenAI() as upstream:
        upstream.responder = drain_reply
        config = write_config(
            tmp_path / "bridge.toml",
            [openai_account("oa", upstream, ["gpt-test"])],
            api_keys=[CLIENT_KEY],
            database=str(db),
            shutdown_grace_seconds=GRACE,
        )
        bridge = BridgeProcess(tmp_path, config).start()

        async def run_all() -> list[dict[str, Any]]:
            limits = httpx.Limits(max_connections=total + 10, max_keepalive_connections=0)
            headers = {"authorization": f"Bearer {CLIENT_KEY}"}
            async with httpx.AsyncClient(base_url=bridge.base_url, limits=limits, timeout=60, headers=headers) as c:
                jobs = [
                    ask_and_note(c, f"{kind}:{stream}:{i}", stream) for kind, n, stream in IN_FLIGHT for i in range(n)
                ]
                return await asyncio.gather(*jobs)

        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(asyncio.run, run_all())
            deadline = time.time() + 30
            while len(upstream.requests) < 200 and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(1.5)  # the bridge has taken in all 400 (it is at most 200 upstream at once)
            assert bridge.proc is not None
            started = time.time()
            bridge.proc.terminate()
            with upstream.lock:
                begun = {body["messages"][-1]["content"] for body in upstream.requests}
            time.sleep(0.3)
            try:  # a new connection while draining: refused (the listener is closed)
                late = httpx.get(bridge.base_url + "/health", timeout=10).status_code
            except httpx.TransportError as e:
                late = repr(e)
            code = bridge.proc.wait(30)
            exit_seconds = time.time() - started
            received = future.result()
        bridge.stop()
    print(f"\nSIGTERM with {total} in flight: exit {code} after {exit_seconds:.2f}s (grace {GRACE}s)")
    # Bounded, not tight: measured 5-9 s on a loaded 2-CPU machine (about 3 s of it before mitmproxy
    # calls `done` while it works through the 400 queued requests); the fault was never exiting.
    assert code == 0 and exit_seconds < GRACE + 16, (code, exit_seconds, bridge.output()[-1500:])
    print(f"a new request while draining: {late}")
    assert all("html" not in r.get("content_type", "") for r in received)
    recorded = {
        row["tag"]: row
        for row in rows(
            db,
            "SELECT json_extract(request_raw, '$.messages[0].content') AS tag, status, finish_reason, "
            "error_kind, client_disconnected FROM exchanges",
        )
    }
    # A connection the bridge had not yet accepted when its listener closed (under load, still in
    # the kernel's backlog) is reset: its client got nothing, and there is no row. Any other failure
    # of the connection is a fault.
    failed = [got for got in received if got["status"] is None]
    assert all(got["tag"] not in recorded for got in failed), [got for got in failed if got["tag"] in recorded][:3]
    print(f"{len(failed)} connections never accepted before the listener closed (reset, no row)")
    assert len(failed) < total // 10
    assert len(recorded) == total - len(failed), (len(recorded), bridge.output()[-2000:])
    mismatches = []
    for got in received:
        if got["status"] is None:
            continue
        row = recorded[got["tag"]]
        complete = row["finish_reason"] == "stop" and row["error_kind"] is None
        if (
            row["status"] != got["status"]
            or complete != (got["done"] and not got["error"])
            or (row["error_kind"] is not None) != got["error"]
            or row["client_disconnected"]
        ):
            mismatches.append((got, row))
    assert not mismatches, mismatches[:5]
    outcomes: dict[tuple[str, bool, int, bool], int] = {}
    for got in received:
        key = (got["tag"].split(":")[0], got["stream"], got["status"] or 0, bool(got.get("error")))
        outcomes[key] = outcomes.get(key, 0) + 1
    print("(kind, stream, status, error) -> clients:", dict(sorted(outcomes.items())))
    quick = [got for got in received if got["tag"].startswith("quick") and got["tag"] in begun]
    print(f"{len(begun)} answers had begun upstream at SIGTERM; {len(quick)} of them quick")
    unfinished = [got for got in quick if not (got["status"] == 200 and got["done"] and not got["error"])]
    assert quick and not unfinished, (len(unfinished), unfinished[:3], bridge.output()[-2000:])
    slow = [got for got in received if got["tag"].startswith("slow") and got["status"] is not None]
    assert all(got["error"] for got in slow)
    assert all(got["status"] == (200 if got["stream"] else 503) for got in slow)
    assert "not recorded" not in bridge.output()


def test_a_stream_still_opening_when_the_grace_period_ends_is_answered_503_and_recorded_so(tmp_path):
    """A stream whose upstream has not answered when the grace period ends (the relay is waiting for
    it to open) gets a 503 in its dialect, and its row says 503."""
    db = tmp_path / "bridge.db"
    with FakeOpenAI() as upstream:
        upstream.default = Reply(header_delay=4.0, deltas=[{"content": "late"}])
        config = write_config(
            tmp_path / "bridge.toml",
            [openai_account("oa", upstream, ["gpt-test"])],
            api_keys=[CLIENT_KEY],
            database=str(db),
            shutdown_grace_seconds=0.5,
        )
        bridge = BridgeProcess(tmp_path, config).start()
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "slow"}], "stream": True}
        got: list[tuple[int, dict[str, Any]]] = []

        def ask() -> None:
            response = httpx.post(
                bridge.base_url + "/v1/chat/completions",
                json=body,
                timeout=20,
                headers={"authorization": f"Bearer {CLIENT_KEY}"},
            )
            got.append((response.status_code, response.json()))

        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(ask)
            deadline = time.time() + 10
            while not upstream.requests and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            code = stop_gracefully(bridge)
            future.result()
    assert code == 0
    [(status, payload)] = got
    assert status == 503 and "shutdown_grace_seconds" in payload["error"]["message"]
    recorded = rows(db, "SELECT status, error_kind, stream FROM exchanges")
    assert recorded == [{"status": 503, "error_kind": "shutting_down", "stream": 1}], bridge.output()


# --- 2. secrets -----------------------------------------------------------------------------------------

SECRET_CLIENT_KEY = "sk-client-SECRET-c1i3nt-5f2a9"
SECRET_UPSTREAM_KEY = "sk-upstream-SECRET-0p3na1-77b1"
SECRET_KIRO_ACCESS = "kiro-access-SECRET-4cc3ss-19e0"
SECRET_KIRO_REFRESH = "kiro-refresh-SECRET-r3fr3sh-c4d2"


def scan_database(db: Path, secrets: set[str]) -> list[str]:
    """Every text and blob cell of every table (FTS shadow tables included), and the raw files."""
    found = []
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"exchanges", "attempts", "messages", "parts", "blobs"} <= set(tables)
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    data = value.encode() if isinstance(value, str) else value
                    if not isinstance(data, bytes):
                        continue
                    found += [f"{table}: {secret}" for secret in secrets if secret.encode() in data]
    finally:
        conn.close()
    for file in db.parent.glob(db.name + "*"):
        content = file.read_bytes()
        found += [f"{file.name}: {secret}" for secret in secrets if secret.encode() in content]
    return found


def test_no_secret_reaches_the_database_or_the_console(tmp_path):
    db = tmp_path / "bridge.db"
    expired = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 600))
    with (
        FakeOpenAI(api_key=SECRET_UPSTREAM_KEY) as upstream,
        FakeKiro(access_token=SECRET_KIRO_ACCESS, refresh_token=SECRET_KIRO_REFRESH) as kiro,
        FakeCodeAssist() as gemini,
    ):
        upstream.default = text_reply("openai answer")
        kiro_creds = kiro.write_token_file(tmp_path / "kiro-auth-token.json", expires_at=expired)
        gemini_creds = tmp_path / "oauth_creds.json"
        gemini.write_credentials(gemini_creds, expired=True)
        secrets = {
            SECRET_CLIENT_KEY,
            SECRET_UPSTREAM_KEY,
            SECRET_KIRO_ACCESS,
            SECRET_KIRO_REFRESH,
            code_assist.CLIENT_SECRET,
        }
        stored = json.loads(gemini_creds.read_text())
        secrets |= {stored["access_token"], stored["refresh_token"], stored["id_token"]}
        config = write_config(
            tmp_path / "bridge.toml",
            [
                openai_account("oa", upstream, ["gpt-test"]),
                {
                    "name": "kiro",
                    "provider": "kiro",
                    "credentials": str(kiro_creds),
                    "base_url": kiro.base_url,
                    "token_url": kiro.social_refresh_url,
                    **PACED_FOR_LOAD,
                },
                {
                    "name": "gem",
                    "provider": "gemini-cli",
                    "credentials": str(gemini_creds),
                    "base_url": gemini.base_url,
                    "token_url": gemini.token_url,
                    **PACED_FOR_LOAD,
                },
            ],
            api_keys=[SECRET_CLIENT_KEY],
            database=str(db),
        )
        with BridgeProcess(tmp_path, config) as bridge:
            client = openai.OpenAI(
                base_url=bridge.base_url + "/v1", api_key=SECRET_CLIENT_KEY, max_retries=0, timeout=20
            )
            user = [{"role": "user", "content": "hello"}]
            for model in ("gpt-test", "claude-sonnet-4-5", "gemini-2.5-flash"):
                assert client.chat.completions.create(model=model, messages=user).choices[0].message.content
                assert list(client.chat.completions.create(model=model, messages=user, stream=True))
            # Refreshes forced by the services: a stale Kiro token (403) and revoked Google tokens (401).
            secrets |= {kiro.access_token, kiro.refresh_token}
            kiro.expire_access_token()
            kiro.enqueue(Text("after the refresh"))
            assert client.chat.completions.create(model="claude-sonnet-4-5", messages=user).choices
            secrets |= gemini.access_tokens | gemini.refresh_tokens
            gemini.revoke_access_tokens()
            assert client.chat.completions.create(model="gemini-2.5-flash", messages=user).choices
            # The upstream rejects the request (its error is recorded, with the request headers).
            kiro.enqueue(HttpError(400, {"message": "Improperly formed request.", "reason": None}))
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="claude-sonnet-4-5", messages=user)
            # The Gemini dialect, with the key in the query string, streamed and not, and a 404.
            gemini_body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
            for path in (
                "/v1beta/models/gemini-2.5-flash:generateContent",
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                "/v1beta/models/no-such-model:generateContent",
            ):
                sep = "&" if "?" in path else "?"
                response = httpx.post(
                    f"{bridge.base_url}{path}{sep}key={SECRET_CLIENT_KEY}", json=gemini_body, timeout=20
                )
                assert response.status_code == (404 if "no-such" in path else 200), response.text
            response = httpx.post(
                f"{bridge.base_url}/v1beta/models/gemini-2.5-flash:generateContent",
                json=gemini_body,
                headers={"x-goog-api-key": SECRET_CLIENT_KEY},
                timeout=20,
            )
            assert response.status_code == 200
            # A rejected key is not recorded, and must not be echoed anywhere either.
            assert (
                httpx.post(
                    f"{bridge.base_url}/v1/chat/completions",
                    json={"model": "gpt-test"},
                    headers={"authorization": "Bearer sk-wrong-SECRET-key-99"},
                ).status_code
                == 401
            )
            secrets |= {"sk-wrong-SECRET-key-99", kiro.access_token, kiro.refresh_token}
            secrets |= gemini.access_tokens | gemini.refresh_tokens
            stop_gracefully(bridge)
        assert kiro.refresh_count >= 2 and gemini.refresh_count >= 2  # refresh traffic did happen
    assert count(db, "exchanges") == 13
    assert count(db, "attempts") >= 12
    assert all(len(s) >= 12 for s in secrets)
    formats = rows(db, "SELECT client_format, count(*) AS n FROM exchanges GROUP BY client_format")
    assert {r["client_format"]: r["n"] for r in formats} == {"openai": 9, "gemini": 4}
    assert scan_database(db, {"openai answer"})  # the scan does see recorded content
    leaks = scan_database(db, secrets)
    leaks += [f"console: {s}" for s in secrets if s in bridge.output()]
    assert not leaks, leaks


# --- 3. startup -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["under-a-file", "is-a-directory"])
def test_unusable_database_stops_startup_in_one_line(tmp_path, where):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file\n")
    database = blocker / "bridge.db" if where == "under-a-file" else tmp_path
    with FakeOpenAI() as upstream:
        config = write_config(
            tmp_path / "bridge.toml", [openai_account("oa", upstream, ["gpt-test"])], database=str(database)
        )
        code, output = run_bridge_expecting_failure(tmp_path, config)
    assert code != 0
    assert "Traceback" not in output and "listening" not in output, output
    ours = [line for line in output.splitlines() if "llmbridge" in line and "Loading script" not in line]
    assert len(ours) == 1, output
    assert ours[0].startswith("llmbridge: cannot open recordings database") and str(database) in ours[0]


# --- 4 and 5. a conversation through the bridge: content-addressed history, logs, Datasette ------------

SYSTEM = "You answer in one short sentence."


@pytest.fixture(scope="module")
def conversation_db(tmp_path_factory) -> dict[str, Any]:
    """Three turns of one conversation through the openai SDK, and one failed request."""
    tmp = tmp_path_factory.mktemp("conversation")
    db = tmp / "bridge.db"
    counts = []
    with FakeOpenAI() as upstream:
        config = write_config(
            tmp / "bridge.toml", [openai_account("oa", upstream, ["gpt-test"])], api_keys=[CLIENT_KEY], database=str(db)
        )
        with BridgeProcess(tmp, config) as bridge:
            client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)
            history: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
            for turn in range(3):
                upstream.enqueue(text_reply(f"reply number {turn}"))
                history.append({"role": "user", "content": f"question number {turn}"})
                stream = turn == 1
                response = client.chat.completions.create(model="gpt-test", messages=history, stream=stream)
                text = (
                    "".join(c.choices[0].delta.content or "" for c in response if c.choices)
                    if stream
                    else response.choices[0].message.content
                )
                assert text == f"reply number {turn}"
                history.append({"role": "assistant", "content": text})
                wait_for_exchanges(db, turn + 1)
                counts.append(count(db, "messages"))
            upstream.enqueue(
                Reply(status=429, error_body={"error": {"message": "fake: slow down"}}, headers={"retry-after": "0.05"})
            )
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "more"}])
            stop_gracefully(bridge)
    return {"db": db, "counts": counts, "history": history}


def test_resent_history_adds_only_the_new_messages(conversation_db):
    # turn 1: system, question, answer; each later turn: its question and its answer.
    assert conversation_db["counts"] == [3, 5, 7]
    db = conversation_db["db"]
    thread = rows(db, "SELECT e.response_message_hash AS h FROM exchanges e WHERE e.status = 200 ORDER BY e.started_at")
    assert len(thread) == 3
    # The third answer's chain is the whole conversation, root first.
    chain, head = [], thread[-1]["h"]
    while head:
        (message,) = rows(db, "SELECT * FROM messages WHERE hash = ?", (head,))
        text = rows(db, "SELECT group_concat(text, '') AS t FROM parts WHERE message_hash = ?", (head,))[0]["t"]
        chain.append({"role": message["role"], "content": text})
        head = message["parent_hash"]
    assert chain[::-1] == conversation_db["history"]


def test_llmbridge_logs_prints_the_exchanges(conversation_db):
    done = subprocess.run(
        [str(LLMBRIDGE), "logs", "--db", str(conversation_db["db"])], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4, done.stdout
    assert all("openai" in line and "gpt-test" in line for line in lines)
    assert all(" oa " in line for line in lines[:3])  # the failure has no answering account
    assert [line.split()[5] for line in lines] == ["200", "200", "200", "429"], done.stdout
    assert "tok 11>7" in lines[0] and "429" in lines[3] and "! rate_limited" in lines[3]


def test_datasette_canned_queries_show_the_bridge_recordings(conversation_db):
    db: Path = conversation_db["db"]

    async def run() -> dict[str, Any]:
        ds = datasette_app(db, build_metadata(db.stem))
        await ds.invoke_startup()
        (last,) = rows(db, "SELECT id FROM exchanges WHERE status = 200 ORDER BY started_at DESC LIMIT 1")
        results = {}
        for name in QUERIES:
            response = await ds.client.get(
                f"/{db.stem}/{name}.json", params={"hash": last["id"], "q": "number", "_shape": "array"}
            )
            assert response.status_code == 200, (name, response.text)
            results[name] = response.json()
        return results

    results = asyncio.run(run())
    recent = results["recent_exchanges"]
    assert [r["status"] for r in recent] == [429, 200, 200, 200]
    assert [r["answer"] for r in recent[1:]] == ["reply number 2", "reply number 1", "reply number 0"]
    assert recent[1]["prompt"] == "question number 2"
    assert [(m["role"], m["content"]) for m in results["conversation"]] == [
        (m["role"], m["content"]) for m in conversation_db["history"]
    ]
    (failure,) = results["failures_by_account"]
    assert (failure["account"], failure["failure"], failure["attempts"]) == ("oa", "rate_limited", 1)
    (day,) = results["tokens_per_model_per_day"]
    assert (day["model"], day["requests"], day["input_tokens"], day["output_tokens"]) == ("gpt-test", 4, 33, 21)
    assert len(results["slowest_ttfb"]) == 3
    found = {(r["role"], r["snippet"]) for r in results["search"]}
    assert ("user", "question \x02number\x03 0") in found and ("assistant", "reply \x02number\x03 2") in found


# --- errors before any upstream are recorded too, once the client is known ------------------------------


def test_errors_before_any_upstream_are_recorded_once_authenticated(tmp_path):
    db = tmp_path / "bridge.db"
    with FakeOpenAI() as upstream:
        config = write_config(
            tmp_path / "bridge.toml",
            [openai_account("oa", upstream, ["gpt-test"])],
            api_keys=[CLIENT_KEY],
            database=str(db),
        )
        with BridgeProcess(tmp_path, config) as bridge:
            auth = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
            url = bridge.base_url + "/v1/chat/completions"
            assert httpx.post(url, content=b"{not json", headers=auth).status_code == 400
            assert (
                httpx.post(
                    url, json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}, headers=auth
                ).status_code
                == 404
            )
            assert httpx.post(url, json={"model": "gpt-test", "messages": []}, headers={}).status_code == 401
            assert httpx.get(bridge.base_url + "/health").status_code == 200
            # valid JSON that fails validation: the row still names the model (and stream flag) asked for
            assert (
                httpx.post(
                    url,
                    json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}], "n": 2, "stream": True},
                    headers=auth,
                ).status_code
                == 400
            )
            gemini = bridge.base_url + "/v1beta/models/openai%2Fgpt-test:streamGenerateContent?alt=sse"
            assert httpx.post(gemini, json={"contents": "x"}, headers={"x-goog-api-key": CLIENT_KEY}).status_code == 400
            wait_for_exchanges(db, 4)
            stop_gracefully(bridge)
    recorded = rows(
        db, "SELECT status, error_kind, attempt_count, key_label, model_requested, stream FROM exchanges ORDER BY rowid"
    )
    assert [tuple(r.values()) for r in recorded] == [
        (400, "invalid_request", 0, "key1", None, 0),
        (404, "model_not_found", 0, "key1", "nope", 0),
        (400, "invalid_request", 0, "key1", "gpt-test", 1),
        (400, "invalid_request", 0, "key1", "openai/gpt-test", 1),
    ]
