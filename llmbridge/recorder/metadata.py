"""What Datasette shows for a recordings database: titles, column descriptions and canned queries.

`llmbridge browse` writes this as `metadata.yml` next to the database and starts Datasette with it and
with the plugin in `datasette_plugins/` (the search query calls its `llmbridge_fts()`; ids and hashes
become links there); tests pass `build_metadata()` to `browse.datasette_app()`, the same Datasette in
process. Column descriptions are shown on the plugin's help page and in each column's menu.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_ANSWER = (
    "(SELECT substr(group_concat(p.text, ''), 1, 200) FROM parts p "
    "WHERE p.message_hash = e.response_message_hash AND p.type = 'text')"
)
_PROMPT = (
    "(SELECT substr(group_concat(coalesce(p.text, '[' || p.type || ']'), ' '), 1, 200) FROM parts p "
    "WHERE p.message_hash = e.request_message_hash)"
)


def _usage_by(column: str, label: str) -> str:
    """Requests, errors, tokens and latency grouped by one expression over `exchanges`."""
    return f"""SELECT {column} AS {label}, count(*) AS requests,
  sum(e.status >= 400 OR e.error_kind IS NOT NULL) AS errors,
  sum(e.input_tokens) AS input_tokens, sum(e.output_tokens) AS output_tokens,
  sum(e.cached_tokens) AS cached_tokens, sum(e.reasoning_tokens) AS reasoning_tokens,
  sum(e.usage_estimated) AS estimated,
  avg(e.ttfb_ms) AS avg_ttfb_ms, avg(e.duration_ms) AS avg_duration_ms, max(e.duration_ms) AS max_duration_ms
FROM exchanges e GROUP BY {label} ORDER BY {"day DESC" if label == "day" else "requests DESC"}"""


_USAGE_NOTE = (
    " Tokens as the providers counted them; 'estimated' counts the requests whose counts the bridge "
    "estimated because the provider gave none."
)

USAGE_QUERIES: dict[str, dict[str, Any]] = {
    "usage_per_day": {
        "title": "Usage per day",
        "description": "Requests, errors, tokens and latency per UTC day." + _USAGE_NOTE,
        "sql": _usage_by("date(e.started_at)", "day"),
    },
    "usage_per_account": {
        "title": "Usage per account",
        "description": "Requests, errors, tokens and latency per upstream account." + _USAGE_NOTE,
        "sql": _usage_by("e.account", "account"),
    },
    "usage_per_model": {
        "title": "Usage per model",
        "description": "Requests, errors, tokens and latency per model served." + _USAGE_NOTE,
        "sql": _usage_by("coalesce(e.model_served, e.model_requested)", "model"),
    },
    "usage_per_client_key": {
        "title": "Usage per client key",
        "description": "Requests, errors, tokens and latency per client API key (its label)." + _USAGE_NOTE,
        "sql": _usage_by("e.key_label", "client_key"),
    },
}

QUERIES: dict[str, dict[str, Any]] = {
    "recent_exchanges": {
        "title": "Recent exchanges",
        "description": "The latest 200 client requests, newest first, with the last prompt and the answer. "
        "Click an id to read the exchange.",
        "sql": f"""SELECT e.id, e.started_at, coalesce(e.model_served, e.model_requested) AS model, e.account,
  e.status, e.duration_ms, {_PROMPT} AS prompt, {_ANSWER} AS answer, e.input_tokens, e.output_tokens,
  e.error_kind, e.client_format, e.provider, e.attempt_count, e.ttfb_ms, e.finish_reason
FROM exchanges e ORDER BY e.started_at DESC LIMIT 200""",
    },
    "conversation": {
        "title": "One conversation as a thread",
        "description": "Walks the parent chain from a message hash (or an exchange id: its answer), "
        "root (the system prompt) first.",
        "sql": """WITH RECURSIVE chain(hash, parent_hash, role, depth) AS (
  SELECT hash, parent_hash, role, 0 FROM messages
  WHERE hash = :hash OR hash = (SELECT coalesce(response_message_hash, request_message_hash)
                                FROM exchanges WHERE id = :hash)
  UNION ALL
  SELECT m.hash, m.parent_hash, m.role, chain.depth + 1
  FROM messages m JOIN chain ON m.hash = chain.parent_hash
)
SELECT chain.role,
  (SELECT group_concat(piece, char(10)) FROM (
     SELECT CASE WHEN p.type = 'reasoning' THEN '(thinking) ' || p.text
                 WHEN p.type = 'tool_call'
                   THEN '[tool call ' || p.tool_name || '] ' || coalesce(p.payload, '')
                 WHEN p.type = 'tool_result' THEN '[tool result ' || coalesce(p.tool_call_id, '') || '] '
                                                  || coalesce(p.text, '')
                 WHEN p.type = 'image' THEN '[image ' || coalesce(p.blob_hash, '') || ']'
                 ELSE p.text END AS piece
     FROM parts p WHERE p.message_hash = chain.hash ORDER BY p.position)) AS content,
  chain.hash, m.first_exchange_id, m.created_at
