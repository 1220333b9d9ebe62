"""llmbridge drift's rules on hand-made calls (the real-client run: test_e2e_drift_gemini_cli.py)."""

from __future__ import annotations

import copy

from llmbridge.capture import Call, Captured, CaptureStore, load_session
from llmbridge.drift import compare, id_class, normalize_header

URL = "https://cloudcode-pa.googleapis.com/v1internal"
HEADERS = [
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate, br"),
    ("authorization", "Bearer [redacted]"),
    ("content-length", "120"),
    ("content-type", "application/json"),
    ("user-agent", "GeminiCLI-tui/0.61.0/gemini-2.5-pro (linux; x64; terminal) google-api-nodejs-client/10.9.0"),
    ("x-goog-api-client", "gl-node/20.20.2"),
    ("Host", "127.0.0.1:1234"),
    ("Connection", "keep-alive"),
]
SID = "0b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c8d"
BODY = {
    "model": "gemini-2.5-pro",
    "project": "p",
    "user_prompt_id": SID,
    "request": {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "ls", "args": {}, "id": "ls_1796304934374_0"}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "ls", "parametersJsonSchema": {"type": "object"}}]}],
        "generationConfig": {"temperature": 1, "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192}},
        "session_id": SID,
    },
}


def calls(body=BODY, headers=HEADERS, extra=()) -> list[Call]:
    load = Call(1, "POST", URL + ":loadCodeAssist", [("accept", "application/json")], {"metadata": {}})
    out = [load, *extra, Call(9, "POST", URL + ":streamGenerateContent?alt=sse", list(headers), body)]
    return out


def test_identical_traffic_has_no_drift_and_volatile_values_are_normalized():
    other = [(k, v.replace("20.20.2", "22.1.0").replace("1234", "99").replace("120", "7")) for k, v in HEADERS]
    body = copy.deepcopy(BODY)
    body["request"]["contents"][0]["parts"][0]["text"] = "another prompt, same shape"
    body["request"]["session_id"] = body["user_prompt_id"] = "11111111-2222-4333-8444-555555555555"
    report = compare(calls(), calls(body, other), "a", "b")
    assert report.entries == [], report.text()
    assert normalize_header("x-goog-api-client", "gl-node/22.1.0") == "gl-node/<node version>"


def test_the_issue_table_differences_are_each_found():
    old = [
        ("Host", "h"),
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer x"),
        ("User-Agent", "GeminiCLI/0.56.0/gemini-2.5-pro (linux; x64; terminal)"),
        ("Accept-Encoding", "identity"),
    ]
    body = copy.deepcopy(BODY)
    declaration = body["request"]["tools"][0]["functionDeclarations"][0]
    declaration["parameters"] = {"type": "OBJECT"}
    del declaration["parametersJsonSchema"]
    body["user_prompt_id"] = f"{SID}########7"
    body["request"]["contents"][1]["parts"][0]["functionCall"]["id"] = "call_0123456789abcdef"
    report = compare(calls(), calls(body, old), "official", "bridge")
    text = report.text()
    for expected in (
        "x-goog-api-client missing",
        "accept missing",
        "user-agent is 'GeminiCLI/0.56.0",
        "accept-encoding is 'identity'",
        "order",
        "parametersJsonSchema: missing",
        "parameters: is the bridge's own",
        "'<uuid>########<n>' from the bridge",
        "'call_<hex>' from the bridge; '<name>_<epoch ms>_<n>' in the capture",
    ):
        assert expected in text, text
    assert report.drift


def test_call_sequence_and_enums():
    quota = Call(2, "POST", URL + ":retrieveUserQuota", [], {"project": "p"})
    report = compare(calls(extra=[quota]), calls(), "o", "b")
    assert any("retrieveUserQuota" in e.what for e in report.drift)
    body = copy.deepcopy(BODY)
    body["request"]["generationConfig"]["thinkingConfig"]["thinkingBudget"] = 1024
    assert any("thinkingBudget" in e.where for e in compare(calls(), calls(body), "o", "b").drift)
    assert id_class("run_shell_command_1796304934374_0") == "<name>_<epoch ms>_<n>"


def test_capture_store_keeps_wire_order_and_redacts_by_structure(tmp_path):
    store = CaptureStore(tmp_path / "c.db", "captured", "s1")
    store.record(
        Captured(
            "POST",
            URL + ":loadCodeAssist?key=AIzaSECRET",
            [("Accept", "application/json"), ("Authorization", "Bearer ya29.secret"), ("x-goog-api-key", "k")],
            b'{"metadata": {}, "refresh_token": "1//secret"}',
            200,
            [("content-type", "application/json")],
            b'{"access_token": "ya29.other"}',
        )
    )
    store.close()
    (call,) = load_session(tmp_path / "c.db", "captured")
    assert call.headers == [
        ("Accept", "application/json"),
        ("Authorization", "Bearer [redacted]"),
        ("x-goog-api-key", "[redacted]"),
    ]
    assert "secret" not in (tmp_path / "c.db").read_bytes().decode("latin-1").lower().replace("secret_", "")
    assert call.body["refresh_token"] == "[redacted]" and "AIzaSECRET" not in call.url
