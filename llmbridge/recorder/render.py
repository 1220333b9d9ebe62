"""How recorded values read in Datasette: Markdown, pretty JSON, durations, search highlights, FTS queries.

Recorded prompts and answers are hostile input (a prompt can hold `<script>`): every function that
returns HTML escapes the recorded text first. Markdown is rendered by markdown-it-py with raw HTML
turned off, so tags in a prompt show as text; links with `javascript:` and similar schemes are not
made into links, other links get `rel="noopener noreferrer nofollow"`, and Markdown images stay text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

# snippet() wraps each hit in these: control characters no prompt text is expected to hold.
HIT_START, HIT_END = "\x02", "\x03"

# Images stay text: a recorded `![](http://...)` must not make the browser fetch anything.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
_MARKDOWN.disable("image")


def _link_open(renderer: Any, tokens: Any, index: int, options: Any, env: Any) -> str:
    # Links in recorded text lead off the page: never with this page's address or a handle on it.
    tokens[index].attrSet("rel", "noopener noreferrer nofollow")
    return str(renderer.renderToken(tokens, index, options, env))


_MARKDOWN.add_render_rule("link_open", _link_open)


def markdown(text: str | None) -> Markup:
    """Recorded text as safe HTML: Markdown rendered, any HTML in it shown as text."""
    return Markup(_MARKDOWN.render(text or ""))


def pretty_json(value: Any) -> str:
    """Indented JSON for reading (non-ASCII kept); text that is not JSON is returned as it is."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def looks_like_json(value: Any) -> bool:
    """Text that holds a JSON object or array (the columns worth indenting)."""
    if not isinstance(value, str) or value[:1] not in ("{", "["):
        return False
    try:
        return isinstance(json.loads(value), dict | list)
    except ValueError:
        return False


def duration(ms: float | int | None) -> str:
    """Milliseconds as people read them: "850 ms", "13.7 ms", "2.41 s", "3 min 12 s"."""
    if ms is None:
        return ""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def highlighted(snippet: str | None) -> Markup:
    """A search snippet with its hits marked: the text escaped, then the markers made into <mark>."""
    text = str(escape(snippet or ""))
    return Markup(text.replace(HIT_START, "<mark>").replace(HIT_END, "</mark>"))


_TERM = re.compile(r'"([^"]*)"|(\S+)')


def fts_query(typed: str | None) -> str:
    """An FTS5 MATCH expression from what a user typed, never a syntax error.

    Every word must appear (each is stemmed, so "lighthouse" also finds "lighthouses"); a word ending
    in `*` matches as a prefix ("lightho*"); "quoted words" match as a phrase. Operators and other FTS5
    syntax are taken as words. Nothing typed matches nothing."""
    terms = []
    for match in _TERM.finditer(typed or ""):
        phrase, word = match.group(1), match.group(2)
        if phrase is not None:
            text, prefix = phrase.strip(), False
        else:
            prefix = word.endswith("*")
            text = word.rstrip("*").replace('"', "")
        if re.search(r"\w", text):  # punctuation alone is no word (the tokenizer drops it)
            terms.append('"' + text + '"' + ("*" if prefix else ""))
    return " ".join(terms) or '""'


def bar_chart(bars: list[tuple[str, float, float]], title: str, unit: str = "") -> Markup:
    """A small inline SVG bar chart, drawn here (no JavaScript, nothing fetched from elsewhere): one bar per
    (label, value, part of it to show in red, e.g. errors), labels under the bars, the value on hover."""
    width, height, gap, top, bottom = 36, 120, 8, 16, 34
    peak = max((value for _, value, _ in bars), default=0) or 1
    shapes = []
    for i, (label, value, red) in enumerate(bars):
        x = i * (width + gap)
        full, part = height * value / peak, height * min(red, value) / peak
        tip = f"{label}: {value:,.0f}{unit}" + (f" ({red:,.0f} failed)" if red else "")
        shapes.append(
            Markup(
                '<g><title>{tip}</title><rect x="{x}" y="{y}" width="{w}" height="{h}" class="bar"/>'
                '<rect x="{x}" y="{ry}" width="{w}" height="{rh}" class="bar-red"/>'
                '<text x="{cx}" y="{ty}" class="value">{short}</text>'
                '<text x="{cx}" y="{ly}" class="label">{label}</text></g>'
            ).format(
                tip=tip,
                x=x,
                y=top + height - full,
                w=width,
                h=full,
                ry=top + height - part,
                rh=part,
                cx=x + width / 2,
                ty=top + height - full - 3,
                short=_short(value),
                ly=top + height + 14,
                label=label,
            )  # fmt: skip
        )
    total = len(bars) * (width + gap)
    return Markup(
        '<svg class="llmbridge-chart" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
        "<title>{title}</title>{shapes}</svg>"
    ).format(w=max(total, 1), h=top + height + bottom, title=title, shapes=Markup("").join(shapes))


def _short(value: float) -> str:
    """1234 -> "1.2k", 2500000 -> "2.5M": a bar's label must fit its width."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"
