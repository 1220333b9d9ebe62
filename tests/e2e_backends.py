"""One real mitmdump bridge per provider, each in front of that provider's strict fake upstream.

Used by the Anthropic / Gemini client end-to-end tests: the same test body runs against every
backend, and this module hides how each fake is scripted and how its recorded requests look.

    with start_backend("kiro", workdir) as backend:
        backend.text("Hello ", "there")          # the next upstream answer
        ... call backend.bridge.base_url with an SDK ...
        backend.assert_accepted()                 # the strict fake took the last request as it was
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.bridge_process import BridgeProcess, write_config
from tests.fakes import anthropic_api as fa
from tests.fakes import code_assist as ca
from tests.fakes import gemini_api as fg
from tests.fakes import kiro as kf
from tests.fakes import openai_upstream as oa
from tests.fakes import qwen as qf

DEFAULT_THINKING_BUDGET = 8192  # what the Gemini CLI asks of Gemini 2.5 when the user set nothing
FLASH_MAX_THINKING_BUDGET = 24_576  # Gemini 2.5 Flash's documented thinkingBudget range is 0..24576

BACKENDS = ["gemini-cli", "kiro", "openai", "anthropic", "gemini", "qwen"]
PACING = {"requests_per_minute": 10_000, "max_concurrent": 50}


class Backend:
    """What the tests need from one provider's fake, in one vocabulary."""

    name: str
    model: str
    count_method: str  # the expected x-llmbridge-token-count-method
    bridge: BridgeProcess
    fake: Any

    def text(self, *deltas: str, thinking: str | None = None) -> None:
        self.fake.enqueue(self.text_reply(*deltas, thinking=thinking))

    def tool_call(self, name: str, call_id: str, args: dict[str, Any], text: str | None = None) -> None:
        self.fake.enqueue(self.tool_reply(name, call_id, args, text=text))

    def text_reply(self, *deltas: str, thinking: str | None = None) -> Any:
        """The fake's reply object for `text` (for a responder; `text` queues it)."""
        raise NotImplementedError

    def tool_reply(self, name: str, call_id: str, args: dict[str, Any], text: str | None = None) -> Any:
        raise NotImplementedError

    def respond(self, responder: Any) -> None:
        """Choose each generate reply from the upstream request body (`responder(body) -> reply or None`;
        None: the queue)."""
        self.fake.responder = responder

    def rate_limit(self, seconds: int) -> None:
        raise NotImplementedError

    def calls(self) -> int:
        """How many generate requests the fake has received."""
        raise NotImplementedError

    def last(self) -> Any:
        """The body of the last generate request."""
        raise NotImplementedError

    def rejection(self) -> str | None:
        """Why the strict fake rejected (or would reject) the last generate request, else None."""
        raise NotImplementedError

    def assert_accepted(self) -> None:
        assert self.calls(), "no request reached the upstream"
        assert self.rejection() is None, f"{self.name} fake rejected the request: {self.rejection()}"

    def last_tool_result(self) -> tuple[str, str]:
        """(call id, or function name where the provider has no ids; result text) of the last request."""
        raise NotImplementedError

    def thinking_sent(self, budget: int | None) -> bool:
        """Whether the last request asked the upstream for thinking as a client budget of `budget`
        tokens (None: the client asked for none) should."""
        raise NotImplementedError

    def tool_names_sent(self) -> list[str]:
        raise NotImplementedError

    def upstream_counts(self) -> int:
        """Token-count calls the upstream received."""
        return 0


