"""No secret reaches the recordings database: every text and blob column of every table is scanned."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from llmbridge.exchange import AttemptRecord
from llmbridge.recorder import Recorder
from tests.fakes.recordings import exchange, user

SECRETS = {
    "client_bearer": "sk-client-SECRET-0001",
    "upstream_bearer": "ya29.UPSTREAM-SECRET-0002",
    "query_key": "AIzaSECRET0003",
    "body_token": "refresh-SECRET-0004",
    "body_api_key": "api-key-SECRET-0005",
    "response_token": "access-SECRET-0006",
    "cookie": "session=SECRET-0007",
    "amz": "amz-session-SECRET-0008",
    "error_url_key": "AIzaSECRET0009",
    "refresh_traffic": "refresh-traffic-SECRET-0010",
    "userinfo": "userinfo-SECRET-0011",
    "passthrough": "passthrough-SECRET-0012",
    "sse_token": "sse-SECRET-0013",
}


def secret_laden_record():
    s = SECRETS
    sse = b'data: {"text": "sunny", "token": "' + s["sse_token"].encode() + b'"}\n\n'
    record = exchange([user("what is the weather")], "sunny", stream=True, upstream_body=sse)
    record.endpoint = f"POST /v1beta/models/gemini:streamGenerateContent?alt=sse&key={s['query_key']}"
    record.request_raw = json.dumps(  # as the bridge keeps it: the bytes received
        {
            "model": "m",
            "api_key": s["body_api_key"],
            "nested": {"refresh_token": s["body_token"]},
            "contents": [{"parts": [{"text": "what is the weather"}]}],
        }
    ).encode()
    record.request_canonical["passthrough_headers"] = {"x-api-key": s["passthrough"], "anthropic-beta": "b1"}
    record.error_message = f"Client error '403' for url 'https://x.test/v1?key={s['error_url_key']}'"
    attempt = record.attempts[0]
    attempt.url = f"https://user:{s['userinfo']}@upstream.test/v1/chat?key={s['query_key']}&alt=sse"
    attempt.request_headers = {
        "Authorization": f"Bearer {s['upstream_bearer']}",
        "Cookie": s["cookie"],
        "X-Amz-Security-Token": s["amz"],
        "content-type": "application/json",
    }
    # as the providers keep it: the bytes sent (the recorder redacts them)
    attempt.request_body = json.dumps({"project": "p", "access_token": s["body_token"], "request": {}}).encode()
    attempt.response_headers = {"set-cookie": s["cookie"], "content-type": "text/event-stream"}
    attempt.error_message = f"retrying after Bearer {s['upstream_bearer']}"
    failed = AttemptRecord(
        account="acct-0",
        provider="fake",
        url="https://upstream.test/v1/chat",
        request_headers={"x-goog-api-key": s["query_key"]},
        status=401,
        response_body=bytearray(json.dumps({"error": "bad", "access_token": s["response_token"]}).encode()),
    )
    refresh = AttemptRecord(
        account="acct-0",
        provider="fake",
        url="https://oauth2.googleapis.com/token",
        request_body={"grant_type": "refresh_token", "client_id": "c"},
        response_body=bytearray(json.dumps({"id": s["refresh_traffic"]}).encode()),
    )
    record.attempts[:0] = [refresh, failed]
    return record


def all_cells(path: Path):
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for row in conn.execute(f"SELECT * FROM [{table}]"):
            for value in row:
                if isinstance(value, bytes):
                    yield table, value.decode("latin-1")
                elif isinstance(value, str):
                    yield table, value


def test_no_secret_in_any_text_or_blob_column(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    rec = Recorder(path)
    rec.open()
    for _ in range(2):  # the second copy exercises the dedup path too
        rec.submit(secret_laden_record())
    rec.flush()
    rec.close()
    assert rec.stats["written"] == 2
    cells = list(all_cells(path))
    assert any("what is the weather" in text for _, text in cells)  # the scan does see the content
    assert any("[redacted]" in text for table, text in cells if table == "attempts")
    leaks = [(table, name) for table, text in cells for name, secret in SECRETS.items() if secret in text]
    assert leaks == []


def test_scan_would_catch_a_leak(tmp_path: Path) -> None:
    """The scan itself works: a secret written where the recorder keeps plain content is found."""
    path = tmp_path / "bridge.db"
    rec = Recorder(path)
    rec.open()
    rec.submit(exchange([user(SECRETS["client_bearer"])]))  # a user pasting a key into the chat
    rec.flush()
    rec.close()
    assert any(SECRETS["client_bearer"] in text for _, text in all_cells(path))
