"""End to end: system prompt rules, find-and-replace, aliases, pins and allow-lists, through the real
bridge (mitmdump) in front of each provider's strict fake, checking exactly what the upstream received.

Part 1: one bridge per backend (module scope). Each system-prompt mode is the rule of one client key
(`keys = [...]`), so one bridge serves every mode: each mode x each door x each provider. The client
sends its system prompt in two pieces, in the way its door has for it (OpenAI `system` + `developer`
messages, Anthropic blocks, Gemini `systemInstruction` parts, Responses `instructions` + a
`developer` message).

Part 2: one bridge with a Kiro and an OpenAI-compatible account: pins by path and header, a key limited
to Kiro refused elsewhere with a 403 in each door's dialect, an alias in every door's listing and in
the answer, the recorder keeping the prompt as sent next to the client's, and a prompt file edited while
requests flow.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bridge_process import BridgeProcess, write_config
from tests.e2e_backends import BACKENDS, PACING, Backend, start_backend
from tests.fakes import kiro as kf
from tests.fakes import openai_upstream as oa

pytestmark = [pytest.mark.timeout(90)]

MODES = ["none", "overwrite", "append", "prepend", "replace"]
KEYS = {mode: f"sk-prompt-rules-{mode}-0123456789" for mode in MODES}
DOORS = ["openai", "anthropic", "gemini", "responses"]
RULES = """
[[system_prompt]]
mode = "overwrite"
text = "RULE overwrite"
keys = ["overwrite"]

[[system_prompt]]
mode = "append"
text = "RULE append"
keys = ["append"]

[[system_prompt]]
mode = "prepend"
text = "RULE prepend"
keys = ["prepend"]

[[replace]]
find = "SECRET"
replace = "[scrubbed]"
scope = "user"
keys = ["replace"]
"""
CLIENT_SYSTEM = ["CLIENT ONE", "CLIENT TWO"]
USER = "hello SECRET"
EXPECTED_SYSTEM = {
    "none": "CLIENT ONE\n\nCLIENT TWO",
    "overwrite": "RULE overwrite",
    "append": "CLIENT ONE\n\nCLIENT TWO\n\nRULE append",
    "prepend": "RULE prepend\n\nCLIENT ONE\n\nCLIENT TWO",
    "replace": "CLIENT ONE\n\nCLIENT TWO",
}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tmp_path_factory):
    keys = [{"key": key, "label": mode} for mode, key in KEYS.items()]
    with start_backend(
        request.param, tmp_path_factory.mktemp(request.param), api_keys=keys, extra_toml=RULES
    ) as started:
        yield started


def door_request(door: str, model: str, key: str, base: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(url, headers, body) of a one-turn request with a two-piece system prompt, in `door`'s dialect."""
    one, two = CLIENT_SYSTEM
    if door == "openai":
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": one},
                {"role": "developer", "content": two},
                {"role": "user", "content": USER},
            ],
        }
        return f"{base}/v1/chat/completions", {"authorization": f"Bearer {key}"}, body
    if door == "anthropic":
        body = {
            "model": model,
            "max_tokens": 256,
            "system": [{"type": "text", "text": one}, {"type": "text", "text": two}],
            "messages": [{"role": "user", "content": USER}],
        }
        return f"{base}/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}, body
    if door == "gemini":
        body = {
            "systemInstruction": {"parts": [{"text": one}, {"text": two}]},
            "contents": [{"role": "user", "parts": [{"text": USER}]}],
        }
        return f"{base}/v1beta/models/{model}:generateContent", {"x-goog-api-key": key}, body
    body = {
        "model": model,
        "instructions": one,
        "input": [{"role": "developer", "content": two}, {"role": "user", "content": USER}],
        "store": False,
    }
    return f"{base}/v1/responses", {"authorization": f"Bearer {key}"}, body


def answer_text(door: str, body: dict[str, Any]) -> str:
    if door == "openai":
        return body["choices"][0]["message"]["content"]
    if door == "anthropic":
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    if door == "gemini":
        return "".join(p.get("text", "") for p in body["candidates"][0]["content"]["parts"] if not p.get("thought"))
    return "".join(
        c["text"] for item in body["output"] if item["type"] == "message" for c in item["content"] if "text" in c
    )


