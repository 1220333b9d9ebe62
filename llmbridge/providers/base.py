"""What every provider implements, and the registry that names them.

A provider turns a canonical `ChatRequest` into its private wire request, sends it, classifies
failures into the `llmbridge.errors` tree, and decodes the answer bytes into canonical stream events.
Coding-assistant backends are always called in streaming mode (their official clients always
stream; non-stream clients get the accumulated stream); API-key providers (`whole_answers`) send a
non-stream client request upstream non-stream and decode the one JSON answer into the same events
(`llmbridge.whole_body`).

Adding a provider: a folder under `llmbridge/providers/` with a `Provider` subclass, and one line in
`PROVIDERS` below. Deleting one is the reverse.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import json
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, ClassVar, Protocol

import httpx

from llmbridge.canonical import ChatRequest, ModelInfo, StreamEvent
from llmbridge.config import AccountConfig
from llmbridge.errors import BridgeError, ConfigError, UpstreamUnavailable, transport_error
from llmbridge.exchange import AttemptRecord
from llmbridge.redact import redact_headers

# Turns a failed upstream response (status, headers) and its body into a classified error.
Classifier = Callable[[httpx.Response, bytes], BridgeError]


class StreamDecoder(Protocol):
    """Turns upstream response bytes, split anywhere, into canonical events."""

    def feed(self, data: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]:
        """End of the upstream body: flush what is buffered; report a truncated stream."""
        ...


class ClosedDecoder:
    """Stands in for a decoder already closed (the body ended while the bridge peeked at it)."""

    def feed(self, data: bytes) -> list[StreamEvent]:
        return []

    def close(self) -> list[StreamEvent]:
        return []


@dataclass
class UpstreamCall:
    """An upstream response that answered with a good status and whose body is not read yet
    (except what the bridge peeked at: `peeked_raw` bytes, already decoded into `peeked_events`).

    The peek and the answer that follows it read the body through these methods only: one iterator
    over the body, one read that may be left under way between them, one decoder."""

    response: httpx.Response
    decoder: StreamDecoder
    attempt: AttemptRecord
    peeked_raw: bytes = b""
    peeked_events: list[StreamEvent] = field(default_factory=list)
    # a read the peek started and did not wait for; the one iterator over the body
    _pending: asyncio.Future[bytes | None] | None = field(default=None, init=False, repr=False)
    _chunks: AsyncIterator[bytes] | None = field(default=None, init=False, repr=False)

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks (content-encoding undone); one iterator for the peek and the answer that follows it."""
        if self._chunks is None:
            # decoded: a provider that asks for gzip/br as its client does gets plain bytes here
            self._chunks = self.response.aiter_bytes()
        return self._chunks

    def read(self) -> asyncio.Future[bytes | None]:
        """The next raw chunk (None at the end of the body): the read the peek left under way, if
        there is one, else a new one."""
        pending, self._pending = self._pending, None
        return pending if pending is not None else asyncio.ensure_future(anext(self.chunks(), None))

    def hold_pending(self, read: asyncio.Future[bytes | None] | None) -> None:
        """Keep a read still under way when the peek stopped waiting: the answer's first `read`."""
        self._pending = read

    def peek_feed(self, chunk: bytes) -> list[StreamEvent]:
        """Decode a chunk read while peeking; bytes and events are kept for the answer to replay."""
        self.peeked_raw += chunk
        events = self.decoder.feed(chunk)
        self.peeked_events += events  # all of them: the answer replays exactly what was decoded
        return events

    def peek_close(self) -> list[StreamEvent]:
        """The body ended while peeking: close the decoder (kept events included) and stand a closed
        one in its place, so the answer's own close adds nothing."""
        events = self.decoder.close()
        self.decoder = ClosedDecoder()
        self.peeked_events += events
        return events

    async def reject(self, error: BridgeError) -> BridgeError:
        """The answer proved a failure before the client saw a byte: close it, keep what was peeked
        on the attempt, and return the error with the attempt attached."""
        await self.aclose()
        self.attempt.response_body += self.peeked_raw
        return failed(self.attempt, error)

    async def aclose(self) -> None:
        await self.response.aclose()


