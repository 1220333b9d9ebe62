"""Offline mode (`llmbridge serve --replay replay/demo`) through the real bridge process.

The committed demo corpus is also a protocol-change detector: each fixture's client request, sent
through today's bridge, must produce exactly the upstream call that was recorded (the replay server
logs every call it could only answer from the nearest recording, naming the first difference).
After an intended change, re-record with `scripts/record_demo_corpus.py` and review the diff.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from click.testing import CliRunner
from google import genai
from google.genai import types

from llmbridge.cli import main
from llmbridge.errors import ConfigError
from llmbridge.offline import OfflineCorpus, corpus_fixtures
from llmbridge.providers.base import recorded_models
from llmbridge.replay import ReplayServer, load_fixtures
from tests.bridge_process import CLIENT_KEY, ROOT, BridgeProcess, write_config

DEMO = ROOT / "replay" / "demo"
HEADERS = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY, "x-goog-api-key": CLIENT_KEY}
NEAREST = "no exact recording"
# The words each recorded answer holds (scripts/record_demo_corpus.py scripts them)
ANSWERS = {
    "01-openai-chat": ["Teal."],
    "02-anthropic-messages-stream": ["Crimson."],
    "03-gemini-generate": ["Ochre."],
    "04-gemini-cli-chat-stream": ["Indigo.", "A calm one."],
    "05-gemini-cli-responses": ["Saffron."],
    "06-kiro-messages-stream": ["Viridian."],
    "07-kiro-chat-tool-call": ["get_weather", "Lisbon"],
    "08-qwen-chat-stream": ["Cerulean."],
    "09-openai-chat-stream": ["Mauve."],
    "10-anthropic-messages": ["Amber."],
    "11-gemini-generate-stream": ["Sepia."],
}


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("offline")
    config = write_config(workdir / "bridge.toml", [])
    with BridgeProcess(workdir, config, extra_args=["--set", f"bridge_replay={DEMO}"]) as bridge:
        yield bridge


TEXT_KEYS = {"text", "content", "delta", "thinking", "reasoning_content", "partial_json", "arguments", "name"}


def answer_text(answer: httpx.Response) -> str:
    """The text pieces of an answer, whole or streamed (SSE), joined: streamed words arrive in pieces."""
    pieces: list[str] = []

    def walk(value: object, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key in TEXT_KEYS:
            pieces.append(value)

    lines = [line[5:] for line in answer.text.splitlines() if line.startswith("data:")] or [answer.text]
    for line in lines:
        try:
            walk(json.loads(line))
        except ValueError:
            continue
    return "".join(pieces)


def post(bridge: BridgeProcess, fixture: dict) -> httpx.Response:
    method, path = fixture["client"]["endpoint"].split(" ", 1)
    assert method == "POST"
    return httpx.post(bridge.base_url + path, json=fixture["client"]["request"], headers=HEADERS, timeout=30)


def test_the_corpus_covers_every_door_and_provider():
    fixtures = [json.loads(p.read_text()) for p in sorted(DEMO.glob("*.json"))]
    assert sorted(p.stem for p in DEMO.glob("*.json")) == sorted(ANSWERS)
    assert {f["client"]["format"] for f in fixtures} == {"openai", "anthropic", "gemini", "responses"}
    assert {f["provider"] for f in fixtures} == {"openai", "anthropic", "gemini", "gemini-cli", "kiro", "qwen"}
    text = "".join(p.read_text() for p in DEMO.glob("*.json"))
    for secret_shape in ("Bearer ", "sk-upstream", "AIza", "ya29.", "sk-ant-"):
        assert secret_shape not in text


def test_every_recorded_request_produces_the_recorded_upstream_call(offline):
    """Today's translators send exactly what was recorded; the answers come back translated again."""
    for path in sorted(DEMO.glob("*.json")):
        fixture = json.loads(path.read_text())
        answer = post(offline, fixture)
        assert answer.status_code == 200, (path.name, answer.text)
        for words in ANSWERS[path.stem]:
            assert words in answer_text(answer), (path.name, answer.text)
    log = offline.log_path.read_text()
    drifted = [line for line in log.splitlines() if NEAREST in line]
    assert not drifted, "the bridge no longer sends what the corpus recorded:\n" + "\n".join(drifted)


