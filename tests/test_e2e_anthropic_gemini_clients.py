"""End to end: the official anthropic SDK (and raw HTTP) -> real mitmdump bridge -> the strict fake of
every provider (gemini-cli, kiro, openai, anthropic, gemini, qwen). The google-genai half is in
test_e2e_anthropic_gemini_clients_genai.py.

One bridge per backend (module scope); the rate-limit test runs last in each backend's group because it
makes the single account cool down.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.bridge_process import CLIENT_KEY
from tests.e2e_backends import BACKENDS, Backend, start_backend

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
]

CLAUDE_CODE = json.loads((Path(__file__).parent / "data" / "claude_code_request.json").read_text())
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tmp_path_factory):
    with start_backend(request.param, tmp_path_factory.mktemp(request.param)) as started:
        yield started


def client(backend: Backend, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=backend.bridge.base_url, api_key=key, max_retries=0, timeout=20)


def sse_events(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name = data = None
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
        if name:
            events.append((name, data))
    return events


def check_sequence(kinds: list[str]) -> None:
    """message_start, (block start, deltas, block stop)*, message_delta, message_stop — pings anywhere."""
    kinds = [k for k in kinds if k != "ping"]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"], kinds
    open_block = False
    for kind in kinds[1:-2]:
        if kind == "content_block_start":
            assert not open_block, kinds
            open_block = True
        elif kind in ("content_block_delta", "content_block_stop"):
            assert open_block, kinds
            open_block = kind == "content_block_delta"
        else:
            raise AssertionError(f"unexpected {kind} in {kinds}")
    assert not open_block, kinds


def test_text_non_stream(backend):
    backend.text("Hello ", "world")
    message = client(backend).messages.create(
        model=backend.model, max_tokens=256, system="Answer tersely.", messages=[{"role": "user", "content": "hi"}]
    )
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "Hello world"
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    backend.assert_accepted()
    sent = json.dumps(backend.last())
    assert "Answer tersely." in sent and "hi" in sent


def test_stream_event_sequence_and_final_message(backend):
    backend.text("one ", "two ", "three")
    kinds, text = [], ""
    for event in client(backend).messages.create(
        model=backend.model, max_tokens=256, stream=True, messages=[{"role": "user", "content": "count"}]
    ):
        kinds.append(event.type)
        if event.type == "content_block_delta":
            assert event.delta.type == "text_delta"
            text += event.delta.text
        if event.type == "message_delta":
            assert event.delta.stop_reason == "end_turn"
    check_sequence(kinds)
    assert text == "one two three"
    backend.assert_accepted()

    backend.text("final ", "answer")
    with client(backend).messages.stream(
        model=backend.model, max_tokens=256, messages=[{"role": "user", "content": "again"}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == "final answer" and final.content[0].text == "final answer"
    assert final.stop_reason == "end_turn"


def test_tool_use_round_trip_over_two_turns(backend):
    backend.tool_call("get_weather", "call_w1", {"city": "Paris"}, text="Checking.")
    c = client(backend)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    with c.messages.stream(model=backend.model, max_tokens=512, tools=[WEATHER], messages=messages) as stream:
        json_deltas = [e for e in stream if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
        first = stream.get_final_message()
    assert json_deltas, "tool input must stream as input_json_delta"
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].input == {"city": "Paris"}
    assert [b.text for b in first.content if b.type == "text"] == ["Checking."]
    assert "get_weather" in backend.tool_names_sent()
    backend.assert_accepted()

    backend.text("Sunny in Paris.")
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny, 24C"}]},
    ]
    reply = c.messages.create(model=backend.model, max_tokens=512, tools=[WEATHER], messages=messages)
    assert reply.content[0].text == "Sunny in Paris."
    backend.assert_accepted()  # the strict fake took the tool_use / tool_result history
    key, result = backend.last_tool_result()
    assert key in ("call_w1", "get_weather") and "sunny, 24C" in result


def test_thinking_is_requested_and_returned(backend):
    backend.text("The answer.", thinking="Considering it.")
    message = client(backend).messages.create(
        model=backend.model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think first"}],
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Considering it." and message.content[1].text == "The answer."
    assert backend.thinking_sent(2048)
    backend.assert_accepted()

    backend.text("Streamed answer.", thinking="Streamed thought.")
    with client(backend).messages.stream(
        model=backend.model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think again"}],
    ) as stream:
        delta_kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "thinking_delta" in delta_kinds and "text_delta" in delta_kinds
    assert delta_kinds.index("thinking_delta") < delta_kinds.index("text_delta")
    assert final.content[0].type == "thinking" and final.content[0].thinking == "Streamed thought."


def test_thinking_off_asks_for_none(backend):
    backend.text("plain")
    message = client(backend).messages.create(
        model=backend.model, max_tokens=256, messages=[{"role": "user", "content": "no thinking"}]
    )
    assert backend.thinking_sent(None)
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == "plain"


def test_count_tokens_method_header(backend):
    before = backend.upstream_counts()
    params = {
        "model": backend.model,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "How many tokens is this sentence? " * 20}],
    }
    counted = client(backend).messages.count_tokens(**params)
    assert counted.input_tokens > 20
    raw = httpx.post(
        backend.bridge.base_url + "/v1/messages/count_tokens",
        json=params,
        timeout=20,
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
    )
    assert raw.status_code == 200 and raw.json() == {"input_tokens": counted.input_tokens}
    assert raw.headers["x-llmbridge-token-count-method"] == backend.count_method
    assert backend.upstream_counts() - before == (2 if backend.count_method.startswith("upstream") else 0)


def test_unknown_model_is_404_not_found_error(backend):
    calls = backend.calls()
    with pytest.raises(anthropic.NotFoundError) as info:
        client(backend).messages.create(
            model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["error"]["type"] == "not_found_error"
    assert backend.calls() == calls


def test_bad_key_is_401_authentication_error(backend):
    with pytest.raises(anthropic.AuthenticationError) as info:
        client(backend, "sk-wrong-key").messages.create(
            model=backend.model, max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["error"]["type"] == "authentication_error"


# --- the recorded Claude Code request, replayed as it was sent --------------------------------------


def claude_code_body(backend: Backend, stream: bool) -> dict:
    body = copy.deepcopy(CLAUDE_CODE)
    body["stream"] = stream
    # With thinking on, Anthropic wants the last tool-calling turn to start with its signed thinking
    # (without it, the anthropic provider leaves thinking out); the recording's last turn has none.
    body["messages"][-2]["content"].insert(
        0,
        {
            "type": "thinking",
            "thinking": "Run the tests again.",
            "signature": "EqQBCkYIBxgCKkCFakeSignatureForTestingOnly0004==",
        },
    )
    if backend.name != "kiro":  # Kiro serves the recorded Claude model itself
        body["model"] = backend.model
    return body


def post_messages(backend: Backend, body: dict) -> httpx.Response:
    return httpx.post(
        backend.bridge.base_url + "/v1/messages",
        json=body,
        timeout=30,
        headers={
            "x-api-key": CLIENT_KEY,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "interleaved-thinking-2025-05-14",
        },
    )


def tool_uses_of(response: httpx.Response, stream: bool) -> list[dict]:
    if not stream:
        body = response.json()
        assert body["stop_reason"] == "tool_use", body
        return [b for b in body["content"] if b["type"] == "tool_use"]
    events = sse_events(response.text)
    check_sequence([name for name, _ in events])
    assert [d["delta"]["stop_reason"] for n, d in events if n == "message_delta"] == ["tool_use"]
    uses: dict[int, dict] = {}
    for name, data in events:
        if name == "content_block_start" and data["content_block"]["type"] == "tool_use":
            uses[data["index"]] = {**data["content_block"], "json": ""}
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            uses[data["index"]]["json"] += data["delta"]["partial_json"]
    return [{**u, "input": json.loads(u.pop("json") or "{}")} for u in uses.values()]


@pytest.mark.parametrize(
    ("stream", "tool"),
    [(False, "Glob"), (True, "Bash"), (True, "mcp__github__create_issue"), (False, "mcp__context7__get-library-docs")],
)
def test_claude_code_request_is_accepted_and_tool_names_come_back(backend, stream, tool):
    backend.tool_call(tool, f"call_{tool[:8]}", {"pattern": "**/*.py"})
    response = post_messages(backend, claude_code_body(backend, stream))
    assert response.status_code == 200, response.text
    backend.assert_accepted()
    uses = tool_uses_of(response, stream)
    assert [(u["name"], u["input"]) for u in uses] == [(tool, {"pattern": "**/*.py"})]
    assert set(backend.tool_names_sent()) == {t["name"] for t in CLAUDE_CODE["tools"]}
    assert backend.thinking_sent(CLAUDE_CODE["thinking"]["budget_tokens"])


def test_kiro_long_tool_names_and_descriptions(backend):
    if backend.name != "kiro":
        pytest.skip("the 64-character name and 10,000-character description limits are Kiro's")
    long_name = "mcp__a_very_long_server_name_for_testing__" + "and_a_very_long_tool_name_" * 2
    marker = "UNIQUE-DESCRIPTION-MARKER"
    body = claude_code_body(backend, stream=False)
    body["tools"].append(
        {
            "name": long_name,
            "description": "lorem ipsum " * 1200 + marker,
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    )
    backend.text("no tool this time")
    first = post_messages(backend, body)
    assert first.status_code == 200, first.text
    backend.assert_accepted()
    sent_names = backend.tool_names_sent()
    assert len(long_name) > 64 and long_name not in sent_names and all(len(n) <= 64 for n in sent_names)
    (short,) = set(sent_names) - {t["name"] for t in CLAUDE_CODE["tools"]}
    current = backend.last()["conversationState"]["currentMessage"]["userInputMessage"]
    specs = [t["toolSpecification"] for t in current["userInputMessageContext"]["tools"]]
    assert all(len(s["description"]) <= 10_000 for s in specs)
    assert marker not in json.dumps(specs) and marker in json.dumps(backend.last())  # moved to the system text

    backend.tool_call(short, "call_long", {"q": "x"})
    for stream in (False, True):
        if stream:
            backend.tool_call(short, "call_long2", {"q": "x"})
        answer = post_messages(backend, {**body, "stream": stream})
        assert answer.status_code == 200, answer.text
        assert [(u["name"], u["input"]) for u in tool_uses_of(answer, stream)] == [(long_name, {"q": "x"})]

    # the long name in the history is shortened the same way, so the fake pairs use and result
    backend.text("done")
    followup = {
        **body,
        "messages": body["messages"]
        + [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "call_long", "name": long_name, "input": {"q": "x"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_long", "content": "ok"}]},
        ],
    }
    assert post_messages(backend, followup).status_code == 200
    backend.assert_accepted()
    history = backend.last()["conversationState"]["history"]
    assert history[-1]["assistantResponseMessage"]["toolUses"][0]["name"] == short


# --- last: makes the account cool down --------------------------------------------------------------


def test_zz_upstream_rate_limit_is_rate_limit_error_with_retry_after(backend):
    calls = backend.calls()
    backend.rate_limit(1)
    with pytest.raises(anthropic.RateLimitError) as info:
        client(backend).messages.create(model=backend.model, max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert backend.calls() == calls + 1  # the upstream said it, not the bridge's own pacing
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "rate_limit_error"
    time.sleep(1.2)  # let the account's cool-down pass


def test_claude_code_request_on_gemini_3_passes_the_signature_check(backend):
    if backend.name != "gemini-cli":
        pytest.skip("thought signatures are Gemini 3's")
    backend.tool_call("Bash", "call_g3", {"command": "ls"})
    body = {**claude_code_body(backend, stream=False), "model": "gemini-3-pro-preview"}
    response = post_messages(backend, body)
    assert response.status_code == 200, response.text
    backend.assert_accepted()  # every model turn's first functionCall carries a thoughtSignature
    assert [u["name"] for u in tool_uses_of(response, False)] == ["Bash"]
    assert backend.last()["request"]["generationConfig"]["thinkingConfig"]["thinkingLevel"] == "HIGH"


# --- what Claude Code sends for model names it does not know, and its session-title request ----------


def test_claude_code_system_messages_inside_messages_reach_the_upstream(backend):
    backend.text("Hi there.")
    body = {
        "model": backend.model,
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Say hi"}]},
            {"role": "system", "content": "REMINDER: keep answers short."},
        ],
        "thinking": {"type": "adaptive", "display": "omitted"},
        "tools": [],
        "stream": True,
    }
    response = post_messages(backend, body)
    assert response.status_code == 200, response.text
    backend.assert_accepted()
    text = "".join(d["delta"].get("text", "") for n, d in sse_events(response.text) if n == "content_block_delta")
    assert text == "Hi there."
    assert "REMINDER: keep answers short." in json.dumps(backend.last())


def test_claude_code_session_title_request_is_answered(backend):
    """`output_config.format` with a JSON schema, no tools, thinking off: every backend answers it
    (Kiro, which has no JSON mode, by an instruction in the system text)."""
    backend.text('{"title": "Fix failing tests"}')
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
        "additionalProperties": False,
    }
    body = {
        "model": backend.model,
        "max_tokens": 512,
        "system": [{"type": "text", "text": "Summarize this coding conversation in under 50 characters."}],
        "messages": [{"role": "user", "content": "Please fix the failing tests"}],
        "tools": [],
        "thinking": {"type": "disabled"},
        "temperature": 1,
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    response = post_messages(backend, body)
    assert response.status_code == 200, response.text
    backend.assert_accepted()
    (block,) = response.json()["content"]
    assert json.loads(block["text"]) == {"title": "Fix failing tests"}
    if backend.name == "kiro":
        content = backend.last()["conversationState"]["currentMessage"]["userInputMessage"]["content"]
        assert "# Response format" in content and '"required": ["title"]' in content
