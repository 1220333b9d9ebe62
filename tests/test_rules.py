"""Prompt and parameter rules (`llmbridge.rules`): what each rule does to the canonical request."""

from __future__ import annotations

import os
import tomllib

import pytest
from pydantic import ValidationError

from llmbridge.canonical import ChatRequest, Message, Reasoning, ReasoningPart, TextPart, ToolResultPart
from llmbridge.config import BridgeConfig, ConfigError, describe_validation_error, load_config
from llmbridge.rules import PromptFileError, Rules, Target


def request(system: list[str] | None = None, user: str = "hello SECRET", **params) -> ChatRequest:
    return ChatRequest(
        model="m",
        system=[TextPart(text=s) for s in (system or [])],
        messages=[Message(role="user", parts=[TextPart(text=user)])],
        **params,
    )


def rules(toml: str) -> Rules:
    return Rules.from_config(BridgeConfig.model_validate(tomllib.loads(toml)))


ANY = Target(key_label="laptop", models=["m"], account="work", provider="kiro")


@pytest.mark.parametrize(
    ("mode", "client", "expected"),
    [
        ("overwrite", ["client A", "client B"], ["RULE"]),
        ("overwrite", [], ["RULE"]),
        ("append", ["client"], ["client", "RULE"]),
        ("append", [], ["RULE"]),
        ("prepend", ["client"], ["RULE", "client"]),
        ("prepend", [], ["RULE"]),
    ],
)
def test_each_mode_on_a_system_prompt_given_as_blocks_or_none(mode, client, expected):
    applied = rules(f'[[system_prompt]]\nmode = "{mode}"\ntext = "RULE"').apply(request(client), ANY)
    assert [p.text for p in applied.request.system] == expected
    assert applied.notes == [f"system_prompt[0]: {mode}"]


def test_rules_apply_in_order_and_never_change_the_clients_request():
    r = rules(
        '[[system_prompt]]\nmode = "overwrite"\ntext = "base"\n'
        '[[system_prompt]]\nmode = "append"\ntext = "tail"\n'
        '[[system_prompt]]\nmode = "prepend"\ntext = "head"\n'
    )
    original = request(["client"])
    applied = r.apply(original, ANY)
    assert [p.text for p in applied.request.system] == ["head", "base", "tail"]
    assert [p.text for p in original.system] == ["client"]


def test_no_rules_no_copy_and_nothing_injected():
    original = request(["client"])
    applied = Rules().apply(original, ANY)
    assert applied.request is original and applied.notes == []
    assert not Rules.from_config(BridgeConfig())


@pytest.mark.parametrize(
    ("filters", "target", "applies"),
    [
        ('providers = ["kiro"]', Target("laptop", ["m"], "work", "kiro"), True),
        ('providers = ["work"]', Target("laptop", ["m"], "work", "kiro"), True),  # the account name
        ('providers = ["openai"]', Target("laptop", ["m"], "work", "kiro"), False),
        ('models = ["claude-*"]', Target(None, ["claude-sonnet-4-5"], "a", "kiro"), True),
        ('models = ["claude-*"]', Target(None, ["gpt-4o"], "a", "openai"), False),
        ('models = ["fast"]', Target(None, ["fast", "claude-sonnet-4-5"], "a", "kiro"), True),  # the alias
        ('keys = ["laptop"]', Target("laptop", ["m"], "a", "kiro"), True),
        ('keys = ["laptop"]', Target("ci", ["m"], "a", "kiro"), False),
        ('keys = ["laptop"]\nproviders = ["kiro"]', Target("laptop", ["m"], "a", "openai"), False),
    ],
)
def test_filters(filters, target, applies):
    toml = 'api_keys = [{ key = "k1", label = "laptop" }, { key = "k2", label = "ci" }]\n'
    toml += '[[accounts]]\nname = "work"\nprovider = "kiro"\n[[accounts]]\nname = "a"\nprovider = "openai"\n'
    toml += f'[[system_prompt]]\nmode = "overwrite"\ntext = "RULE"\n{filters}\n'
    applied = rules(toml).apply(request(["client"]), target)
    assert (applied.request.system[0].text == "RULE") is applies


def test_replace_plain_and_regex_by_scope():
    conversation = ChatRequest(
        model="m",
        system=[TextPart(text="system SECRET")],
        messages=[
            Message(role="user", parts=[TextPart(text="user SECRET")]),
            Message(
                role="assistant",
                parts=[ReasoningPart(text="thought SECRET", signature="sig"), TextPart(text="assistant SECRET")],
            ),
            Message(
                role="user",
                parts=[ToolResultPart(tool_call_id="c", content=[TextPart(text="tool SECRET")])],
            ),
        ],
    )

    def texts(r: ChatRequest) -> list[str]:
        out = [p.text for p in r.system]
        for m in r.messages:
            for p in m.parts:
                out += [c.text for c in p.content] if isinstance(p, ToolResultPart) else [p.text]  # type: ignore[union-attr]
        return out

    system = rules('[[replace]]\nfind = "SECRET"\nreplace = "x"\nscope = "system"').apply(conversation, ANY)
    assert texts(system.request) == [
        "system x",
        "user SECRET",
        "thought SECRET",
        "assistant SECRET",
        "tool SECRET",
    ]
    user = rules('[[replace]]\nfind = "SECRET"\nreplace = "x"\nscope = "user"').apply(conversation, ANY)
    assert texts(user.request) == ["system SECRET", "user x", "thought SECRET", "assistant SECRET", "tool x"]
    everything = rules('[[replace]]\nfind = "S(EC)RET"\nreplace = "<\\\\1>"\nregex = true').apply(conversation, ANY)
    # thinking is signed: never rewritten
    assert texts(everything.request) == ["system <EC>", "user <EC>", "thought SECRET", "assistant <EC>", "tool <EC>"]
    assert everything.notes == ["replace[0]: 4 replaced"]