FROM chain JOIN messages m ON m.hash = chain.hash
ORDER BY chain.depth DESC""",
    },
    "failures_by_account": {
        "title": "Failures by account",
        "description": "Failed upstream attempts grouped by account, provider and kind of failure.",
        "sql": """SELECT account, provider, coalesce(error_kind, 'http ' || status) AS failure,
  count(*) AS attempts, min(started_at) AS first_seen, max(started_at) AS last_seen
FROM attempts WHERE error_kind IS NOT NULL OR status >= 400
GROUP BY account, provider, failure ORDER BY attempts DESC""",
    },
    "tokens_per_model_per_day": {
        "title": "Tokens per model per day",
        "description": "Requests and token usage by UTC day and served model.",
        "sql": """SELECT date(started_at) AS day, coalesce(model_served, model_requested) AS model,
  count(*) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
  sum(cached_tokens) AS cached_tokens, sum(reasoning_tokens) AS reasoning_tokens,
  sum(usage_estimated) AS estimated_rows
FROM exchanges GROUP BY day, model ORDER BY day DESC, requests DESC""",
    },
    "slowest_ttfb": {
        "title": "Slowest time to first byte",
        "description": "The 100 exchanges that waited longest for their first byte.",
        "sql": """SELECT id, started_at, coalesce(model_served, model_requested) AS model, account, provider,
  stream, ttfb_ms, duration_ms, attempt_count, status
FROM exchanges WHERE ttfb_ms IS NOT NULL ORDER BY ttfb_ms DESC LIMIT 100""",
    },
    "search": {
        "title": "Search prompts and answers",
        "description": "Words in any prompt, answer, tool call or result: 'lighthouse' also finds "
        "'lighthouses', 'lightho*' finds words that start so, \"quoted words\" find a phrase.",
        "sql": """SELECT m.first_exchange_id AS exchange_id, m.created_at, m.role, p.type,
  snippet(parts_fts, 0, char(2), char(3), '...', 24) AS snippet, p.message_hash
FROM parts_fts JOIN parts p ON p.id = parts_fts.rowid JOIN messages m ON m.hash = p.message_hash
WHERE parts_fts MATCH llmbridge_fts(:q) ORDER BY rank LIMIT 100""",
    },
    **USAGE_QUERIES,
    "account_limits": {
        "title": "Quota and cool-down history",
        "description": "Every upstream attempt an account's limits refused (rate limits, spent quota, "
        "overload), with the wait the upstream asked for: when each account was cooling down.",
        "sql": """SELECT a.started_at, a.account, a.provider, a.status,
  coalesce(a.error_kind, 'http ' || a.status) AS limit_kind,
  coalesce(json_extract(a.response_headers, '$."retry-after"'),
           json_extract(a.response_headers, '$."x-ratelimit-reset-requests"')) AS retry_after,
  a.error_message, a.exchange_id