@pytest.mark.parametrize(
    ("path", "body", "word"),
    [
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Poem?"}]}, "Teal"),
        (
            "/v1/messages",
            {"model": "gemini-2.5-flash", "max_tokens": 50, "messages": [{"role": "user", "content": "A poem?"}]},
            "Indigo",
        ),
        (  # non-stream, so answered from the non-stream recording of the anthropic provider
            "/v1beta/models/claude-haiku-4-5:generateContent",
            {"contents": [{"role": "user", "parts": [{"text": "A poem?"}]}]},
            "Amber",
        ),
        (  # a stream: from the stream recording of the same provider
            "/v1/messages",
            {
                "model": "claude-haiku-4-5",
                "max_tokens": 50,
                "stream": True,
                "messages": [{"role": "user", "content": "A poem?"}],
            },
            "Crimson",
        ),
        (
            "/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": "A poem?"}]}]},
            "Sepia",
        ),
        ("/v1/responses", {"model": "claude-sonnet-4-5", "input": "A poem?"}, "Viridian"),
    ],
)
def test_any_prompt_through_any_door_gets_the_nearest_recording(offline, path, body, word):
    answer = httpx.post(offline.base_url + path, json=body, headers=HEADERS, timeout=30)
    assert answer.status_code == 200, answer.text
    assert word in answer_text(answer)
    assert NEAREST in offline.log_path.read_text()


def test_models_are_the_recorded_ones(offline):
    bearer = {"authorization": f"Bearer {CLIENT_KEY}"}
    listed = httpx.get(offline.base_url + "/v1/models", headers=bearer, timeout=10).json()
    ids = {m["id"] for m in listed["data"] if "/" not in m["id"]}
    recorded = {"gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash-lite", "gemini-2.5-flash", "claude-sonnet-4-5"}
    recorded.add("coder-model")
    assert recorded <= ids and all(i.startswith(tuple(recorded)) for i in ids), ids  # (and dated aliases)


