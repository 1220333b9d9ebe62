"""The recordings are browsable (llmbridge/recorder/metadata.py): every canned query runs in Datasette and
shows the recorded rows, and the page renders in a real browser."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from llmbridge.recorder import Recorder
from llmbridge.recorder.browse import datasette_app
from llmbridge.recorder.metadata import QUERIES, build_metadata, write_metadata
from tests.fakes.recordings import conversation, exchange, user


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    """A database with one 3-turn conversation and one failed exchange."""
    path = tmp_path / "bridge.db"
    rec = Recorder(path)
    rec.open()
    for record in conversation(3, started=time.time() - 60):
        rec.submit(record)
    failed = exchange([user("will fail")], "", account="acct-bad", status=429)
    failed.error_kind, failed.error_message = "rate_limited", "slow down"
    failed.attempts[0].error_kind = "rate_limited"
    failed.ttfb_ms = 900.0
    rec.submit(failed)
    rec.flush()
    rec.close()
    return path


def latest_answer_hash(path: Path) -> str:
    db = sqlite_utils.Database(path)
    return next(
        db.query("SELECT response_message_hash AS h FROM exchanges WHERE status = 200 ORDER BY started_at DESC LIMIT 1")
    )["h"]


async def run_queries(path: Path, params: dict[str, str]) -> dict[str, Any]:
    ds = datasette_app(path, build_metadata(path.stem))
    await ds.invoke_startup()
    results = {}
    for name in QUERIES:
        response = await ds.client.get(f"/{path.stem}/{name}.json", params={**params, "_shape": "array"})
        assert response.status_code == 200, (name, response.text)
        results[name] = response.json()
    for name in QUERIES:  # the HTML page, before the user has filled in any parameter
        response = await ds.client.get(f"/{path.stem}/{name}")
        assert response.status_code == 200 and QUERIES[name]["title"] in response.text, name
    page = await ds.client.get(f"/{path.stem}/exchanges")
    assert page.status_code == 200 and "One row per client request" in page.text
    return results


def test_every_canned_query_returns_the_recorded_rows(recorded: Path) -> None:
    results = asyncio.run(run_queries(recorded, {"hash": latest_answer_hash(recorded), "q": "question"}))
    recent = results["recent_exchanges"]
    assert len(recent) == 4 and recent[0]["status"] == 429
    assert [r["answer"] for r in recent[1:]] == ["answer 2", "answer 1", "answer 0"]
    assert recent[1]["prompt"] == "question 2"
    thread = results["conversation"]
    assert [(m["role"], m["content"]) for m in thread] == [
        ("system", "You are a terse assistant."),
        ("user", "question 0"),
        ("assistant", "answer 0"),
        ("user", "question 1"),
        ("assistant", "answer 1"),
        ("user", "question 2"),
        ("assistant", "answer 2"),
    ]
    (failure,) = results["failures_by_account"]
    assert (failure["account"], failure["failure"], failure["attempts"]) == ("acct-bad", "rate_limited", 1)
    (day,) = results["tokens_per_model_per_day"]
    assert (day["requests"], day["input_tokens"], day["output_tokens"]) == (4, 10 + 10 + 30 + 50, 6)
    assert results["slowest_ttfb"][0]["ttfb_ms"] == 900.0
    assert sorted(r["snippet"] for r in results["search"]) == [
        "\x02question\x03 0",
        "\x02question\x03 1",
        "\x02question\x03 2",
    ]


def test_conversation_accepts_an_exchange_id(recorded: Path) -> None:
    db = sqlite_utils.Database(recorded)
    first = next(db.query("SELECT id FROM exchanges ORDER BY started_at LIMIT 1"))["id"]
    results = asyncio.run(run_queries(recorded, {"hash": first, "q": "answer"}))
    assert [m["content"] for m in results["conversation"]][-1] == "answer 0"


def test_search_with_fts_syntax_characters_does_not_error(recorded: Path) -> None:
    results = asyncio.run(run_queries(recorded, {"hash": "", "q": 'answer" OR (-'}))
    assert results["conversation"] == []


def test_metadata_file_is_written_next_to_the_database(recorded: Path) -> None:
    path = write_metadata(recorded)
    assert path == recorded.parent / "metadata.yml"
    assert "recent_exchanges" in path.read_text()


# --- a real browser ------------------------------------------------------------------------------


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_or_skip() -> str:
    """The headless browser, or a loud skip: tests never install anything (.ci/run installs it in CI)."""
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    pytest.skip(
        f"no Chromium: none of {', '.join(BROWSERS)} is on PATH. This browser test needs it; "
        "install it (Debian/Ubuntu: `apt-get install chromium`) and run the tests again."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise AssertionError(f"llmbridge browse exited with {process.returncode}: {stderr[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"Datasette did not answer at {url} within {timeout}s")


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_canned_query_page_renders_in_headless_chromium(recorded: Path, tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "from llmbridge.cli import main; main()",
        "browse",
        "--db",
        str(recorded),
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}/{recorded.stem}"
        wait_until_serving(f"{base}.json", server)
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--dump-dom",
                f"{base}/recent_exchanges",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # browse and the Datasette it started
        server.wait(timeout=10)
    assert "Recent exchanges" in dom
    for text in ("answer 0", "answer 2", "acct-bad", "rate_limited"):
        assert text in dom, (text, dom[-3000:])
