"""Reading recordings as a user does, in real headless Chromium against `llmbridge browse`: the start
page's search box, a stemmed and a prefix search, the hit's link to the exchange screen (prompt, answer,
hostile HTML shown as text and never run), and on to the upstream attempts."""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from llmbridge.recorder import Recorder
from tests.fakes.recordings import lighthouse_conversation
from tests.test_recorder_metadata import chromium_or_skip, free_port, wait_until_serving


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.db"
    rec = Recorder(path)
    rec.open()
    for record in lighthouse_conversation(time.time() - 120):
        rec.submit(record)
    rec.flush()
    rec.close()
    return path


class Browser:
    def __init__(self, chromium: str, profile: Path) -> None:
        self.chromium, self.profile = chromium, profile

    def dom(self, url: str) -> str:
        """The page's DOM after its scripts ran (and an image's onerror would have fired)."""
        done = subprocess.run(
            [
                self.chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={self.profile}",
                "--virtual-time-budget=3000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "<html" in done.stdout, done.stderr[-2000:]
        return done.stdout


def links(dom: str, pattern: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]+)"', dom) if re.search(pattern, html.unescape(h))]


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_search_then_read_the_exchange_then_its_attempts(recorded: Path, tmp_path: Path) -> None:
    browser = Browser(chromium_or_skip(), tmp_path / "chromium")
    port = free_port()
    command = [sys.executable, "-c", "from llmbridge.cli import main; main()", "browse", "--db", str(recorded)]
    server = subprocess.Popen(
        [*command, "--port", str(port)], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        root = f"http://127.0.0.1:{port}"
        wait_until_serving(f"{root}/bridge.json", server)
        start = browser.dom(f"{root}/")
        form = re.search(r'<form class="search" action="([^"]+)" method="get">\s*<input type="search" name="q"', start)
        assert form, start[-3000:]
        hits_by_word = {}
        for typed in ("lighthouse", "lightho*"):  # what the search box sends, as the browser encodes it
            dom = browser.dom(f"{root}{form.group(1)}?{urllib.parse.urlencode({'q': typed})}")
            assert "<mark>lighthouses</mark>" in dom, (typed, dom[-3000:])
            hits_by_word[typed] = links(dom, "/-/exchange/")
        assert hits_by_word["lighthouse"] == hits_by_word["lightho*"] and hits_by_word["lighthouse"]

        exchange = browser.dom(root + hits_by_word["lighthouse"][-1])
        assert "Tell me about the <strong>lighthouses</strong> of Brittany." in exchange
        assert "Two <em>lighthouses</em> guard the coast:" in exchange  # the answer, Markdown rendered
        assert "<title>pwned" not in exchange and "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in exchange
        next_turn = links(exchange, "/-/exchange/")
        assert len(next_turn) == 1, next_turn
        later = browser.dom(root + next_turn[0])
        assert "Foggy: the lighthouse beams matter today." in later and "<title>pwned" not in later
        assert re.search(r'<img class="thumb" src="[^"]+/-/image/sha256~3A[0-9a-f]+"', later)

        (attempts,) = links(later, r"/bridge/attempts\?exchange_id=")
        listing = browser.dom(root + attempts)
        assert "acct-limited" in listing and "rate_limited" in listing and "acct-1" in listing
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # browse and the Datasette it started
        server.wait(timeout=10)