def test_a_model_the_corpus_lacks_is_refused_in_the_doors_dialect(offline):
    answer = httpx.post(
        offline.base_url + "/v1/messages",
        json={"model": "claude-opus-4-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers=HEADERS,
        timeout=10,
    )
    assert answer.status_code in (400, 404) and answer.json()["type"] == "error"


def test_serve_replay_passes_the_folder_to_the_bridge(monkeypatch, tmp_path):
    seen: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: seen.append(argv))
    result = CliRunner().invoke(main, ["serve", "--replay", str(DEMO), "--set", "listen_port=1"])
    assert result.exit_code == 0, result.output
    assert f"bridge_replay={DEMO.resolve()}" in seen[0] and "listen_port=1" in seen[0]
    missing = CliRunner().invoke(main, ["serve", "--replay", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "no such folder" in missing.output


def test_a_folder_without_fixtures_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no fixtures"):
        corpus_fixtures(tmp_path)
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="is not a replay fixture"):
        corpus_fixtures(tmp_path)


def test_stand_in_accounts_carry_the_recorded_settings():
    corpus = OfflineCorpus(DEMO)
    try:
        accounts = {a.provider: a for a in corpus.accounts()}
        cli, kiro = accounts["gemini-cli"], accounts["kiro"]
        assert cli.project and cli.credentials and Path(cli.credentials).stat().st_mode & 0o077 == 0
        assert json.loads(Path(kiro.credentials or "").read_text())["profileArn"].startswith("arn:aws:")
        assert accounts["openai"].base_url == corpus.server.base_url + "/v1"
        assert accounts["openai"].models == ["gpt-4o-mini"]
    finally:
        corpus.socket.close()
        import shutil

        shutil.rmtree(corpus.workdir)


def test_recorded_models_reads_the_client_request_and_the_gemini_path():
    fixtures = [
        {"client": {"endpoint": "POST /v1/chat/completions", "request": {"model": "m1"}}},
        {"client": {"endpoint": "POST /v1beta/models/m2:streamGenerateContent", "request": {"contents": []}}},
    ]
    assert recorded_models(fixtures) == ["m1", "m2"]
    assert recorded_models([{}]) is None


def test_nearest_mode_prefers_an_exact_recording_then_the_same_stream_mode():
    fixtures = load_fixtures([DEMO])
    server = ReplayServer(fixtures, nearest=True)
    kiro = [f for f in fixtures if f.data["provider"] == "kiro"]
    body = dict(kiro[1].data["request"]["body"])
    found, _ = server.match("POST", kiro[1].target, body)
    assert found is kiro[1] and not server.approximated
    found.used = True
    again, _ = server.match("POST", kiro[1].target, body)  # replayed before: the same recording again
    assert again is kiro[1] and server.approximated
    strict = ReplayServer(load_fixtures([DEMO]))
    assert strict.match("POST", "/nowhere", {})[0] is None


# A corpus of one kind only, for the API-key providers: a stream corpus (as recorded before non-stream
# requests went upstream non-stream) and a non-stream one; each answers the other kind of request.
STREAM_ONLY = ["09-openai-chat-stream", "02-anthropic-messages-stream", "11-gemini-generate-stream"]
WHOLE_ONLY = ["01-openai-chat", "10-anthropic-messages", "03-gemini-generate"]
PROMPT = "Name a fruit, in one word."  # not the recorded prompt: the nearest recording answers


def one_kind_bridge(tmp_path: Path, names: list[str]) -> BridgeProcess:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in names:
        shutil.copy(DEMO / f"{name}.json", corpus)
    workdir = tmp_path / "bridge"
    workdir.mkdir()
    config = write_config(workdir / "bridge.toml", [])
    return BridgeProcess(workdir, config, extra_args=["--set", f"bridge_replay={corpus}"])


def genai_client(bridge: BridgeProcess) -> genai.Client:
    options = types.HttpOptions(
        base_url=bridge.base_url, timeout=20_000, retry_options=types.HttpRetryOptions(attempts=1)
    )
    return genai.Client(api_key=CLIENT_KEY, http_options=options)


def test_a_stream_only_corpus_answers_non_stream_requests(tmp_path):
    with one_kind_bridge(tmp_path, STREAM_ONLY) as bridge:
        chat = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        reply = chat.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
        assert reply.choices[0].message.content == "Mauve." and reply.usage and reply.usage.total_tokens == 18
        messages = anthropic.Anthropic(base_url=bridge.base_url, api_key=CLIENT_KEY, max_retries=0)
        message = messages.messages.create(
            model="claude-haiku-4-5", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
        )
        assert message.content[0].type == "text" and message.content[0].text == "Crimson."
        assert message.usage.cache_read_input_tokens == 5
        gemini = genai_client(bridge)
        answer = gemini.models.generate_content(model="gemini-2.5-flash-lite", contents=PROMPT)
        assert answer.text == "Sepia."
        log = bridge.log_path.read_text()
    assert log.count("converted from a stream recording") == 3, log
    assert "malformed" not in log


def test_a_non_stream_only_corpus_answers_stream_requests(tmp_path):
    with one_kind_bridge(tmp_path, WHOLE_ONLY) as bridge:
        chat = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        pieces = chat.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == "Teal."
        messages = anthropic.Anthropic(base_url=bridge.base_url, api_key=CLIENT_KEY, max_retries=0)
        with messages.messages.stream(
            model="claude-haiku-4-5", max_tokens=256, messages=[{"role": "user", "content": PROMPT}]
        ) as stream:
            assert "".join(stream.text_stream) == "Amber."
            assert stream.get_final_message().stop_reason == "end_turn"
        gemini = genai_client(bridge)
        chunks = gemini.models.generate_content_stream(model="gemini-2.5-flash-lite", contents=PROMPT)
        assert "".join(c.text or "" for c in chunks) == "Ochre."
        log = bridge.log_path.read_text()
    assert log.count("converted from a non-stream recording") == 3, log


def test_a_recording_that_cannot_be_converted_tells_the_client_what_to_do(tmp_path):
    """A stream recording that ends in an error cannot answer a non-stream request: the client gets a
    502 in its dialect naming the recording and how to get one that can."""
    fixture = json.loads((DEMO / "09-openai-chat-stream.json").read_text())
    error = b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n'
    fixture["response"]["body_base64"] = base64.b64encode(error).decode()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "09-openai-chat-stream.json").write_text(json.dumps(fixture))
    workdir = tmp_path / "bridge"
    workdir.mkdir()
    config = write_config(workdir / "bridge.toml", [])
    with BridgeProcess(workdir, config, extra_args=["--set", f"bridge_replay={corpus}"]) as bridge:
        chat = openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            chat.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}])
    assert info.value.status_code == 502
    message = str(info.value)
    assert "09-openai-chat-stream.json cannot be converted" in message and "record_demo_corpus.py" in message
