"""The pages `llmbridge browse` adds to Datasette (llmbridge/recorder/datasette_plugins/pages.py), served
in process by the same Datasette, plugins and templates, over a database the real recorder wrote."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from llmbridge.recorder import Recorder
from llmbridge.recorder.browse import datasette_app
from llmbridge.recorder.metadata import build_metadata
from tests.fakes.recordings import HOSTILE, conversation, lighthouse_conversation


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.db"
    rec = Recorder(path)
    rec.open()
    for record in [*conversation(2, started=time.time() - 600), *lighthouse_conversation(time.time() - 300)]:
        rec.submit(record)
    rec.flush()
    rec.close()
    return path


def ids(path: Path) -> list[str]:
    return [r[0] for r in sqlite3.connect(path).execute("SELECT id FROM exchanges ORDER BY started_at")]


def fetch(path: Path, *urls: str) -> list[Any]:
    async def run() -> list[Any]:
        ds = datasette_app(path, build_metadata(path.stem))
        await ds.invoke_startup()
        return [await ds.client.get(url) for url in urls]

    return asyncio.run(run())


def hrefs(html: str, pattern: str) -> list[str]:
    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', html) if re.search(pattern, h)]


def test_the_exchange_screen(recorded: Path) -> None:
    first, second = ids(recorded)[-2:]
    (page,) = fetch(recorded, f"/bridge/-/exchange/{second}")
    assert page.status_code == 200
    html = page.text
    assert "Tell me about the <strong>lighthouses</strong> of Brittany." in html
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in html and HOSTILE not in html
    assert "Foggy: the lighthouse beams matter today." in html
    assert re.search(r'<details class="thinking"><summary>Thinking \(\d+ characters\)', html)
    assert "get_weather" in html and "&#34;city&#34;: &#34;Brest&#34;" in html and "fog, 12 C" in html
    assert "Estimated by the bridge" in html and "acct-limited" in html and "429" in html
    assert hrefs(html, "/-/exchange/") == [f"/bridge/-/exchange/{first}"]  # rel=prev; this is the last turn
    (image,) = set(re.findall(r'<img class="thumb" src="([^"]+)"', html))
    (attempt_row,) = hrefs(html, r"/bridge/attempts/\d+$")[:1]
    raw_request, raw_response = hrefs(html, f"/bridge/exchanges/{second}$"), hrefs(html, r"\.blob\?")
    thumb, row, request_row, response_body = fetch(recorded, image, attempt_row, raw_request[0], raw_response[0])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert thumb.content.startswith(b"\x89PNG") and thumb.headers["x-content-type-options"] == "nosniff"
    assert row.status_code == 200 and "acct-limited" in row.text
    assert request_row.status_code == 200 and "request_raw" in request_row.text
    assert response_body.status_code == 200 and b"slow down" in response_body.content

    (earlier,) = fetch(recorded, f"/bridge/-/exchange/{first}")
    assert hrefs(earlier.text, "/-/exchange/") == [f"/bridge/-/exchange/{second}"]
    (missing,) = fetch(recorded, "/bridge/-/exchange/nope")
    assert missing.status_code == 404 and "no exchange nope" in missing.text


def test_the_start_page_has_a_search_box_and_the_recent_exchanges(recorded: Path) -> None:
    (page,) = fetch(recorded, "/")
    assert page.status_code == 200
    assert '<form class="search" action="/bridge/search"' in page.text and 'name="q"' in page.text
    links = hrefs(page.text, "/-/exchange/")
    assert links == [f"/bridge/-/exchange/{i}" for i in reversed(ids(recorded))]  # newest first
    assert "question 1" in page.text and "14 ms" in page.text and "13.74" not in page.text
    assert "/bridge/usage_per_account" in page.text and "/-/llmbridge/help" in page.text
    assert page.text.count('<svg class="llmbridge-chart"') == 2  # requests and tokens per day
    assert "<title>Requests per day (failed in red)</title>" in page.text


def test_search_finds_words_and_its_hits_link_to_the_exchange(recorded: Path) -> None:
    lighthouse, prefix, none = fetch(
        recorded, "/bridge/search?q=lighthouse", "/bridge/search?q=lightho*", "/bridge/search?q=lightships"
    )
    for page in (lighthouse, prefix):
        assert page.status_code == 200
        assert "<mark>lighthouses</mark>" in page.text and "<mark>lighthouse</mark> beams" in page.text
        assert set(hrefs(page.text, "/-/exchange/")) == {f"/bridge/-/exchange/{i}" for i in ids(recorded)[-2:]}
    assert none.status_code == 200 and "<mark>" not in none.text


def test_cells_link_and_read_well(recorded: Path) -> None:
    exchanges, recent, messages, help_page = fetch(
        recorded, "/bridge/exchanges", "/bridge/recent_exchanges", "/bridge/messages", "/-/llmbridge/help"
    )
    assert "13.74053955078125" not in exchanges.text and "14 ms" in exchanges.text
    assert set(hrefs(exchanges.text, "/-/exchange/")) == {f"/bridge/-/exchange/{i}" for i in ids(recorded)}
    assert "/bridge/-/exchange/" in recent.text and "13.74053955078125" not in recent.text
    assert hrefs(messages.text, r"/bridge/messages/b2~3A")  # parent hashes link to their rows
    assert 'class="llmbridge-json"' in exchanges.text  # request_json, indented
    facets = re.findall(r'<div class="facet-info [^"]*" id="facet-[^"]*" data-column="([^"]+)"', exchanges.text)
    assert sorted(facets) == ["account", "client_format", "model_served", "provider", "started_at", "status"]
    assert "started_at (date)" in exchanges.text  # the day facet
    assert "Milliseconds until the exchange ended" in help_page.text  # the column descriptions
    assert 'href="/-/llmbridge/help#exchanges">What the columns mean' in exchanges.text
    (row,) = fetch(recorded, f"/bridge/exchanges/{ids(recorded)[0]}")
    assert f'href="/bridge/-/exchange/{ids(recorded)[0]}">Read this exchange on one screen' in row.text
    assert "Quota and cool-down history" in help_page.text


def test_usage_and_quota_queries(recorded: Path) -> None:
    per_account, per_day, limits = fetch(
        recorded,
        "/bridge/usage_per_account.json?_shape=array",
        "/bridge/usage_per_day.json?_shape=array",
        "/bridge/account_limits.json?_shape=array",
    )
    (account,) = per_account.json()
    assert (account["account"], account["requests"], account["errors"]) == ("acct-1", 4, 0)
    assert (account["input_tokens"], account["cached_tokens"], account["estimated"]) == (10 + 30 + 10 + 120, 100, 1)
    assert sum(day["requests"] for day in per_day.json()) == 4
    (limit,) = limits.json()
    assert (limit["account"], limit["limit_kind"], limit["retry_after"]) == ("acct-limited", "rate_limited", "30")


def test_an_image_blob_that_is_not_a_raster_image_is_only_downloaded(recorded: Path) -> None:
    conn = sqlite3.connect(recorded)
    conn.execute(
        "INSERT INTO blobs (hash, media_type, size, content) VALUES ('sha256:svg', 'image/svg+xml', 5, ?)",
        [b"<svg onload=alert(1)>"],
    )
    conn.commit()
    (svg,) = fetch(recorded, "/bridge/-/image/sha256~3Asvg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "application/octet-stream"
    assert svg.headers["content-disposition"] == "attachment"
