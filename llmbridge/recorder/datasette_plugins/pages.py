"""Datasette plugin loaded by `llmbridge browse` (`--plugins-dir`): the pages people read recordings on.

- `/`: the start page: a search box, the recent exchanges, the usage queries, a link to the help page.
- `/<db>/-/exchange/<id>`: one exchange on one screen (see `llmbridge.recorder.reading`).
- `/<db>/-/image/<hash>`: an image blob, served only as a raster image type (never as HTML or SVG).
- `/-/llmbridge/help`: what every table and column means (kept off the table pages).
- `render_cell`: ids link to the exchange screen, hashes to their rows, durations read as time, JSON is
  indented, search hits are marked. `prepare_connection` adds `llmbridge_fts()` for the search query.

Every page checks Datasette's own permissions first, so `--login` covers these pages too. Templates
live in `llmbridge/recorder/templates/` (`--template-dir`); recorded text is escaped there (Jinja's
autoescape) or rendered by `llmbridge.recorder.render`, which escapes it.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from datasette import NotFound, hookimpl
from datasette.utils import tilde_decode, tilde_encode
from datasette.utils.asgi import Response
from markupsafe import Markup

from llmbridge.recorder.metadata import QUERIES, TABLES, USAGE_QUERIES
from llmbridge.recorder.reading import load_exchange
from llmbridge.recorder.render import (
    HIT_START,
    bar_chart,
    duration,
    fts_query,
    highlighted,
    looks_like_json,
    markdown,
    pretty_json,
)

CSS = Path(__file__).with_name("llmbridge.css")
RECENT_ON_START_PAGE = 50
# Served inline only as these types; anything else (SVG can hold scripts) is offered as a download.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
HASH_COLUMNS = ("hash", "parent_hash", "message_hash", "request_message_hash", "response_message_hash")
JSON_COLUMNS = (
    "request_json",
    "request_raw",
    "usage_json",
    "request_headers",
    "response_headers",
    "payload",
    "provider_metadata",
)


@hookimpl  # type: ignore[untyped-decorator]  # pluggy's marker is not annotated
def prepare_connection(conn: sqlite3.Connection) -> None:
    conn.create_function("llmbridge_fts", 1, fts_query, deterministic=True)


@hookimpl  # type: ignore[untyped-decorator]
def extra_css_urls(datasette: Any) -> list[str]:
    return [datasette.urls.path("/-/llmbridge.css")]


@hookimpl  # type: ignore[untyped-decorator]
def register_routes() -> list[tuple[str, Any]]:
    return [
        (r"^/$", start_page),
        (r"^/-/llmbridge\.css$", stylesheet),
        (r"^/-/llmbridge/help$", help_page),
        (r"^/(?P<database>[^/]+)/-/exchange/(?P<exchange_id>[^/]+)$", exchange_page),
        (r"^/(?P<database>[^/]+)/-/image/(?P<blob_hash>[^/]+)$", image),
    ]


# --- cells ---------------------------------------------------------------------------------------


@hookimpl  # type: ignore[untyped-decorator]
def render_cell(row: Any, value: Any, column: str, table: str | None, database: str, datasette: Any) -> Any:
    """Links, durations, JSON and highlights; None leaves the cell to Datasette."""
    if value is None or value == "":
        return None
    if _is_exchange_id(column, table, value):
        return _link(exchange_url(datasette, database, str(value)), str(value), "read this exchange")
    if column == "started_at" and table == "exchanges" and "id" in row.keys():
        return _link(exchange_url(datasette, database, str(row["id"])), str(value), "read this exchange")
    if column in HASH_COLUMNS and isinstance(value, str) and value.startswith("b2:"):
        return _link(row_url(datasette, database, "messages", value), value, "this message")
    if column == "blob_hash" and isinstance(value, str):
        return _link(row_url(datasette, database, "blobs", value), value, "the image bytes")
    if column.endswith("_ms") and isinstance(value, int | float):
        return duration(value)
    if isinstance(value, str) and HIT_START in value:
        return highlighted(value)
    if column in JSON_COLUMNS and looks_like_json(value):
        return Markup('<details><summary>{}</summary><pre class="llmbridge-json">{}</pre></details>').format(
            value[:40] + ("…" if len(value) > 40 else ""), pretty_json(value)
        )
    return None


def _is_exchange_id(column: str, table: str | None, value: Any) -> bool:
    if column in ("exchange_id", "first_exchange_id"):
        return isinstance(value, str)
    return column == "id" and table in (None, "exchanges") and isinstance(value, str)


def _link(href: str, text: str, title: str) -> Markup:
    return Markup('<a href="{}" title="{}">{}</a>').format(href, title, text)


# Datasette redirects %-escapes in a path to its tilde encoding ("sha256:" -> "sha256~3A"): links use it.
def exchange_url(datasette: Any, database: str, exchange_id: str) -> str:
    return f"{datasette.urls.database(database)}/-/exchange/{tilde_encode(exchange_id)}"


def image_url(datasette: Any, database: str, blob_hash: str) -> str:
    return f"{datasette.urls.database(database)}/-/image/{tilde_encode(blob_hash)}"


def row_url(datasette: Any, database: str, table: str, key: str | int) -> str:
    return str(datasette.urls.row(database, table, tilde_encode(str(key))))


# --- pages ---------------------------------------------------------------------------------------


async def _readable(datasette: Any, request: Any, database: str) -> Any:
    """The database, once the actor may read its exchanges (Datasette's own checks, so --login holds)."""
    await datasette.ensure_permissions(
        request.actor, [("view-table", (database, "exchanges")), ("view-database", database), "view-instance"]
    )
    try:
        return datasette.get_database(database)
    except KeyError:
        raise NotFound(f"no database {database}") from None


async def _recordings_database(datasette: Any) -> str | None:
    """The first database that holds recordings (browse serves one)."""
    for name, db in datasette.databases.items():
        if name != "_internal" and "exchanges" in await db.table_names():
            return str(name)
    return None


async def start_page(datasette: Any, request: Any) -> Response:
    await datasette.ensure_permissions(request.actor, ["view-instance"])
    database = await _recordings_database(datasette)
    recent: list[dict[str, Any]] = []
    days: list[dict[str, Any]] = []
    if database:
        db = await _readable(datasette, request, database)
        recent = [dict(r) for r in (await db.execute(_RECENT_SQL, [RECENT_ON_START_PAGE])).rows]
        days = [dict(r) for r in (await db.execute(_DAYS_SQL, [DAYS_CHARTED])).rows][::-1]
    context = {
        "database": database,
        "recent": recent,
        "usage_queries": USAGE_QUERIES,
        "queries": QUERIES,
        "exchange_url": lambda exchange_id: exchange_url(datasette, str(database), exchange_id),
        "duration": duration,
        "requests_chart": bar_chart(
            [(d["day"][5:], d["requests"], d["errors"]) for d in days], "Requests per day (failed in red)"
        ),
        "tokens_chart": bar_chart(
            [(d["day"][5:], d["tokens"], 0) for d in days], "Tokens per day (input + output)", " tokens"
        ),
        "charted_days": len(days),
    }
    return Response.html(await datasette.render_template("llmbridge_start.html", context, request=request))


DAYS_CHARTED = 14
_DAYS_SQL = """SELECT date(started_at) AS day, count(*) AS requests,
  sum(status >= 400 OR error_kind IS NOT NULL) AS errors,
  coalesce(sum(input_tokens), 0) + coalesce(sum(output_tokens), 0) AS tokens
FROM exchanges GROUP BY day ORDER BY day DESC LIMIT ?"""

_RECENT_SQL = """SELECT e.id, e.started_at, coalesce(e.model_served, e.model_requested) AS model, e.account,
  e.status, e.duration_ms, e.input_tokens, e.output_tokens, e.usage_estimated, e.error_kind,
  (SELECT substr(group_concat(coalesce(p.text, '[' || p.type || ']'), ' '), 1, 160) FROM parts p
   WHERE p.message_hash = e.request_message_hash) AS prompt,
  (SELECT substr(group_concat(p.text, ''), 1, 160) FROM parts p
   WHERE p.message_hash = e.response_message_hash AND p.type = 'text') AS answer
FROM exchanges e ORDER BY e.started_at DESC LIMIT ?"""


async def exchange_page(datasette: Any, request: Any) -> Response:
    database = request.url_vars["database"]
    exchange_id = tilde_decode(request.url_vars["exchange_id"])
    db = await _readable(datasette, request, database)
    view = await db.execute_fn(lambda conn: load_exchange(conn, exchange_id))
    if view is None:
        raise NotFound(f"no exchange {exchange_id} in {database}")
    context = {
        "database": database,
        "exchange": view,
        "e": view.row,
        "markdown": markdown,
        "pretty_json": pretty_json,
        "duration": duration,
        "exchange_url": lambda other: exchange_url(datasette, database, other),
        "image_url": lambda blob: image_url(datasette, database, blob),
        "row_url": lambda table, key: row_url(datasette, database, table, key),
        "blob_url": lambda attempt_id: datasette.urls.row_blob(database, "attempts", str(attempt_id), "response_body"),
        "thread_url": f"{datasette.urls.query(database, 'conversation')}?hash="
        + urllib.parse.quote(exchange_id, safe=""),
        "attempts_url": f"{datasette.urls.table(database, 'attempts')}?exchange_id="
        + urllib.parse.quote(exchange_id, safe=""),
    }
    html = await datasette.render_template("llmbridge_exchange.html", context, request=request)
    return Response.html(html)


async def image(datasette: Any, request: Any) -> Response:
    database = request.url_vars["database"]
    blob_hash = tilde_decode(request.url_vars["blob_hash"])
    db = await _readable(datasette, request, database)
    await datasette.ensure_permissions(request.actor, [("view-table", (database, "blobs"))])
    found = (await db.execute("SELECT media_type, content FROM blobs WHERE hash = ?", [blob_hash])).first()
    if found is None:
        raise NotFound(f"no image {blob_hash}")
    media_type = found["media_type"] if found["media_type"] in IMAGE_TYPES else "application/octet-stream"
    headers = {
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
        "cache-control": "private, max-age=86400",
    }
    if media_type == "application/octet-stream":
        headers["content-disposition"] = "attachment"
    return Response(bytes(found["content"]), content_type=media_type, headers=headers)


async def help_page(datasette: Any, request: Any) -> Response:
    await datasette.ensure_permissions(request.actor, ["view-instance"])
    context = {"tables": TABLES, "queries": QUERIES, "database": await _recordings_database(datasette)}
    return Response.html(await datasette.render_template("llmbridge_help.html", context, request=request))


async def stylesheet(datasette: Any, request: Any) -> Response:
    return Response(CSS.read_text(), content_type="text/css; charset=utf-8")
