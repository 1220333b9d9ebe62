"""How recorded values read (llmbridge/recorder/render.py): hostile text stays text, searches never fail."""

from __future__ import annotations

import re
import sqlite3

import pytest

from llmbridge.recorder.render import (
    HIT_END,
    HIT_START,
    bar_chart,
    duration,
    fts_query,
    highlighted,
    markdown,
    pretty_json,
)


def test_markdown_is_rendered_and_html_in_it_is_shown_as_text() -> None:
    html = str(markdown("**bold** <script>alert(1)</script> <img src=x onerror=alert(2)>\n\n- one\n- two"))
    assert "<strong>bold</strong>" in html and "<li>one</li>" in html
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript' not in str(markdown("[click](javascript:alert(1))"))
    assert str(markdown(None)) == ""
    assert "<img" not in str(markdown("![tracker](http://evil.example/pixel.png)"))  # nothing is fetched
    assert str(markdown("[docs](https://example.com)")).strip() == (
        '<p><a href="https://example.com" rel="noopener noreferrer nofollow">docs</a></p>'
    )


def test_highlighted_escapes_the_snippet_then_marks_the_hits() -> None:
    html = str(highlighted(f"<b>two</b> {HIT_START}lighthouses{HIT_END} & more"))
    assert html == "&lt;b&gt;two&lt;/b&gt; <mark>lighthouses</mark> &amp; more"


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(None, ""), (3.14159, "3.1 ms"), (13.74053955078125, "14 ms"), (850, "850 ms"), (2413.5, "2.41 s"),
     (192_400, "3 min 12 s")],
)  # fmt: skip
def test_durations_read_as_time(ms: float | None, shown: str) -> None:
    assert duration(ms) == shown


def test_pretty_json_indents_json_and_leaves_other_text() -> None:
    assert pretty_json('{"a": [1, "é"]}') == '{\n  "a": [\n    1,\n    "é"\n  ]\n}'
    assert pretty_json("not json {") == "not json {"


@pytest.fixture
def fts() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize='porter unicode61')")
    for text in ("Two lighthouses guard the coast", "a light house", "OR NOT (weird) syntax*", "lightning strikes"):
        conn.execute("INSERT INTO t (text) VALUES (?)", [text])
    return conn


def search(conn: sqlite3.Connection, typed: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT text FROM t WHERE t MATCH ? ORDER BY rowid", [fts_query(typed)])]


def test_words_are_stemmed_prefixes_and_phrases_work(fts: sqlite3.Connection) -> None:
    assert search(fts, "lighthouse") == ["Two lighthouses guard the coast"]
    assert search(fts, "LIGHTHOUSES coast") == ["Two lighthouses guard the coast"]
    assert search(fts, "lightho*") == ["Two lighthouses guard the coast"]
    assert search(fts, "light*") == ["Two lighthouses guard the coast", "a light house", "lightning strikes"]
    assert search(fts, '"light house"') == ["a light house"]
    assert search(fts, "lighthouse lightning") == []


@pytest.mark.parametrize("typed", ['answer" OR (-', "OR", "NOT (", "*", '"', "-", "a:b", "", "   ", "NEAR(x y)", "^x"])
def test_fts_syntax_typed_by_a_user_is_never_an_error(fts: sqlite3.Connection, typed: str) -> None:
    search(fts, typed)  # raises sqlite3.OperationalError on a syntax error
    assert search(fts, "OR") == ["OR NOT (weird) syntax*"]


def test_bar_chart_draws_one_bar_per_day_scaled_to_the_peak() -> None:
    svg = str(bar_chart([("12-01", 10, 0), ("12-02", 40, 10), ("<b>", 0, 0)], "Requests <per day>"))
    assert svg.startswith('<svg class="llmbridge-chart"') and "<title>Requests &lt;per day&gt;</title>" in svg
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" class="bar"/>', svg)]
    red = [float(h) for h in re.findall(r'height="([\d.]+)" class="bar-red"/>', svg)]
    assert heights == [30.0, 120.0, 0.0] and red == [0.0, 30.0, 0.0]  # the peak is 120 px tall
    assert "<title>12-02: 40 (10 failed)</title>" in svg
    assert ">&lt;b&gt;</text>" in svg and "<b>" not in svg  # labels are escaped
    assert str(bar_chart([], "nothing")).startswith("<svg")
