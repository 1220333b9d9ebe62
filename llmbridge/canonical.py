"""The canonical chat model: the hub every client format and provider converts to and from.

Client formats (OpenAI, Anthropic, Gemini) parse requests into `ChatRequest` and render `ChatResult`
and `StreamEvent`s; providers turn a `ChatRequest` into their wire format and decode their answer
into `StreamEvent`s. No format ever talks to a provider directly (hub, not matrix).

Our own models forbid unknown fields (strict writer); the inbound wire models of each client format
are the tolerant readers. Every part carries `provider_metadata` so that opaque values such as
Gemini's `thoughtSignature` or Anthropic's thinking `signature` survive a round trip through a client.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmbridge.redact import redact_secrets


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- message parts ---------------------------------------------------------------------------------


class TextPart(Strict):
    type: Literal["text"] = "text"
    text: str
    provider_metadata: dict[str, Any] = Field(default_factory=dict)


class ImagePart(Strict):
    """An image given inline (`data`, base64) or by `url`; exactly one of them is set."""

    type: Literal["image"] = "image"
    media_type: str = "image/png"
    data: str | None = None
    url: str | None = None
    provider_metadata: dict[str, Any] = Field(default_factory=dict)


class ReasoningPart(Strict):
    """Model thinking. `signature` is Claude's opaque proof (anthropic, kiro), which Anthropic
    verifies when it is echoed back. Gemini's thoughtSignature lives in
    `provider_metadata["gemini"]["thought_signature"]`, on whichever part Gemini put it (a thought,
    a tool call, a text part); the Gemini decoders also copy a thought's into `signature`, but only
    the metadata marks a signature as Gemini's, and only a Gemini backend is ever sent one."""

    type: Literal["reasoning"] = "reasoning"
    text: str = ""
    signature: str | None = None
    redacted: str | None = None  # Anthropic redacted_thinking data, kept opaque
    provider_metadata: dict[str, Any] = Field(default_factory=dict)


class ToolCallPart(Strict):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    provider_metadata: dict[str, Any] = Field(default_factory=dict)


class ToolResultPart(Strict):
    """The answer to a tool call. Lives in a user message, after the assistant turn that called it."""

    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    name: str | None = None  # Gemini needs the function name; formats fill it from history
    content: list[TextPart | ImagePart] = Field(default_factory=list)
    is_error: bool = False
    provider_metadata: dict[str, Any] = Field(default_factory=dict)

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


Part = Annotated[TextPart | ImagePart | ReasoningPart | ToolCallPart | ToolResultPart, Field(discriminator="type")]
Role = Literal["user", "assistant"]


# Gemini's thoughtSignature on a part or event: `provider_metadata["gemini"]["thought_signature"]`.
# Only these two functions spell that key; formats and providers use them.


def gemini_signature(provider_metadata: dict[str, Any]) -> str | None:
    """The Gemini thoughtSignature a canonical part or event carries, if any."""
    gemini = provider_metadata.get("gemini")
    signature = gemini.get("thought_signature") if isinstance(gemini, dict) else None
    return signature if isinstance(signature, str) and signature else None


def with_gemini_signature(provider_metadata: dict[str, Any], signature: str | None) -> dict[str, Any]:
    """A copy of `provider_metadata` carrying Gemini's `signature` (a plain copy when there is none)."""
    if not signature:
        return dict(provider_metadata)
    gemini = provider_metadata.get("gemini")
    return {
        **provider_metadata,
        "gemini": {**(gemini if isinstance(gemini, dict) else {}), "thought_signature": signature},
    }


# A Gemini client's functionResponse.response object, kept whole so that a Gemini upstream receives it
# exactly as sent (other providers read the tool result's text, its JSON).


def gemini_function_response(provider_metadata: dict[str, Any]) -> dict[str, Any] | None:
    gemini = provider_metadata.get("gemini")
    response = gemini.get("function_response") if isinstance(gemini, dict) else None
    return response if isinstance(response, dict) else None


def with_gemini_function_response(provider_metadata: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    gemini = provider_metadata.get("gemini")
    return {
        **provider_metadata,
        "gemini": {**(gemini if isinstance(gemini, dict) else {}), "function_response": response},
    }


class Message(Strict):
    role: Role
    parts: list[Part]
    provider_metadata: dict[str, Any] = Field(default_factory=dict)

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))


# --- request ---------------------------------------------------------------------------------------


class Tool(Strict):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


ToolChoiceMode = Literal["auto", "none", "required", "tool"]