class Provider(ABC):
    """One configured account of one provider."""

    name: ClassVar[str]  # the `provider = "..."` value in the config
    service: ClassVar[str] = "the upstream"  # how messages name the service ("Code Assist", "Kiro")
    # Where the provider's own client keeps its credential file; an account is made from it
    # automatically when no config file exists.
    default_credentials: ClassVar[str | None] = None
    # The path `base_url` carries beyond the origin, which requests are appended to ("/v1" for
    # OpenAI-compatible servers): how a replay server's origin becomes this provider's base_url.
    base_url_path: ClassVar[str] = ""
    # True: a non-stream client request goes upstream non-stream, and its answer is one JSON body
    # (the API-key providers, whose SDKs send such requests); False: always a stream.
    whole_answers: ClassVar[bool] = False

    def __init__(self, account: AccountConfig, http: httpx.AsyncClient) -> None:
        self.account = account
        self.http = http

    @classmethod
    def paced_by_default(cls) -> bool:
        """Coding-assistant logins (a credential file the provider's own client wrote: gemini-cli,
        kiro) are paced conservatively unless the account says otherwise, because those providers
        suspend accounts whose traffic looks like a proxy's; API-key accounts are not paced."""
        return cls.default_credentials is not None

    @classmethod
    def replay_account(cls, name: str, origin: str, recorded: list[dict[str, Any]], workdir: Path) -> AccountConfig:
        """Offline mode (`llmbridge.offline`): an account of this provider that answers from a replay
        server at `origin`, given the fixtures recorded from it. API-key providers take a stand-in key
        and serve exactly the models the fixtures hold; OAuth providers override this to write
        stand-in credentials into `workdir` and carry the recorded account settings (project, ARN)."""
        return AccountConfig(
            name=name,
            provider=cls.name,
            base_url=origin + cls.base_url_path,
            api_key="replay-key",
            models=recorded_models(recorded),
        )

    @classmethod
    def validate_account(cls, account: AccountConfig) -> None:
        """Raise ConfigError naming the problem when the account cannot work (checked at startup)."""
        if account.credentials and not Path(account.credentials).expanduser().is_file():
            raise ConfigError(f"account {account.name!r}: credentials file {account.credentials} not found")

    @abstractmethod
    def models(self) -> list[ModelInfo]:
        """Every model this account serves, under the names clients use."""

    async def refresh_models(self) -> None:
        """Bring `models()` up to date where the service lists an account's models (Kiro); at most
        one call per interval, never failing: a provider keeps its known list when the call fails."""

    def upstream_model(self, model: str) -> str | None:
        """The provider's own id for a client model name, or None when this account does not serve it."""
        return model if any(m.id == model for m in self.models()) else None

    def check_request(self, request: ChatRequest) -> None:
        """Raise InvalidRequest naming any parameter this provider cannot honour (before any attempt)."""

    @classmethod
    def answer_decoder(cls, stream: bool) -> StreamDecoder | None:
        """A fresh decoder for one answer of this provider: a stream, or (`stream=False`) one whole
        JSON body. None for a provider that is always called as a stream with a decoder of its own
        (the coding-assistant backends). Offline mode reads recorded answers with it too
        (`llmbridge.replay_kinds`)."""
        return None

    def streams_upstream(self, request: ChatRequest) -> bool:
        """Whether this request goes upstream as a stream (else its answer comes whole, at its end)."""
        return request.stream or not self.whole_answers

    @abstractmethod
    async def open(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """Send the request; return the open response on a 2xx, else raise a classified BridgeError.

        The provider reads and closes the body of a failed response itself (to classify it) and
        records status and body on the AttemptRecord it raises with (`error.attempt`)."""

    async def refresh_credentials(self, force: bool = False) -> None:
        """Refresh the access token if it is expiring (or always, with force). Single-flight."""

    async def refresh_ahead(self, seconds: float) -> None:
        """The background refresh (`llmbridge.probes`): refresh the access token if it expires within
        the provider's own margin plus `seconds`, so that the next requests find it fresh and none
        waits on a refresh. The same single flight as `refresh_credentials`."""
        await self.refresh_credentials()

    async def count_tokens(self, request: ChatRequest, upstream_model: str) -> int | None:
        """Ask the upstream to count the request's input tokens; None where it cannot."""
        return None

    async def probe(self) -> bool:
        """The health probe (`llmbridge.probes`): the cheapest call that shows the account works (a
        token refresh for OAuth logins, a model listing for API keys). Returns True when it answered
        well, raises the classified BridgeError when not; False when the provider has no such call
        (its account then comes back only when its cool-down ends, or its config changes)."""
        return False

    async def probe_get(self, url: str, headers: dict[str, str], classify: Classifier) -> bool:
        """A probe that is one GET (a model listing): True on a 2xx, else the classified error."""
        response, _ = await self.send("GET", url, headers, None, classify)
        await response.aclose()
        return True

    def describe(self) -> str:
        """One line for the startup banner (no secrets)."""
        return f"{self.account.name} ({self.name})"

    def build_request(self, method: str, url: str, headers: dict[str, str], content: bytes | None) -> httpx.Request:
        """The upstream request; the HTTP client's default headers are merged in. A provider that
        reproduces a client's exact headers and their order overrides this."""
        return self.http.build_request(method, url, headers=headers, content=content)

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: dict[str, Any] | None, classify: Classifier
    ) -> tuple[httpx.Response, AttemptRecord]:
        """Send one upstream request (its answer's body read as it arrives) and record it as an attempt.

        On a 2xx the response comes back unread. Otherwise its body is read, classified and raised
        with the attempt attached (`error.attempt`), so the bridge can record every try."""
        attempt = AttemptRecord(
            account=self.account.name,
            provider=self.name,
            url=url,
            method=method,
            request_headers=redact_headers(headers),
        )
        content = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        attempt.request_body = content
        started = time.monotonic()
        try:
            response = await self.http.send(self.build_request(method, url, headers, content), stream=True)
        except httpx.TransportError as e:
            raise failed(
                attempt,
                transport_error(
                    e,
                    timeout=f"{self.service} did not answer in time ({type(e).__name__} on {url})",
                    broken=f"cannot reach {self.service} at {url}: {e!r}",
                ),
            ) from e
        attempt.ttfb_ms = (time.monotonic() - started) * 1000
        attempt.waited_ms += attempt.ttfb_ms
        attempt.status = response.status_code
        attempt.response_headers = redact_headers(response.headers)
        if response.is_success:
            return response, attempt
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            raw = b""
        finally:
            await response.aclose()
        attempt.response_body += raw
        raise failed(attempt, classify(response, raw))