def _text(content: str | list[dict]) -> str:
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def upstream_prompt(backend: Backend) -> tuple[str, str]:
    """(system text, user text) as the upstream received them."""
    body = backend.last()
    if backend.name in ("openai", "qwen"):  # Qwen's content may be parts (its cache markers)
        system = "\n\n".join(_text(m["content"]) for m in body["messages"] if m["role"] == "system")
        return system, _text([m for m in body["messages"] if m["role"] == "user"][0]["content"])
    if backend.name == "anthropic":
        system = body.get("system", [])
        text = system if isinstance(system, str) else "\n\n".join(b["text"] for b in system)
        content = body["messages"][0]["content"]
        return text, content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
    if backend.name in ("gemini", "gemini-cli"):
        inner = body["request"] if backend.name == "gemini-cli" else body
        parts = inner.get("systemInstruction", {}).get("parts", [])
        user = "".join(p.get("text", "") for p in inner["contents"][0]["parts"])
        return "\n\n".join(p["text"] for p in parts), user
    # Kiro has no system field: the system text starts the first user message
    content = body["conversationState"]["currentMessage"]["userInputMessage"]["content"]
    system, _, user = content.rpartition("\n\n")
    return system, user


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_through_each_door(backend, door, mode):
    backend.text("fine")
    url, headers, body = door_request(door, backend.model, KEYS[mode], backend.bridge.base_url)
    response = httpx.post(url, headers=headers, json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert answer_text(door, response.json()) == "fine"
    backend.assert_accepted()
    system, user = upstream_prompt(backend)
    assert system == EXPECTED_SYSTEM[mode]
    assert user == ("hello [scrubbed]" if mode == "replace" else USER)
    sent = json.dumps(backend.last())
    if mode != "overwrite":
        assert "RULE" not in sent.replace(f"RULE {mode}", "")  # no other key's rule, nothing unasked
    else:
        assert "CLIENT" not in sent


# --- part 2: pins, allow-lists, aliases, the recorder, a prompt file under traffic --------------------

ALL_KEY = "sk-prompt-rules-all-0123456789"
KIRO_KEY = "sk-prompt-rules-kiro-only-0123456789"
OPENAI_MODEL = "gpt-test"
KIRO_MODEL = "claude-sonnet-4-5"


class Mixed:
    def __init__(self, bridge: BridgeProcess, kiro: kf.FakeKiro, openai: oa.FakeOpenAI, db: Path, prompt: Path):
        self.bridge, self.kiro, self.openai, self.db, self.prompt = bridge, kiro, openai, db, prompt

    def kiro_text(self, text: str = "from kiro") -> None:
        self.kiro.enqueue(kf.Text(text), kf.ContextUsage(1.0))

    def openai_text(self, text: str = "from openai") -> None:
        self.openai.enqueue(
            oa.Reply(deltas=[{"content": text}], usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
        )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mixed")
    prompt = workdir / "prompt.md"
    prompt.write_text("PROMPT v1")
    db = workdir / "bridge.db"
    with kf.FakeKiro() as kiro, oa.FakeOpenAI() as openai:
        token = kiro.write_token_file(workdir / "kiro-auth-token.json")
        accounts = [
            {
                "name": "kiro-1",
                "provider": "kiro",
                "credentials": str(token),
                "base_url": kiro.base_url,
                "token_url": kiro.social_refresh_url,
                **PACING,
            },
            {
                "name": "local",
                "provider": "openai",
                "api_key": openai.api_key,
                "base_url": openai.base_url,
                "models": [OPENAI_MODEL, KIRO_MODEL],  # both accounts serve claude-sonnet-4-5: pins decide
                **PACING,
            },
        ]
        extra = """
[[system_prompt]]
mode = "overwrite"
file = "prompt.md"
providers = ["kiro"]

[models."fast"]
target = "kiro/claude-sonnet-4-5"
description = "Claude through Kiro"
force = { max_tokens = 1234 }

[models."local-fast"]
target = "local/gpt-test"
"""
        keys = [{"key": ALL_KEY, "label": "all"}, {"key": KIRO_KEY, "label": "kiro-only", "providers": ["kiro"]}]
        config = write_config(
            workdir / "bridge.toml",
            accounts,
            extra_toml=extra,
            api_keys=keys,
            record=True,
            database=str(db),
            strategy="fill-first",
        )
        with BridgeProcess(workdir, config) as bridge:
            yield Mixed(bridge, kiro, openai, db, prompt)


def post(mixed: Mixed, door: str, model: str, key: str = ALL_KEY, prefix: str = "", headers=None) -> httpx.Response:
    url, door_headers, body = door_request(door, model, key, mixed.bridge.base_url + prefix)
    return httpx.post(url, headers={**door_headers, **(headers or {})}, json=body, timeout=30)


def kiro_content(mixed: Mixed) -> str:
    return mixed.kiro.generate_requests()[-1].body["conversationState"]["currentMessage"]["userInputMessage"]["content"]


@pytest.mark.parametrize("door", DOORS)
def test_path_prefix_and_header_pin_a_provider(mixed, door):
    kiro_before, openai_before = len(mixed.kiro.generate_requests()), len(mixed.openai.requests)
    mixed.kiro_text()
    unpinned = post(mixed, door, KIRO_MODEL)  # fill-first: kiro-1, the first account
    assert unpinned.status_code == 200 and answer_text(door, unpinned.json()) == "from kiro"
    mixed.openai_text()
    by_path = post(mixed, door, KIRO_MODEL, prefix="/local")
    mixed.openai_text()
    by_header = post(mixed, door, KIRO_MODEL, headers={"x-llmbridge-provider": "openai"})
    mixed.kiro_text()
    by_kind_path = post(mixed, door, KIRO_MODEL, prefix="/kiro")
    assert [r.status_code for r in (by_path, by_header, by_kind_path)] == [200, 200, 200]
    assert answer_text(door, by_path.json()) == answer_text(door, by_header.json()) == "from openai"
    assert answer_text(door, by_kind_path.json()) == "from kiro"
    assert len(mixed.kiro.generate_requests()) - kiro_before == 2
    assert len(mixed.openai.requests) - openai_before == 2
    # the Kiro-only prompt rule: Kiro got the file's prompt, the OpenAI account the client's
    assert kiro_content(mixed).startswith("PROMPT v1\n\n")
    assert mixed.openai.requests[-1]["messages"][0] == {"role": "system", "content": "CLIENT ONE\n\nCLIENT TWO"}


@pytest.mark.parametrize("door", DOORS)
def test_a_key_limited_to_kiro_is_refused_elsewhere_in_the_doors_dialect(mixed, door):
    mixed.kiro_text()
    allowed = post(mixed, door, KIRO_MODEL, key=KIRO_KEY)
    assert allowed.status_code == 200 and answer_text(door, allowed.json()) == "from kiro"
    calls = len(mixed.openai.requests)
    refused = [
        post(mixed, door, OPENAI_MODEL, key=KIRO_KEY),
        post(mixed, door, KIRO_MODEL, key=KIRO_KEY, prefix="/local"),
        post(mixed, door, "local-fast", key=KIRO_KEY),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert len(mixed.openai.requests) == calls  # nothing reached the upstream
    for response in refused:
        body = response.json()
        if door == "anthropic":
            assert body["type"] == "error" and body["error"]["type"] == "permission_error"
        elif door == "gemini":
            assert body["error"]["code"] == 403 and body["error"]["status"] == "PERMISSION_DENIED"
        else:
            assert body["error"]["type"] == "permission_error" or body["error"].get("code") == "permission_denied"
        assert "kiro-only" in json.dumps(body)


LISTINGS = {
    "openai": ("/v1/models", lambda body: [m["id"] for m in body["data"]]),
    "anthropic": ("/v1/models", lambda body: [m["id"] for m in body["data"]]),
    "gemini": ("/v1beta/models", lambda body: [m["name"].removeprefix("models/") for m in body["models"]]),
}


@pytest.mark.parametrize("door", ["openai", "anthropic", "gemini"])
def test_aliases_in_every_listing_and_only_what_the_key_may_use(mixed, door):
    path, ids = LISTINGS[door]
    headers = {"authorization": f"Bearer {ALL_KEY}", "x-api-key": ALL_KEY, "anthropic-version": "2023-06-01"}
    if door == "gemini":
        headers = {"x-goog-api-key": ALL_KEY}
    everything = ids(httpx.get(mixed.bridge.base_url + path, headers=headers, timeout=30).json())
    assert {"fast", "local-fast", OPENAI_MODEL, KIRO_MODEL} <= set(everything)
    limited_headers = {k: v.replace(ALL_KEY, KIRO_KEY) for k, v in headers.items()}
    limited = ids(httpx.get(mixed.bridge.base_url + path, headers=limited_headers, timeout=30).json())
    assert "fast" in limited and "local-fast" not in limited and OPENAI_MODEL not in limited
    pinned = ids(httpx.get(mixed.bridge.base_url + "/local" + path, headers=headers, timeout=30).json())
    assert "local-fast" in pinned and "fast" not in pinned


@pytest.mark.parametrize("door", DOORS)
def test_an_alias_answers_under_its_own_name(mixed, door):
    mixed.kiro_text("aliased")
    response = post(mixed, door, "fast")
    assert response.status_code == 200, response.text
    body = response.json()
    assert answer_text(door, body) == "aliased"
    if door == "gemini":
        assert body["modelVersion"] == "fast"
    else:
        assert body["model"] == "fast"
    sent = mixed.kiro.generate_requests()[-1].body["conversationState"]["currentMessage"]["userInputMessage"]
    assert sent["modelId"] == "claude-sonnet-4.5"


def recorded(mixed: Mixed, where: str, timeout: float = 10) -> sqlite3.Row:
    """The newest exchange row matching `where`, once the recorder has written it."""
    deadline = time.time() + timeout
    while True:
        with sqlite3.connect(mixed.db) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(f"SELECT * FROM exchanges WHERE {where} ORDER BY started_at DESC LIMIT 1").fetchone()
        if row is not None or time.time() > deadline:
            assert row is not None, f"no exchange recorded where {where}"
            return row
        time.sleep(0.1)


def test_the_recorder_keeps_the_prompt_as_sent_next_to_the_clients(mixed):
    mixed.kiro_text()
    response = post(mixed, "anthropic", "fast", headers={"anthropic-beta": "recorder-check"})
    assert response.status_code == 200
    row = recorded(mixed, "request_json LIKE '%recorder-check%'")
    raw = json.loads(row["request_raw"])
    assert [b["text"] for b in raw["system"]] == CLIENT_SYSTEM  # what the client sent
    assert row["model_requested"] == "fast" and row["account"] == "kiro-1"
    options = json.loads(row["request_json"])  # the canonical request as sent, without its messages
    assert options["model"] == "kiro/claude-sonnet-4-5" and options["max_tokens"] == 1234
    assert options["rules_applied"] == [
        "model 'fast' -> 'kiro/claude-sonnet-4-5'",
        "models.fast: max_tokens 256 -> 1234 (forced)",
        "system_prompt[0]: overwrite",
    ]
    with sqlite3.connect(mixed.db) as conn:  # the system prompt as sent is the root of the stored chain
        root = conn.execute(
            "SELECT m.role, p.text FROM messages m JOIN parts p ON p.message_hash = m.hash "
            "WHERE m.hash = (SELECT parent_hash FROM messages WHERE hash = ?)",
            (row["request_message_hash"],),
        ).fetchall()
    assert root == [("system", mixed.prompt.read_text())]


def test_a_prompt_file_edited_while_requests_flow(mixed):
    """Requests keep going while the file changes; each one gets the old or the new prompt whole,
    and once the edit is on disk every request gets the new one."""
    mixed.kiro.responder = lambda body: [kf.Text("ok"), kf.ContextUsage(1.0)]
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            response = post(mixed, "openai", KIRO_MODEL, prefix="/kiro")
            results.append((response.status_code, kiro_content(mixed)))

    worker = threading.Thread(target=traffic)
    try:
        worker.start()
        time.sleep(0.5)
        mixed.prompt.write_text("PROMPT v2, edited under traffic")
        edited = time.time()
        time.sleep(0.7)
    finally:
        stop.set()
        worker.join(30)
        mixed.kiro.responder = None
    assert results and all(status == 200 for status, _ in results)
    prompts = [content.split("\n\n")[0] for _, content in results]
    assert set(prompts) <= {"PROMPT v1", "PROMPT v2, edited under traffic"}
    assert prompts[0] == "PROMPT v1" and prompts[-1] == "PROMPT v2, edited under traffic"
    assert time.time() - edited > 0.5
    mixed.kiro_text()
    post(mixed, "anthropic", KIRO_MODEL, prefix="/kiro")
    assert kiro_content(mixed).startswith("PROMPT v2, edited under traffic\n\n")
