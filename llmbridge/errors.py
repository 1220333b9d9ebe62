"""One exception tree for the whole bridge.

    BridgeError                      status  pool action
    ├── ClientError                          (the client's request is wrong: never rotate accounts)
    │   ├── InvalidRequest            400    stop
    │   ├── Unauthenticated           401    stop      (client API key missing or wrong)
    │   ├── NotFound                  404    stop      (unknown route)
    │   ├── ModelNotFound             404    stop
    │   ├── RequestTooLarge           413    stop
    │   ├── HeadersTooLarge           431    stop      (llmbridge.hostile)
    │   └── ContextTooLong            400    stop
    ├── UpstreamError                        (an upstream attempt failed)
    │   ├── UpstreamBadRequest        400    stop      (upstream rejected our translation)
    │   ├── UpstreamAuthError         401    refresh   (token stale: refresh once, then retry)
    │   ├── RateLimited               429    cooldown  (short, retry after `retry_after`)
    │   ├── QuotaExhausted            429    cooldown  (daily / monthly quota; long cool-down)
    │   ├── CapacityExhausted         503    rotate    (server-side capacity; try another account)
    │   ├── AccountUnusable           403    dead      (suspended, ineligible, needs validation)
    │   ├── PermissionDenied          403    rotate    (refused for this request/model, not the account)
    │   ├── UpstreamUnavailable       502    rotate    (connect error, 5xx)
    │   ├── UpstreamProtocolError     502    rotate    (the answer is not its protocol: unparsable events,
    │   │                                               bytes that are not the stream format, invalid Unicode)
    │   └── UpstreamTimeout           504    rotate
    │       └── FirstTokenTimeout     504    cooldown  (nothing in `first_token_timeout` seconds; short)
    ├── NoAccount                     503    -         (no configured account serves the model)
    └── InternalError                 500    -

Each client format has one function that renders any of these in its own dialect. A failure of the
HTTP connection to an upstream becomes one of these in one place: `transport_error`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import httpx

from llmbridge.redact import redact_secrets

if TYPE_CHECKING:
    from llmbridge.exchange import AttemptRecord

PoolAction = Literal["stop", "refresh", "cooldown", "rotate", "dead"]


class BridgeError(Exception):
    status: ClassVar[int] = 500
    kind: ClassVar[str] = "internal_error"
    action: ClassVar[PoolAction] = "stop"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        message = redact_secrets(message)  # an upstream error may echo a key the bridge holds
        super().__init__(message)
        self.message = message
        self.param = param  # the request field at fault, where there is one
        self.retry_after = retry_after  # seconds, where the upstream said
        self.code = code  # the upstream's own reason code (RATE_LIMIT_EXCEEDED, ...)
        if status is not None:
            self.status = status  # type: ignore[misc]
        self.attempt: AttemptRecord | None = None  # the upstream attempt that failed, where one did

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ClientError(BridgeError):
    status = 400
    kind = "invalid_request"


class InvalidRequest(ClientError):
    pass


class Unauthenticated(ClientError):
    status = 401
    kind = "authentication"


class NotFound(ClientError):
    status = 404
    kind = "not_found"


class ModelNotFound(ClientError):
    status = 404
    kind = "model_not_found"


class RequestTooLarge(ClientError):
    status = 413
    kind = "request_too_large"


class RequestTimeout(ClientError):
    status = 408
    kind = "request_timeout"


class MethodNotAllowed(ClientError):
    status = 405
    kind = "method_not_allowed"


class ShuttingDown(BridgeError):
    """The bridge is stopping: a new request, or an answer still running when the grace period ended."""

    status = 503
    kind = "shutting_down"


class ContextTooLong(ClientError):
    kind = "context_too_long"


class UpstreamError(BridgeError):
    status = 502
    kind = "upstream_error"
    action: ClassVar[PoolAction] = "rotate"


class UpstreamBadRequest(UpstreamError):
    status = 400
    kind = "invalid_request"
    action = "stop"


class UpstreamAuthError(UpstreamError):
    status = 401
    kind = "upstream_authentication"
    action = "refresh"


class RateLimited(UpstreamError):
    status = 429
    kind = "rate_limited"
    action = "cooldown"


class QuotaExhausted(RateLimited):
    kind = "quota_exhausted"


class CapacityExhausted(UpstreamError):
    status = 503
    kind = "overloaded"
    action = "rotate"


class AccountUnusable(UpstreamError):
    status = 403
    kind = "account_unusable"
    action = "dead"


class PermissionDenied(UpstreamError):
    """A 403 that does not say the account is unusable (e.g. a model this account may not use)."""

    status = 403
    kind = "permission_denied"
    action = "rotate"


class UpstreamUnavailable(UpstreamError):
    status = 502
    kind = "upstream_unavailable"


class UpstreamProtocolError(UpstreamError):
    """The upstream's answer broke its own protocol. Never taken for an (empty) answer: before the
    client saw a byte another account is tried, mid-stream the client gets the door's error event."""

    status = 502
    kind = "upstream_protocol_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "upstream_timeout"


class FirstTokenTimeout(UpstreamTimeout):
    """The upstream sent no content within `first_token_timeout` while another account could take the
    request: abandoned, and the account cools briefly (a stuck backend is seldom stuck for one request)."""

    kind = "first_token_timeout"
    action = "cooldown"


class NoAccount(BridgeError):
    status = 503
    kind = "no_account"


class InternalError(BridgeError):
    status = 500
    kind = "internal_error"


class ConfigError(Exception):
    """Invalid configuration; the message is one line naming the problem."""


def _subclasses(cls: type[BridgeError]) -> list[type[BridgeError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


def error_for_kind(kind: str, message: str, status: int | None = None) -> BridgeError:
    """Rebuild a classified error from its kind: an in-stream error event carries only kind, message
    and status, and the pool needs the class to know what the failure means for the account."""
    for cls in _subclasses(BridgeError):
        if cls.kind == kind and cls is not ClientError:
            return cls(message, status=status)
    return UpstreamError(message, status=status)


def transport_error(error: httpx.TransportError, *, timeout: str, broken: str) -> UpstreamError:
    """An upstream connection that failed, as the bridge's error: a timeout is UpstreamTimeout with the
    message `timeout`, any other transport failure (refused, reset, cut) UpstreamUnavailable with
    `broken`. Both rotate to the next account; callers say what was under way in the messages."""
    if isinstance(error, httpx.TimeoutException):
        return UpstreamTimeout(timeout)
    return UpstreamUnavailable(broken)