async def read_json(response: httpx.Response, attempt: AttemptRecord, service: str) -> dict[str, Any]:
    """The whole body of a small JSON answer (token counts, project discovery), kept on the attempt."""
    try:
        raw = await response.aread()
    except httpx.HTTPError as e:
        raise failed(attempt, UpstreamUnavailable(f"{service} broke off its answer ({type(e).__name__})")) from e
    finally:
        await response.aclose()
    attempt.response_body += raw
    try:
        answer = json.loads(raw)
    except ValueError:
        raise UpstreamUnavailable(f"{service} answered {attempt.url} with something that is not JSON") from None
    return answer if isinstance(answer, dict) else {}


def failed(attempt: AttemptRecord, error: BridgeError) -> BridgeError:
    """Attach a failed attempt to its error (what the bridge records) and return the error."""
    attempt.error_kind, attempt.error_message = error.kind, error.message
    attempt.duration_ms = (time.time() - attempt.started) * 1000
    error.attempt = attempt
    return error


# provider name -> "module:Class"; imported lazily so that a broken provider cannot stop the others.
REPLAY_PACE = 1000  # offline mode's stand-in accounts: a replay server needs no ban-safety pacing


def check_login_file(account: AccountConfig, default: str, token_kind: str, login_hint: str) -> None:
    """A coding-assistant login's credential file (the account's, else `default`) must be readable JSON
    holding an access or a refresh token; else a ConfigError that says how to log in."""
    path = account.credentials_path() or Path(default).expanduser()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"account {account.name!r}: credentials file {path} not found; log in first with {login_hint}"
        ) from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"account {account.name!r}: cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not (data.get("refresh_token") or data.get("access_token")):
        raise ConfigError(f"account {account.name!r}: {path} holds no {token_kind} (access_token/refresh_token)")


def check_client_version(account: AccountConfig, pattern: re.Pattern[str], pinned: str, client_name: str) -> None:
    """An account's `client_version` must look like a release number of the client it imitates."""
    if account.client_version is not None and not pattern.match(account.client_version):
        raise ConfigError(
            f"account {account.name!r}: client_version {account.client_version!r} is not a {client_name} "
            f"release number such as {pinned!r}"
        )


def recorded_models(recorded: list[dict[str, Any]]) -> list[str] | None:
    """The models clients asked for in these replay fixtures (the `model` of the client's request, or
    the model in a Gemini-door path): what an offline replay account serves."""
    models = set()
    for fixture in recorded:
        client = fixture.get("client") or {}
        request = client.get("request")
        model = request.get("model") if isinstance(request, dict) else None
        if not model and "/models/" in str(client.get("endpoint") or ""):
            model = str(client["endpoint"]).split("/models/", 1)[1].split(":", 1)[0]
        if model:
            models.add(str(model))
    return sorted(models) or None


PROVIDERS: dict[str, str] = {
    "anthropic": "llmbridge.providers.anthropic_api.provider:AnthropicProvider",
    "gemini": "llmbridge.providers.gemini_api.provider:GeminiAPIProvider",
    "gemini-cli": "llmbridge.providers.gemini_cli.provider:GeminiCodeAssistProvider",
    "kiro": "llmbridge.providers.kiro.provider:KiroProvider",
    "openai": "llmbridge.providers.openai_api.provider:OpenAIProvider",
    "qwen": "llmbridge.providers.qwen.provider:QwenProvider",
}


def provider_class(name: str) -> type[Provider]:
    module_name, _, class_name = PROVIDERS[name].partition(":")
    provider: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return provider


def check_providers(accounts: list[AccountConfig]) -> None:
    """ConfigError for the first account whose `provider` is not registered, naming the known ones."""
    for account in accounts:
        if account.provider not in PROVIDERS:
            known = ", ".join(sorted(PROVIDERS))
            close = difflib.get_close_matches(account.provider, list(PROVIDERS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"account {account.name!r}: unknown provider {account.provider!r} (known: {known}){hint}")