class GeminiCliBackend(Backend):
    name, model, count_method = "gemini-cli", "gemini-2.5-pro", "upstream:gemini-cli"

    def __init__(self, fake: ca.FakeCodeAssist) -> None:
        self.fake = fake

    def text_reply(self, *deltas: str, thinking: str | None = None) -> Any:
        thoughts = (thinking,) if thinking else ()
        return ca.text_reply(*deltas, thoughts=thoughts, signature="c2lnLWdlbWluaQ==" if thinking else None)

    def tool_reply(self, name: str, call_id: str, args: dict[str, Any], text: str | None = None) -> Any:
        return ca.tool_call_reply(name, args, call_id=call_id, text=text)

    def rate_limit(self, seconds: int) -> None:
        delay = f"{seconds}s"
        self.fake.enqueue(
            ca.error_reply(
                429,
                ca.rpc_error(
                    429,
                    "You have exhausted your capacity on this model.",
                    "RESOURCE_EXHAUSTED",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "RATE_LIMIT_EXCEEDED",
                            "domain": "cloudcode-pa.googleapis.com",
                            "metadata": {"quotaResetDelay": delay},
                        },
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
                    ],
                ),
            )
        )

    def calls(self) -> int:
        return len(self.fake.generate_requests)

    def last(self) -> Any:
        return self.fake.generate_requests[-1]

    def rejection(self) -> str | None:
        problem = self.fake.check_generate(self.last())
        return None if problem is None else json.dumps(problem[1])

    def last_tool_result(self) -> tuple[str, str]:
        contents = self.last()["request"]["contents"]
        call = next(p["functionCall"] for p in contents[-2]["parts"] if "functionCall" in p)
        response = next(p["functionResponse"] for p in contents[-1]["parts"] if "functionResponse" in p)
        assert response["name"] == call["name"]
        return response.get("id") or response["name"], json.dumps(response["response"])

    def thinking_sent(self, budget: int | None) -> bool:
        config = self.last()["request"].get("generationConfig", {}).get("thinkingConfig", {})
        # without a client budget the CLI's own default applies (Gemini 2.5 Pro always thinks)
        return config == {"includeThoughts": True, "thinkingBudget": budget or DEFAULT_THINKING_BUDGET}

    def tool_names_sent(self) -> list[str]:
        return [d["name"] for t in self.last()["request"].get("tools", []) for d in t.get("functionDeclarations", [])]

    def upstream_counts(self) -> int:
        return len(self.fake.calls(":countTokens"))


class KiroBackend(Backend):
    name, model, count_method = "kiro", "claude-sonnet-4-5", "estimate"

    def __init__(self, fake: kf.FakeKiro) -> None:
        self.fake = fake

    def text(self, *deltas: str, thinking: str | None = None) -> None:
        self.fake.enqueue(*self.text_reply(*deltas, thinking=thinking))

    def tool_call(self, name: str, call_id: str, args: dict[str, Any], text: str | None = None) -> None:
        self.fake.enqueue(*self.tool_reply(name, call_id, args, text=text))

    def text_reply(self, *deltas: str, thinking: str | None = None) -> Any:
        steps: list[Any] = [kf.Reasoning(text=thinking, signature="sig-kiro")] if thinking else []
        return [*steps, *[kf.Text(d) for d in deltas], kf.ContextUsage(1.0), kf.Metering(0.01)]

    def tool_reply(self, name: str, call_id: str, args: dict[str, Any], text: str | None = None) -> Any:
        raw = json.dumps(args)
        half = len(raw) // 2
        steps: list[Any] = [kf.Text(text)] if text else []
        return [*steps, kf.ToolUse(name, call_id, [raw[:half], raw[half:]]), kf.ContextUsage(1.0)]

    def rate_limit(self, seconds: int) -> None:
        self.fake.enqueue(
            kf.HttpError(
                429,
                {"message": "Too many requests, slow down.", "reason": "USER_REQUEST_RATE_EXCEEDED"},
                headers={"Retry-After": str(seconds)},
            )
        )

    def calls(self) -> int:
        return len(self.fake.generate_requests())

    def last(self) -> Any:
        return self.fake.generate_requests()[-1].body

    def rejection(self) -> str | None:
        request = self.fake.generate_requests()[-1]
        if request.rejection:
            return request.rejection
        return None if request.status == 200 else f"HTTP {request.status}"

    def _current(self) -> dict[str, Any]:
        return self.last()["conversationState"]["currentMessage"]["userInputMessage"]

    def last_tool_result(self) -> tuple[str, str]:
        result = self._current()["userInputMessageContext"]["toolResults"][0]
        return result["toolUseId"], json.dumps(result["content"])

    def thinking_sent(self, budget: int | None) -> bool:
        history = self.last()["conversationState"].get("history")
        first = history[0]["userInputMessage"] if history else self._current()  # holds the system text
        content = first["content"]
        if budget is None:
            return "<thinking_mode>" not in content
        return content.startswith(
            f"<thinking_mode>enabled</thinking_mode><max_thinking_length>{budget}</max_thinking_length>"
        )

    def tool_names_sent(self) -> list[str]:
        return [
            t["toolSpecification"]["name"] for t in self._current().get("userInputMessageContext", {}).get("tools", [])
        ]


