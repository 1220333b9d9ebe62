"""`[fallbacks]` through the real bridge: used only when no account of the model can answer, the
answer names the model that served it, and a request refused as invalid never falls back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.bridge_process import CLIENT_KEY, BridgeProcess, write_config
from tests.fakes.openai_upstream import FakeOpenAI, Reply, text_reply


def account(name: str, fake: FakeOpenAI, models: list[str]) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "api_key": fake.api_key, "base_url": fake.base_url, "models": models}


def down(body: dict[str, Any]) -> Reply:
    return Reply(status=503, error_body={"error": {"message": "fake: overloaded"}})


def invalid(body: dict[str, Any]) -> Reply:
    return Reply(status=400, error_body={"error": {"message": "fake: bad request", "type": "invalid"}})


@pytest.fixture
def fakes():
    with FakeOpenAI() as big, FakeOpenAI() as small:
        small.default = text_reply("from the small model")
        yield big, small


def bridge_for(tmp_path: Path, big: FakeOpenAI, small: FakeOpenAI) -> BridgeProcess:
    config = write_config(
        tmp_path / "bridge.toml",
        [account("big", big, ["big-model"]), account("small", small, ["small-model"])],
        record=False,
        extra_toml='[fallbacks]\n"big-model" = ["missing-model", "small-model"]\n',
    )
    return BridgeProcess(tmp_path, config)


def client(bridge: BridgeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.base_url + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=20)


@pytest.mark.parametrize("stream", [False, True])
def test_the_fallback_answers_when_the_model_cannot(tmp_path: Path, fakes, stream: bool) -> None:
    big, small = fakes
    big.responder = down
    with bridge_for(tmp_path, big, small) as bridge:
        raw = client(bridge).chat.completions.with_raw_response.create(
            model="big-model", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        assert raw.headers["x-llmbridge-fallback"] == "big-model -> small-model"
        assert raw.headers["x-llmbridge-account"] == "small"
        if stream:
            chunks = list(raw.parse())
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert {c.model for c in chunks} == {"small-model"}
        else:
            completion = raw.parse()
            text = completion.choices[0].message.content or ""
            assert completion.model == "small-model"
    assert text == "from the small model"
    assert small.requests[-1]["model"] == "small-model"
    assert "fallback small-model answers" in bridge.output()


def test_no_fallback_while_the_model_answers_or_for_an_invalid_request(tmp_path: Path, fakes) -> None:
    big, small = fakes
    big.default = text_reply("from the big model")
    with bridge_for(tmp_path, big, small) as bridge:
        raw = client(bridge).chat.completions.with_raw_response.create(
            model="big-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.parse().choices[0].message.content == "from the big model"
        assert "x-llmbridge-fallback" not in raw.headers
        big.responder = invalid
        with pytest.raises(openai.BadRequestError):
            client(bridge).chat.completions.create(model="big-model", messages=[{"role": "user", "content": "x"}])
    assert small.requests == []


def test_a_chain_that_cannot_answer_says_what_it_tried(tmp_path: Path, fakes) -> None:
    big, small = fakes
    big.responder = down
    small.responder = down
    with bridge_for(tmp_path, big, small) as bridge:
        with pytest.raises(openai.APIStatusError) as caught:
            client(bridge).chat.completions.create(model="big-model", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code in (502, 503)
    assert "fallbacks tried: missing-model, small-model" in str(caught.value)