def test_regex_special_characters_are_plain_without_regex():
    applied = rules('[[replace]]\nfind = "a.b"\nreplace = "X"').apply(request(user="a.b axb"), ANY)
    assert applied.request.messages[0].text() == "X axb"


def test_replace_after_system_prompt_rules_sees_the_new_prompt():
    r = rules(
        '[[system_prompt]]\nmode = "append"\ntext = "call me TOKEN"\n[[replace]]\nfind = "TOKEN"\nreplace = "Bob"'
    )
    assert r.apply(request(["hi"]), ANY).request.system_text() == "hi\n\ncall me Bob"


# --- parameters ------------------------------------------------------------------------------------


def test_param_defaults_force_clamp_drop():
    r = rules(
        "[[params]]\n"
        "defaults = { max_tokens = 1000, top_p = 0.9 }\n"
        "force = { seed = 7 }\n"
        "clamp = { temperature = [0.0, 1.0] }\n"
        'drop = ["top_k"]\n'
    )
    applied = r.apply(request(temperature=1.7, top_p=0.5, top_k=40), ANY)
    out = applied.request
    assert (out.max_tokens, out.top_p, out.seed, out.temperature, out.top_k) == (1000, 0.5, 7, 1.0, None)
    assert applied.notes == [
        "params[0]: max_tokens = 1000 (default)",
        "params[0]: seed None -> 7 (forced)",
        "params[0]: temperature 1.7 -> 1.0 (clamped)",
        "params[0]: top_k 40 (dropped)",
    ]


@pytest.mark.parametrize(
    ("reasoning", "dropped"),
    [
        (None, False),
        (Reasoning(effort="none"), False),
        (Reasoning(budget_tokens=0), False),
        (Reasoning(effort="high"), True),
        (Reasoning(budget_tokens=2048), True),
    ],
)
def test_drop_when_thinking(reasoning, dropped):
    r = rules('[[params]]\nproviders = ["anthropic"]\ndrop_when_thinking = ["temperature", "top_k"]')
    target = Target(None, ["m"], "a", "anthropic")
    out = r.apply(request(temperature=0.3, top_k=5, reasoning=reasoning), target).request
    assert (out.temperature is None, out.top_k is None) == (dropped, dropped)


def test_reasoning_parameters():
    r = rules('[[params]]\ndefaults = { reasoning_effort = "low" }\nclamp = { thinking_budget = [1024, 4096] }')
    assert r.apply(request(), ANY).request.reasoning == Reasoning(effort="low")
    out = r.apply(request(reasoning=Reasoning(budget_tokens=100000)), ANY).request
    assert out.reasoning == Reasoning(effort="low", budget_tokens=4096)
    dropped = rules('[[params]]\ndrop = ["reasoning_effort"]').apply(request(reasoning=Reasoning(effort="high")), ANY)
    assert dropped.request.reasoning is None


# --- files -----------------------------------------------------------------------------------------


def test_a_prompt_file_is_reread_when_it_changes(tmp_path):
    prompt = tmp_path / "prompt.md"
    prompt.write_text("first")
    config_file = tmp_path / "bridge.toml"
    config_file.write_text('[[system_prompt]]\nmode = "overwrite"\nfile = "prompt.md"\n')
    r = Rules.from_config(load_config(config_file))  # relative to the config file
    assert r.apply(request(), ANY).request.system_text() == "first"
    assert r.apply(request(), ANY).request.system_text() == "first"
    prompt.write_text("second, longer")
    assert r.apply(request(), ANY).request.system_text() == "second, longer"
    prompt.write_text("third, longer!")  # same size: the mtime tells
    stat = prompt.stat()
    os.utime(prompt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert r.apply(request(), ANY).request.system_text() == "third, longer!"
    prompt.unlink()
    with pytest.raises(PromptFileError, match="cannot be read"):
        r.apply(request(), ANY)


# --- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[system_prompt]]\nmode = "append"', "exactly one of 'text' or 'file'"),
        ('[[system_prompt]]\nmode = "append"\ntext = "a"\nfile = "b"', "exactly one of 'text' or 'file'"),
        ('[[system_prompt]]\nmode = "replace"\ntext = "a"', "system_prompt.0.mode"),
        ('[[system_prompt]]\nmode = "append"\ntext = "a"\nprovider = ["kiro"]', "did you mean 'providers'?"),
        ('[[system_prompt]]\nmode = "append"\ntext = "a"\nproviders = ["kiroo"]', "did you mean 'kiro'?"),
        ('[[replace]]\nfind = "("\nregex = true', "not a valid regular expression"),
        ('[[replace]]\nfind = "a"\nscope = "assistant"', "replace.0.scope"),
        ("[[params]]\nclamp = { temperature = [1.0, 0.0] }", "is above"),
        ("[[params]]\nclamp = { reasoning_effort = [1, 2] }", "cannot be clamped"),
        ('[[params]]\ndrop = ["temprature"]', "params.0.drop.0"),
        ("[[params]]\ndefaults = { temprature = 1 }", "did you mean 'temperature'?"),
        ('api_keys = [{ key = "k", label = "a" }]\n[[replace]]\nfind = "x"\nkeys = ["b"]', "no client key label"),
    ],
)
def test_config_mistakes_are_refused_with_one_line(toml, message):
    with pytest.raises(ValidationError) as caught:
        BridgeConfig.model_validate(tomllib.loads(toml))
    assert message in describe_validation_error(caught.value)


def test_load_config_reports_a_rule_mistake(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('[[system_prompt]]\nmode = "append"\n')
    with pytest.raises(ConfigError, match="exactly one of 'text' or 'file'"):
        load_config(path)
