"""Limits on hostile input, checked in linear time before any costly work.

* Request headers: mitmproxy's `Headers` looks a name up by scanning every field, so iterating it
  (`.items()`, `.keys()`, `dict(headers)`) is quadratic in the header count: 100,000 headers held the
  event loop for minutes. The bridge reads the raw `(name, value)` byte pairs once (`scan_headers`),
  and refuses more than `max_header_count` headers or `max_header_bytes` in all with a 431.
* JSON nesting: `json.loads` and everything that walks the parsed value recurse once per level, so a
  body nested a few thousand levels deep is a RecursionError (a 500). `json_depth` measures the depth
  of the raw bytes with no recursion and in linear time, before anything parses them.
* Lone surrogates: JSON may write `"\\ud800"`, an escape of half a UTF-16 pair with no other half, and
  `json.loads` turns it into a Python string that no UTF-8 encoder takes (RFC 8259 section 8.2: such
  text is not interoperable). Forwarded, it broke the upstream request (a 502 blamed on the account)
  and the recorder's write; in a field that is not forwarded the client got its answer and the
  exchange was never recorded. The bridge refuses it with a 400 naming the field
  (`lone_surrogate_path`) rather than replacing it with U+FFFD: a silent replacement changes the
  prompt without telling the client, and the real APIs refuse such text too. The recorder escapes
  (`escape_surrogates`) or replaces (`scrub_surrogates`) whatever still carries one, so a row is never
  lost to it.
* Conversation size: building the canonical model, translating it and recording it cost time per
  message and per part (300,000 messages held the event loop for 11-17 s and 1 GB). `count_items`
  counts them in the parsed JSON before any of that, so that more than `max_messages` messages or
  `max_parts` parts is a 413 at once.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any, Iterable

from llmbridge.errors import ClientError

# Per field, HTTP/1.1 adds ": " and CRLF to the name and value: counted like the size on the wire.
FIELD_OVERHEAD = 4


class HeadersTooLarge(ClientError):
    status = 431
    kind = "headers_too_large"


def scan_headers(fields: Iterable[tuple[bytes, bytes]], max_count: int, max_bytes: int) -> dict[str, str]:
    """Lower-case name -> value of the raw header fields, in one pass. Repeated names are joined with
    ", " (as mitmproxy's `Headers` does); bytes that are not UTF-8 arrive as surrogates (as mitmproxy's
    own decoding does), so a key compares as the bytes sent. HeadersTooLarge past either limit."""
    headers: dict[str, str] = {}
    count = size = 0
    for name, value in fields:
        count += 1
        size += len(name) + len(value) + FIELD_OVERHEAD
        if count > max_count or size > max_bytes:
            raise HeadersTooLarge(
                f"the request headers exceed the bridge's limits ({max_count} headers, {max_bytes} bytes in all; "
                "settings 'max_header_count' and 'max_header_bytes')"
            )
        key = name.decode("utf-8", "surrogateescape").lower()
        text = value.decode("utf-8", "surrogateescape")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", bytes([1, 1, 255, 255]))  # +1 / -1 as signed bytes


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, without parsing it: strings are
    skipped (brackets inside them do not count), then the running sum of +1 per opening and -1 per
    closing bracket is taken. Linear in the body, no recursion. Malformed JSON gives some number;
    the parser reports the real fault afterwards."""
    skeleton = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if not skeleton:
        return 0
    return max(0, max(accumulate(array("b", skeleton.translate(_STEPS)))))


def json_too_deep(body: bytes, limit: int) -> bool:
    """True if the JSON text nests deeper than `limit`; free when it has fewer brackets than that."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    return json_depth(body) > limit


SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # how one reaches a body: JSON's \\uXXXX escape
_SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")


def lone_surrogate_path(body: bytes | str, value: Any) -> list[str | int] | None:
    """The path (keys and indexes) of the first string or object key in the parsed `value` that holds
    a lone surrogate; None when there is none. Free for a body without a surrogate escape (`body` is
    the raw JSON text: valid UTF-8 cannot hold a surrogate, so only `\\uD8xx`-`\\uDFxx` escapes make
    one); otherwise one walk, without recursion. A surrogate pair decodes to one character: no fault."""
    found = _SURROGATE_ESCAPE.search(body) if isinstance(body, bytes) else _SURROGATE_ESCAPE_TEXT.search(body)
    if not found:
        return None
    stack: list[tuple[list[str | int], Any]] = [([], value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if SURROGATE.search(item):
                return path
        elif isinstance(item, dict):
            for key in item:
                if SURROGATE.search(key):
                    return [*path, key]
            stack += [([*path, key], child) for key, child in reversed(item.items())]
        elif isinstance(item, list):
            stack += [([*path, index], child) for index, child in reversed(list(enumerate(item)))]
    return None


def escape_surrogates(text: str) -> str:
    """`text` with each lone surrogate written as its JSON escape (`\\ud800`): in JSON text this keeps
    exactly what was received and is valid UTF-8; anywhere else it shows what was there."""
    return SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def scrub_surrogates(value: Any) -> Any:
    """A copy of JSON-like data (strings, lists, dicts, tuples) with every lone surrogate replaced by
    U+FFFD, keys included; other values are returned as they are."""
    if isinstance(value, str):
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrub_surrogates(k): scrub_surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_surrogates(v) for v in value]
    return value


# Where each door keeps its conversation: OpenAI chat and Anthropic `messages`, Gemini `contents`,
# OpenAI Responses `input`; and the content of one message: `content` (a string or a list of
# blocks), Gemini's `parts`.
MESSAGE_KEYS = ("messages", "contents", "input")
PART_KEYS = ("content", "parts")


def count_messages(body: Any) -> int:
    """The messages of a parsed request body, whatever its door: constant time."""
    if not isinstance(body, dict):
        return 0
    return sum(len(items) for key in MESSAGE_KEYS if isinstance(items := body.get(key), list))


def count_parts(body: Any) -> int:
    """The content parts of every message together (a plain string counts as one), plus the
    system blocks: linear in the number of messages, no deeper."""
    if not isinstance(body, dict):
        return 0
    parts = 0
    for key in MESSAGE_KEYS:
        items = body.get(key)
        if not isinstance(items, list):
            continue
        for item in items:
            content = None
            if isinstance(item, dict):
                content = next((item[k] for k in PART_KEYS if k in item), None)
            parts += len(content) if isinstance(content, list) else 1
    system = body.get("system", body.get("systemInstruction", body.get("system_instruction")))
    if isinstance(system, dict):
        system = system.get("parts")
    if isinstance(system, list):
        parts += len(system)
    return parts