class OpenAIBackend(Backend):
    name, model, count_method = "openai", "gpt-test", "estimate"

    def __init__(self, fake: oa.FakeOpenAI) -> None:
        self.fake = fake

    def text_reply(self, *deltas: str, thinking: str | None = None) -> Any:
        reasoning = [{"reasoning_content": thinking}] if thinking else []
        return oa.Reply(
            deltas=reasoning + [{"content": d} for d in deltas],
            usage={"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        )

    def tool_reply(self, name: str, call_id: str, args: dict[str, Any], text: str | None = None) -> Any:
        raw = json.dumps(args)
        half = len(raw) // 2
        deltas: list[dict[str, Any]] = [{"content": text}] if text else []
        deltas += [
            {
                "tool_calls": [
                    {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": raw[:half]}}
                ]
            },
            {"tool_calls": [{"index": 0, "function": {"arguments": raw[half:]}}]},
        ]
        return oa.Reply(
            deltas=deltas,
            finish="tool_calls",
            usage={"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
        )

    def rate_limit(self, seconds: int) -> None:
        self.fake.enqueue(
            oa.Reply(
                status=429,
                error_body={"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}},
                headers={"retry-after": str(seconds)},
            )
        )

    def calls(self) -> int:
        return len(self.fake.requests)

    def last(self) -> Any:
        return self.fake.requests[-1]

    def rejection(self) -> str | None:
        problem = self.fake.validate(self.fake.headers[-1], self.last())
        return None if problem is None else problem[1]

    def last_tool_result(self) -> tuple[str, str]:
        message = self.last()["messages"][-1]
        assert message["role"] == "tool"
        calls = [
            c["id"] for m in self.last()["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []
        ]
        assert message["tool_call_id"] in calls
        content = message["content"]
        return message["tool_call_id"], content if isinstance(content, str) else json.dumps(content)

    def thinking_sent(self, budget: int | None) -> bool:
        effort = self.last().get("reasoning_effort")
        return effort is None if budget is None else effort in ("minimal", "low", "medium", "high")

    def tool_names_sent(self) -> list[str]:
        return [t["function"]["name"] for t in self.last().get("tools", [])]


class QwenBackend(OpenAIBackend):
    """Qwen speaks OpenAI's chat completions; the fake adds Qwen's own rules (headers, extras, cache
    markers) and the OAuth token endpoint."""

    name, model, count_method = "qwen", "coder-model", "estimate"

    fake: qf.FakeQwen

    def rate_limit(self, seconds: int) -> None:
        self.fake.enqueue(qf.rate_limited(seconds))

    def rejection(self) -> str | None:
        order = self.fake.check_order(self.fake.header_orders[-1])
        if order:
            return order
        problem = self.fake.validate(self.fake.headers[-1], self.last())
        return None if problem is None else problem[1]

    def last_tool_result(self) -> tuple[str, str]:
        message = self.last()["messages"][-1]
        content = message["content"]
        if isinstance(content, list):  # the last message carries Qwen Code's cache marker
            assert content[-1].get("cache_control") == {"type": "ephemeral"}
            message = {**message, "content": "\n\n".join(p["text"] for p in content)}
        assert message["role"] == "tool"
        return message["tool_call_id"], message["content"]

    def thinking_sent(self, budget: int | None) -> bool:
        sent = self.last().get("enable_thinking")
        return sent is None if budget is None else sent is True

    def tool_names_sent(self) -> list[str]:
        return [t["function"]["name"] for t in self.last().get("tools", [])]


class AnthropicBackend(Backend):
    name, model, count_method = "anthropic", "claude-test", "upstream:anthropic"

    def __init__(self, fake: fa.FakeAnthropic) -> None:
        self.fake = fake

    def text_reply(self, *deltas: str, thinking: str | None = None) -> Any:
        return fa.pieces_reply(*deltas, thinking=thinking)

    def tool_reply(self, name: str, call_id: str, args: dict[str, Any], text: str | None = None) -> Any:
        return fa.tool_reply(name, call_id, args, text=text or "")

    def rate_limit(self, seconds: int) -> None:
        self.fake.enqueue(
            fa.error_reply(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                retry_after=str(seconds),
            )
        )

    def calls(self) -> int:
        return len(self.fake.requests)

    def last(self) -> Any:
        return self.fake.requests[-1]

    def rejection(self) -> str | None:
        problem = self.fake.validate("/v1/messages", self.fake.generate_headers[-1], self.last())
        return None if problem is None else problem[2]

    def last_tool_result(self) -> tuple[str, str]:
        messages = self.last()["messages"]
        result = next(b for b in messages[-1]["content"] if b["type"] == "tool_result")
        calls = [b["id"] for b in messages[-2]["content"] if b["type"] == "tool_use"]
        assert result["tool_use_id"] in calls
        return result["tool_use_id"], json.dumps(result.get("content"))

    def thinking_sent(self, budget: int | None) -> bool:
        thinking = self.last().get("thinking")
        if budget is None:
            return thinking is None or thinking == {"type": "disabled"}
        return thinking == {"type": "enabled", "budget_tokens": budget}

    def tool_names_sent(self) -> list[str]:
        return [t["name"] for t in self.last().get("tools", [])]

    def upstream_counts(self) -> int:
        return len(self.fake.count_requests)


class GeminiAPIBackend(Backend):
    name, model, count_method = "gemini", "gemini-2.5-flash", "upstream:gemini"

    def __init__(self, fake: fg.FakeGeminiAPI) -> None:
        self.fake = fake

    def text_reply(self, *deltas: str, thinking: str | None = None) -> Any:
        return fg.text_reply(*deltas, thought=thinking)

    def tool_reply(self, name: str, call_id: str, args: dict[str, Any], text: str | None = None) -> Any:
        call = {"functionCall": {"name": name, "args": args, "id": call_id}}
        chunks = [fg.chunk({"text": text})] if text else []
        return fg.Reply(chunks=[*chunks, fg.chunk(call, finish="STOP", usage=True)])

    def rate_limit(self, seconds: int) -> None:
        self.fake.enqueue(
            fg.status_reply(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds}s"}],
            )
        )

    def calls(self) -> int:
        return len(self.fake.requests)

    def last(self) -> Any:
        return self.fake.requests[-1]

    def rejection(self) -> str | None:
        path, headers = self.fake.generate_calls[-1]
        url = urlsplit(path)
        method = url.path.rsplit(":", 1)[-1]
        problem = self.fake.validate(method, parse_qs(url.query), headers, self.last())
        return None if problem is None else problem[3]

    def last_tool_result(self) -> tuple[str, str]:
        contents = self.last()["contents"]
        call = next(p["functionCall"] for p in contents[-2]["parts"] if "functionCall" in p)
        response = next(p["functionResponse"] for p in contents[-1]["parts"] if "functionResponse" in p)
        assert response["name"] == call["name"]
        return response.get("id") or response["name"], json.dumps(response["response"])

    def thinking_sent(self, budget: int | None) -> bool:
        config = self.last().get("generationConfig", {}).get("thinkingConfig", {})
        if budget is None:  # no client budget: the model's own default applies
            return "thinkingBudget" not in config
        # a larger client budget (Claude Code asks 31999) is capped to what Flash accepts
        return config == {"includeThoughts": True, "thinkingBudget": min(budget, FLASH_MAX_THINKING_BUDGET)}

    def tool_names_sent(self) -> list[str]:
        return [d["name"] for t in self.last().get("tools", []) for d in t.get("functionDeclarations", [])]

    def upstream_counts(self) -> int:
        return len(self.fake.count_requests)


@contextlib.contextmanager
def start_backend(
    name: str, workdir: Path, model: str | None = None, restrict_models: bool = True, **settings: Any
) -> Iterator[Backend]:
    """The fake upstream and a real bridge configured with one account on it (`model`: the model the
    tests ask for, instead of the backend's usual one; `restrict_models`: list only that model on the
    account, else the provider's own list; `settings`: more top-level config, e.g.
    `record=True, database=...`; recording is off unless asked for)."""
    with contextlib.ExitStack() as stack:
        backend: Backend
        if name == "gemini-cli":
            fake_ca = stack.enter_context(ca.FakeCodeAssist())
            creds = workdir / "oauth_creds.json"
            fake_ca.write_credentials(creds)
            account = {
                "provider": "gemini-cli",
                "credentials": str(creds),
                "base_url": fake_ca.base_url,
                "token_url": fake_ca.token_url,
                "project": fake_ca.project,
            }
            backend = GeminiCliBackend(fake_ca)
        elif name == "kiro":
            fake_kiro = stack.enter_context(kf.FakeKiro())
            token = fake_kiro.write_token_file(workdir / "kiro-auth-token.json")
            account = {
                "provider": "kiro",
                "credentials": str(token),
                "base_url": fake_kiro.base_url,
                "token_url": fake_kiro.social_refresh_url,
            }
            backend = KiroBackend(fake_kiro)
        elif name == "openai":
            fake_oa = stack.enter_context(oa.FakeOpenAI())
            account = {
                "provider": "openai",
                "api_key": fake_oa.api_key,
                "base_url": fake_oa.base_url,
                "models": [model or OpenAIBackend.model],
            }
            backend = OpenAIBackend(fake_oa)
        elif name == "anthropic":
            fake_an = stack.enter_context(fa.FakeAnthropic())
            account = {
                "provider": "anthropic",
                "api_key": fake_an.api_key,
                "base_url": fake_an.base_url,
                "models": [model or AnthropicBackend.model],
            }
            backend = AnthropicBackend(fake_an)
        elif name == "gemini":
            fake_gm = stack.enter_context(fg.FakeGeminiAPI())
            account = {
                "provider": "gemini",
                "api_key": fake_gm.api_key,
                "base_url": fake_gm.base_url,
                "models": [model or GeminiAPIBackend.model],
            }
            backend = GeminiAPIBackend(fake_gm)
        elif name == "qwen":
            fake_qw = stack.enter_context(qf.FakeQwen())
            creds = workdir / "oauth_creds.json"
            fake_qw.write_credentials(creds)
            account = {
                "provider": "qwen",
                "credentials": str(creds),
                "base_url": fake_qw.base_url,
                "token_url": fake_qw.token_url,
            }
            backend = QwenBackend(fake_qw)
        else:
            raise ValueError(name)
        if model:
            backend.model = model
        if not restrict_models:  # the provider's own model list, as a user who lists none gets
            account.pop("models", None)
        settings.setdefault("record", False)
        config = write_config(workdir / "bridge.toml", [{"name": f"{name}-1", **account, **PACING}], **settings)
        backend.bridge = stack.enter_context(BridgeProcess(workdir, config))
        yield backend