FROM attempts a
WHERE a.status = 429 OR a.error_kind IN ('rate_limited', 'quota_exhausted', 'overloaded', 'account_unusable')
ORDER BY a.started_at DESC LIMIT 500""",
    },
}

TABLES: dict[str, dict[str, Any]] = {
    "exchanges": {
        "title": "Exchanges",
        "description": "One row per client request and everything done to answer it.",
        "sort_desc": "started_at",
        "facets": ["provider", "model_served", "account", "status", "client_format", {"date": "started_at"}],
        "columns": {
            "id": "Sortable unique id (ms timestamp + randomness)",
            "started_at": "When the client request arrived (UTC)",
            "client_format": "The client's API dialect: openai, anthropic or gemini",
            "endpoint": "Method and path the client called",
            "key_label": "Label of the client API key used (never the key)",
            "stream": "1 when the client asked for a streamed answer",
            "model_requested": "Model the client asked for",
            "model_served": "Model that answered, as the provider named it",
            "provider": "Provider of the account that answered",
            "account": "Account that answered (the last attempt)",
            "attempt_count": "Upstream attempts made (see attempts)",
            "status": "HTTP status sent to the client",
            "ttfb_ms": "Milliseconds until the first byte went to the client",
            "duration_ms": "Milliseconds until the exchange ended",
            "finish_reason": "Why the answer ended: stop, length, tool_calls, ...",
            "input_tokens": "Prompt tokens (including cached)",
            "output_tokens": "Answer tokens (including reasoning)",
            "cached_tokens": "Prompt tokens read from a cache",
            "cache_creation_tokens": "Prompt tokens written to a cache",
            "reasoning_tokens": "Answer tokens spent thinking",
            "usage_estimated": "1 when the provider gave no counts and the bridge estimated them",
            "error_kind": "Kind of failure (the bridge's error tree), if any",
            "error_message": "The failure's message, secrets removed",
            "client_disconnected": "1 when the client went away before the end (the answer is still whole)",
            "response_id": "Id of the answer as sent to the client",
            "request_message_hash": "Last message of the request (walk parent_hash for the history)",
            "response_message_hash": "The answer, as a message whose parent is the request",
            "request_json": "Canonical request without its messages (model, tools, options)",
            "request_raw": "The client's request body as received, secrets removed",
            "usage_json": "Usage as the bridge computed it",
        },
    },
    "attempts": {
        "title": "Upstream attempts",
        "description": "One row per upstream request made for an exchange (one account tried once).",
        "sort_desc": "id",
        "facets": ["account", "provider", "status", "error_kind"],
        "columns": {
            "exchange_id": "The exchange this attempt served",
            "position": "1 for the first attempt",
            "url": "Upstream URL, secret query parameters removed",
            "request_headers": "Headers sent upstream, secrets removed",
            "request_json": "The translated request body sent upstream",
            "status": "Upstream HTTP status",
            "response_headers": "Upstream response headers, secrets removed",
            "response_body": "Raw upstream bytes as received (export with llmbridge export-fixture)",
            "response_size": "Bytes in response_body",
            "ttfb_ms": "Milliseconds until the first upstream byte",
            "error_kind": "How the attempt failed, if it did",
        },
    },
    "messages": {
        "title": "Messages (content-addressed)",
        "description": "Each message once: hash over parent hash, role and parts. System prompts are "
        "the root of each chain.",
        "columns": {
            "hash": "b2: + BLAKE2b-128 of canonical JSON {parent, message}",
            "parent_hash": "The message before this one",
            "role": "system, user or assistant",
            "first_exchange_id": "The exchange that first sent or received this message",
        },
    },
    "parts": {
        "title": "Message parts",
        "description": "Text, reasoning, tool calls, tool results and images of each message.",
        "columns": {
            "type": "text, reasoning, tool_call, tool_result or image",
            "text": "Literal text (searchable)",
            "payload": "Everything else about the part, as JSON",
            "blob_hash": "Image bytes in blobs",
        },
    },
    "blobs": {"title": "Blobs", "description": "Image bytes, stored once by sha256 of media type + bytes."},
}


def build_metadata(database_name: str, login: bool = False) -> dict[str, Any]:
    """Datasette metadata for a recordings database (its name is the file's stem). With `login`, only
    the signed-in root actor may see anything (Datasette's instance-wide `allow`)."""
    metadata: dict[str, Any] = {
        "title": "llmbridge recordings",
        "description": "Every prompt and response that went through the bridge.",
        # hide_sql: the rows first; each page keeps a "show" link for the SQL.
        "databases": {
            database_name: {"tables": TABLES, "queries": {n: {**q, "hide_sql": True} for n, q in QUERIES.items()}}
        },
    }
    if login:
        metadata["allow"] = {"id": "root"}
    return metadata


def write_metadata(database: Path, out: Path | None = None, login: bool = False) -> Path:
    """Writes metadata.yml next to the database (regenerated each time: edits are overwritten)."""
    out = out or database.parent / "metadata.yml"
    text = yaml.safe_dump(build_metadata(database.stem, login), sort_keys=False, allow_unicode=True, width=110)
    out.write_text("# Written by `llmbridge browse`; regenerated on each run.\n" + text)
    return out
