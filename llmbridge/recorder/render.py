"""How recorded values read in Datasette: Markdown, pretty JSON, durations, search highlights, FTS queries.

Recorded prompts and answers are hostile input (a prompt can hold `<script>`): every function that
returns HTML escapes the recorded text first. Markdown is rendered by markdown-it-py with raw HTML
turned off, so tags in a prompt show as text, and links with `javascript:` and similar schemes are
not made into links.
"""

from __future__ import annotations

import json
import re
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup, escape

# snippet() wraps each hit in these: control characters no prompt text is expected to hold.
HIT_START, HIT_END = "\x02", "\x03"

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


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