class ToolChoice(Strict):
    """auto: model decides; none: no tools; required: some tool; tool: the one named."""

    mode: ToolChoiceMode = "auto"
    name: str | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    json_schema: dict[str, Any] | None = None
    strict: bool | None = None


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class Reasoning(Strict):
    """What the client asked of thinking: an effort level, a token budget, or both."""

    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None
    # Whether the client wants the thinking text back (Gemini includeThoughts); None: the client
    # format's own default.
    include_thoughts: bool | None = None


class ChatRequest(Strict):
    model: str
    system: list[TextPart] = Field(default_factory=list)
    messages: list[Message]
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    stream: bool = False
    stream_usage: bool = False  # the client asked for usage in the stream (OpenAI include_usage)
    # Client-side request headers a provider of the same family may pass on (anthropic-beta, ...).
    passthrough_headers: dict[str, str] = Field(default_factory=dict)
    # Tools the client sent that no backend can run (hosted tools such as OpenAI's web_search), left
    # out by the door rather than refused; named to the client in the x-llmbridge-dropped-tools
    # response header and recorded with the exchange (its request_json).
    dropped_tools: list[str] = Field(default_factory=list)
    # What the client's door needs back when it renders this request's answer (fields it echoes, how
    # it renamed tools); JSON-able, door-private, never read by a provider.
    client_options: dict[str, Any] = Field(default_factory=dict)
    # Which client conversation this is (`llmbridge.conversation.conversation_scope`: the client key's
    # label and the client's own session header), set by the bridge; a provider whose official client
    # names its conversation on the wire (gemini-cli's session_id) derives that name from it.
    conversation: str | None = None

    def system_text(self) -> str:
        return "\n\n".join(p.text for p in self.system)


# --- results and stream events ---------------------------------------------------------------------

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "stop_sequence", "error"]


class Usage(Strict):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # input tokens read from a cache (included in input_tokens)
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0  # output tokens spent thinking (included in output_tokens)
    estimated: bool = False  # True when the provider gave no counts and we estimated them

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class TextDelta(Strict):
    type: Literal["text_delta"] = "text_delta"
    text: str
    provider_metadata: dict[str, Any] = Field(default_factory=dict)


class ReasoningDelta(Strict):
    type: Literal["reasoning_delta"] = "reasoning_delta"
    text: str = ""
    signature: str | None = None
    redacted: str | None = None
    provider_metadata: dict[str, Any] = Field(default_factory=dict)


class ToolCallStart(Strict):
    """A new tool call. `index` counts tool calls in this response from 0."""

    type: Literal["tool_call_start"] = "tool_call_start"
    index: int
    id: str
    name: str
    provider_metadata: dict[str, Any] = Field(default_factory=dict)


class ToolCallDelta(Strict):
    """A fragment of the JSON text of a tool call's arguments; fragments concatenate."""

    type: Literal["tool_call_delta"] = "tool_call_delta"
    index: int
    arguments: str


class UsageEvent(Strict):
    type: Literal["usage"] = "usage"
    usage: Usage


class Finish(Strict):
    type: Literal["finish"] = "finish"
    reason: FinishReason
    stop_sequence: str | None = None  # which stop sequence matched, where the provider says
    raw_reason: str | None = None  # the provider's own word, for the recorder


class ResponseMeta(Strict):
    """What the provider says about the response itself: its id and the model that served it."""

    type: Literal["response_meta"] = "response_meta"
    response_id: str | None = None
    model: str | None = None


class StreamError(Strict):
    """The upstream failed after the stream had started; renderers emit their dialect's error."""

    type: Literal["error"] = "error"
    kind: str
    message: str
    status: int = 500

    @field_validator("message")
    @classmethod
    def _no_secret(cls, message: str) -> str:
        return redact_secrets(message)  # the upstream's words may echo a key the bridge holds


StreamEvent = Annotated[
    TextDelta | ReasoningDelta | ToolCallStart | ToolCallDelta | UsageEvent | Finish | ResponseMeta | StreamError,
    Field(discriminator="type"),
]


class ChatResult(Strict):
    id: str
    model: str
    parts: list[TextPart | ReasoningPart | ToolCallPart] = Field(default_factory=list)
    finish_reason: FinishReason = "stop"
    stop_sequence: str | None = None
    usage: Usage | None = None
    error: StreamError | None = None

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def reasoning_text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, ReasoningPart))

    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.parts if isinstance(p, ToolCallPart)]


class ModelInfo(Strict):
    id: str
    provider: str
    display_name: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
