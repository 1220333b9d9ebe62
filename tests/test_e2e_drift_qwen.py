"""Drift at zero for Qwen: the pinned Qwen Code (scripts/install-clients, tests/clients/package.json,
on the pinned Node 22) run headless against the strict fake Qwen, and the bridge's qwen provider
against the same fake; the two upstream requests must not differ except where documented.

    official:  qwen (headless, DashScope provider) -> fake Qwen
    bridge:    openai SDK -> bridge (qwen account) -> fake Qwen

Qwen Code 0.24.4 refuses its own Qwen OAuth login (the free tier ended on 2026-04-15), so it runs in
its API-key mode (`--auth-type openai`) with `DASHSCOPE_PROXY_BASE_URL` naming the fake: the same
DashScope request builder, headers and transport as the OAuth mode; only the token and
`X-DashScope-AuthType` ("openai" instead of "qwen-oauth") differ, which the comparison documents.

Compared: header names, order and values (volatile ones normalized: the token, Node's version, the
length, the host); body field order; the DashScope extras; the metadata's form; where the cache
markers are; the tool declaration form. Documented differences: the auth type; the prompt counter (a
headless run counts from 0, the bridge counts prompts from 1 as an interactive session); a tool that
has no parameters gets the empty object schema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.qwen import FakeQwen, Reply
from tests.real_clients import _base_env, _run, clients

BIN, WHY_NOT = clients()
QWEN = BIN / "qwen" if BIN else None
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(QWEN is None or not QWEN.exists(), reason=f"QWEN CODE NOT RUN: {WHY_NOT or 'not installed'}"),
]
MODEL = "coder-model"
VOLATILE_HEADERS = {"authorization", "host", "content-length", "x-stainless-runtime-version"}
DOCUMENTED_HEADERS = {"x-dashscope-authtype": ("openai", "qwen-oauth")}
PROMPT_ID = re.compile(r"^(?P<session>[0-9a-f-]{36})########(?P<n>\d+)$")


def official_qwen(fake: FakeQwen, home: Path, prompt: str) -> Any:
    (home / ".qwen").mkdir(parents=True, exist_ok=True)
    settings = {"privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False}}
    (home / ".qwen" / "settings.json").write_text(json.dumps(settings))
    cwd = home / "work"
    cwd.mkdir(exist_ok=True)
    env = _base_env(home)
    env.update(
        PATH=f"{BIN}:{env['PATH']}",  # Qwen Code needs Node >= 22: the pinned node in .bin first
        OPENAI_API_KEY=fake.new_access_token(),
        OPENAI_BASE_URL=fake.base_url,
        DASHSCOPE_PROXY_BASE_URL=fake.base_url,
        HTTPS_PROXY="http://127.0.0.1:9",  # nothing else may leave the machine
    )
    assert BIN is not None
    return _run("qwen", BIN, ["--auth-type", "openai", "-m", MODEL, prompt], cwd, env, 180)


def main_request(fake: FakeQwen, start: int) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    """(headers, header order, body) of the first generation since `start` that is a user prompt's
    (not a side request such as Qwen Code's memory extractor, whose promptId has another form)."""
    for i in range(start, len(fake.requests)):
        metadata = fake.requests[i].get("metadata") or {}
        if PROMPT_ID.match(str(metadata.get("promptId", ""))):
            return fake.headers[i], [n.lower() for n in fake.header_orders[i]], fake.requests[i]
    raise AssertionError(f"no prompt request among {fake.requests[start:]!r}"[:2000])


def header_drift(official: dict[str, str], bridge: dict[str, str]) -> list[str]:
    out = []
    for name in sorted(set(official) | set(bridge)):
        if name in VOLATILE_HEADERS:
            continue
        mine, theirs = bridge.get(name), official.get(name)
        if (theirs, mine) == DOCUMENTED_HEADERS.get(name) or mine == theirs:
            continue
        out.append(f"header {name}: bridge {mine!r}, Qwen Code {theirs!r}")
    return out


def marker_places(messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(message index from the end, part index from the end) of every cache_control marker."""
    places = []
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            if "cache_control" in part:
                assert part["cache_control"] == {"type": "ephemeral"}
                places.append((i - len(messages) if message["role"] != "system" else 0, j - len(content)))
    return places


def test_the_bridge_sends_what_qwen_code_sends(tmp_path):
    with FakeQwen() as fake:
        fake.auth_types = {"qwen-oauth", "openai"}
        fake.default = Reply(deltas=[{"content": "Hello!"}])
        run = official_qwen(fake, tmp_path / "home", "Say hello. [drift-plain]")
        assert run.returncode == 0, run.describe()
        assert fake.rejections == [], fake.rejections  # the strict fake takes Qwen Code's own request
        official_headers, official_order, official = main_request(fake, 0)

        creds = tmp_path / "oauth_creds.json"
        fake.write_credentials(creds)
        account = {"name": "q", "provider": "qwen", "credentials": str(creds), "base_url": fake.base_url}
        start = len(fake.requests)
        workdir = tmp_path / "bridge"
        workdir.mkdir()
        with BridgeProcess(workdir, write_config(workdir / "bridge.toml", [account], record=False)) as bridge:
            client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
            # the client's system prompt and tools, as a client of the bridge sends them
            tools = [{"type": "function", "function": t["function"]} for t in official["tools"]]
            system = "".join(p["text"] for p in official["messages"][0]["content"])
            stream = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": "Say hello."}],
                tools=tools,
                stream=True,
                stream_options={"include_usage": True},
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello!"
        assert fake.rejections == [], fake.rejections
        bridge_headers, bridge_order, mine = main_request(fake, start)

    assert bridge_order == official_order
    assert header_drift(official_headers, bridge_headers) == []
    assert list(mine) == list(official), "body field order"
    for key in ("model", "max_tokens", "stream", "stream_options", "vl_high_resolution_images", "preserve_thinking"):
        assert mine[key] == official[key], key
    assert set(mine["metadata"]) == set(official["metadata"]) == {"sessionId", "promptId"}
    theirs, ours = PROMPT_ID.match(official["metadata"]["promptId"]), PROMPT_ID.match(mine["metadata"]["promptId"])
    assert theirs and ours and theirs["session"] == official["metadata"]["sessionId"]
    assert ours["session"] == mine["metadata"]["sessionId"]
    assert (theirs["n"], ours["n"]) == ("0", "1")  # documented: headless counts from 0
    assert [m["role"] for m in mine["messages"]] == [m["role"] for m in official["messages"]]
    assert marker_places(mine["messages"]) == marker_places(official["messages"]) == [(0, -1), (-1, -1)]
    assert [list(t) for t in mine["tools"]] == [list(t) for t in official["tools"]]
    # documented: a tool declared without `parameters` gets the empty object schema (the bridge's
    # canonical tool always has one; Qwen Code leaves the key out)
    for theirs_tool, my_tool in zip(official["tools"], mine["tools"], strict=True):
        their_keys = set(theirs_tool["function"]) | {"parameters"}
        assert set(my_tool["function"]) == their_keys, (my_tool["function"], theirs_tool["function"])
        assert my_tool["function"].get("parameters", {}) in (
            theirs_tool["function"].get("parameters"),
            {"type": "object", "properties": {}},
        )


def test_llmbridge_drift_against_captures_of_qwen_code(tmp_path):
    """The capture-mode way, as the README shows it. Qwen Code's own traffic is captured in front of
    the fake (source "captured"); then each generation it made (its prompt, and the memory-extraction
    subagent that follows every prompt) is sent to the bridge as an OpenAI client sends it (the same
    model, messages, tools and settings, without the DashScope extras the bridge must add itself),
    and the bridge's upstream traffic is captured the same way (source "bridge"). `llmbridge drift`
    must find nothing but its documented entries."""
    from click.testing import CliRunner

    from llmbridge.capture import load_session
    from llmbridge.cli import main
    from llmbridge.drift import compare
    from tests.capture_kit import CaptureProcess

    db = tmp_path / "captures.db"
    with FakeQwen() as fake:
        fake.auth_types = {"qwen-oauth", "openai"}
        fake.default = Reply(deltas=[{"content": "Hello!"}])
        with CaptureProcess(tmp_path, fake.origin, db, "captured") as capture:
            run = _official_through(capture.url + "/v1", fake, tmp_path / "official", "Say hello. [drift-capture]")
            assert run.returncode == 0, run.describe()
        official = [c for c in load_session(db, "captured") if c.rpc == "completions"]
        assert official, "Qwen Code made no generation"
        creds = tmp_path / "oauth_creds.json"
        fake.write_credentials(creds)
        with CaptureProcess(tmp_path, fake.origin, db, "bridge") as capture:
            account = {"name": "q", "provider": "qwen", "credentials": str(creds), "base_url": capture.url + "/v1"}
            workdir = tmp_path / "bridge"
            workdir.mkdir()
            with BridgeProcess(workdir, write_config(workdir / "bridge.toml", [account], record=False)) as bridge:
                client = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
                for call in official:
                    request = as_openai_client_request(call.body)
                    for _ in client.chat.completions.create(**request):
                        pass
        assert fake.rejections == [], fake.rejections
    report = compare(load_session(db, "captured"), load_session(db, "bridge"), "captured", "bridge")
    print(report.text())
    assert report.drift == [], report.text()
    result = CliRunner().invoke(main, ["drift", "--db", str(db)])
    assert result.exit_code == 0 and "no drift" in result.output, result.output


# What Qwen Code adds for DashScope, which the bridge's qwen provider must add by itself
DASHSCOPE_EXTRAS = ("metadata", "vl_high_resolution_images", "preserve_thinking", "enable_thinking")


def as_openai_client_request(body: dict[str, Any]) -> dict[str, Any]:
    """A captured Qwen Code generation as a plain OpenAI client would send it to the bridge: the same
    fields, without the DashScope extras and the cache markers."""

    def unmarked(part: Any) -> Any:
        return {k: v for k, v in part.items() if k != "cache_control"} if isinstance(part, dict) else part

    request = {k: v for k, v in body.items() if k not in DASHSCOPE_EXTRAS}
    request["messages"] = [
        {**m, "content": [unmarked(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
        for m in body["messages"]
    ]
    if "tools" in body:
        request["tools"] = [unmarked(t) for t in body["tools"]]
    return request


def _official_through(base_url: str, fake: FakeQwen, home: Path, prompt: str) -> Any:
    """Qwen Code as the official client: its API-key mode with the DashScope provider (the request
    builder, headers and transport of its OAuth mode), against `base_url`."""
    (home / ".qwen").mkdir(parents=True, exist_ok=True)
    settings = {"privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False}}
    (home / ".qwen" / "settings.json").write_text(json.dumps(settings))
    cwd = home / "work"
    cwd.mkdir(exist_ok=True)
    env = _base_env(home)
    env.update(
        PATH=f"{BIN}:{env['PATH']}",
        OPENAI_API_KEY=fake.new_access_token(),
        OPENAI_BASE_URL=base_url,
        DASHSCOPE_PROXY_BASE_URL=base_url,
        HTTPS_PROXY="http://127.0.0.1:9",
        QWEN_CODE_SUPPRESS_YOLO_WARNING="1",
    )
    assert BIN is not None
    return _run("qwen", BIN, ["--auth-type", "openai", "-m", MODEL, prompt], cwd, env, 180)
