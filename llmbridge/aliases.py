"""Which accounts may answer a request, besides the model name: aliases, pins and client allow-lists.

* Model aliases (`[models."fast"]`, `target = "kiro/claude-sonnet-4-5"` or a bare model, with
  `defaults` and `force` parameters): a request for the alias goes to the target, the alias is listed
  by every door's model listing, and the answer names the alias the client asked for.
* Pins: a path prefix (`/<name>/v1/...`, `/<name>/v1beta/...`, for every door), the header
  `x-llmbridge-provider: <name>`, or a model written `<account>/<model>` limit the request to the
  accounts whose `name` or `provider` is `<name>`.
* Client keys with allow-lists (`api_keys = [{ key, label, models = [...], providers = [...] }]`): a
  key may ask only for matching models (glob patterns over the name asked for, the alias target and
  the bare model) and be answered only by matching accounts; anything else is a 403.

`Routing` is a pure function of the config, the client keys and the accounts: a config reload builds a
new one. The pool's own model matching (`AccountPool.candidates`) is unchanged; this narrows its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from llmbridge.canonical import ChatRequest, ModelInfo, ResponseMeta, StreamEvent
from llmbridge.errors import InvalidRequest, ModelNotFound
from llmbridge.rules import NotAllowed, Params, _Strict, apply_params, matches_model, matches_provider, model_names

if TYPE_CHECKING:
    from llmbridge.config import ClientKey
    from llmbridge.pool import AccountPool, AccountState, Candidate
    from llmbridge.providers.base import StreamDecoder, UpstreamCall

PROVIDER_HEADER = "x-llmbridge-provider"
API_ROOTS = ("/v1/", "/v1beta/")  # what follows a path prefix `/<name>` for it to be a pin


class ModelAlias(_Strict):
    target: str  # `provider/model`, `account/model` or a bare model
    description: str | None = None
    defaults: Params | None = None  # parameters the client left out
    force: Params | None = None  # parameters set whatever the client sent


@dataclass
class Plan:
    """How one request is routed: the model the pool is asked for and who may answer it."""

    requested: str  # the model the client asked for
    model: str  # what the pool is asked for: the alias's target (or the requested name), without an account prefix
    alias: ModelAlias | None = None
    pins: list[str] = field(default_factory=list)  # account names / provider kinds every answer must match
    providers: list[str] | None = None  # the client key's allow-list
    key_label: str | None = None

    @property
    def names(self) -> list[str]:
        """The names the model goes by, for `models` filters."""
        return model_names(self.requested, self.alias.target if self.alias else None, self.model)

    def base_request(self, request: ChatRequest) -> tuple[ChatRequest, list[str]]:
        """The request as the providers see it before per-account rules: the target model and the
        alias's parameters (a copy when anything changes; `request` itself otherwise)."""
        if self.alias is None and self.model == request.model:
            return request, []
        out = request.model_copy(deep=True)
        out.model = self.model
        notes = [f"model {self.requested!r} -> {self.model!r}"] if self.model != self.requested else []
        if self.alias is not None:
            notes += apply_params(out, self.alias.defaults, self.alias.force, f"models.{self.requested}")
        return out, notes

    def admits(self, state: AccountState) -> bool:
        if any(not matches_provider([pin], state.name, state.provider_name) for pin in self.pins):
            return False
        return self.providers is None or matches_provider(self.providers, state.name, state.provider_name)


class Routing:
    def __init__(
        self,
        aliases: Mapping[str, ModelAlias],
        client_keys: Sequence[ClientKey],
        account_names: Sequence[str],
        provider_kinds: Sequence[str],
    ) -> None:
        self.aliases = dict(aliases)
        self.keys: dict[str, ClientKey] = {}
        for key in client_keys:
            self.keys.setdefault(key.label, key)
        self.account_names = list(account_names)
        self.provider_kinds = list(provider_kinds)
        self.names = {*self.account_names, *self.provider_kinds}

    @classmethod
    def from_config(cls, config: Any, client_keys: Sequence[ClientKey], pool: AccountPool) -> Routing:
        from llmbridge.providers.base import PROVIDERS

        accounts = [a.name for a in config.accounts] + [s.name for s in pool.states]
        return cls(config.models, client_keys, accounts, list(PROVIDERS))

    # --- pins -------------------------------------------------------------------------------------

    def split_path(self, target: str) -> tuple[str | None, str]:
        """(`name`, the rest) for `/<name>/v1/...` where `name` is an account or provider; else (None, target)."""
        if not target.startswith("/"):
            return None, target
        name, slash, rest = target[1:].partition("/")
        if slash and name in self.names and any(("/" + rest).startswith(root) for root in API_ROOTS):
            return name, "/" + rest
        return None, target

    def pins(self, path_pin: str | None, headers: Mapping[str, str]) -> list[str]:
        """The path's pin and the header's; InvalidRequest for a header naming nothing configured."""
        pins = [path_pin] if path_pin else []
        header = headers.get(PROVIDER_HEADER, "").strip()
        if header:
            if header not in self.names:
                known = ", ".join(sorted(self.names))
                raise InvalidRequest(
                    f"header {PROVIDER_HEADER}: {header!r} is not an account name or provider (known: {known})"
                )
            if header not in pins:
                pins.append(header)
        return pins

    # --- a request's plan -------------------------------------------------------------------------

    def plan(self, model: str, key_label: str | None, pins: Sequence[str] = ()) -> Plan:
        """The plan for a request for `model`; NotAllowed when the client key may not use the model,
        or a pinned provider outside its allow-list."""
        alias = self.aliases.get(model)
        target = alias.target if alias else model
        pins = list(pins)
        prefix, slash, bare = target.partition("/")
        if slash and bare and prefix in self.account_names and prefix not in self.provider_kinds:
            target = bare  # `account/model`: that account only
            if prefix not in pins:
                pins.append(prefix)
        key = self.keys.get(key_label) if key_label is not None else None
        plan = Plan(model, target, alias, pins, key.providers if key else None, key_label)
        if key is not None and key.models is not None and not matches_model(key.models, plan.names):
            raise NotAllowed(
                f"the API key {key_label!r} may not use model {model!r}; it may use: {', '.join(key.models) or 'none'}"
            )
        if key is not None and key.providers is not None:
            refused = [pin for pin in pins if pin not in key.providers]
            if refused:
                raise NotAllowed(
                    f"the API key {key_label!r} may not use provider {refused[0]!r}; "
                    f"it may use: {', '.join(key.providers) or 'none'}"
                )
        return plan

    @staticmethod
    def admitted(candidates: list[Candidate], plan: Plan, listing: str) -> list[Candidate]:
        """The candidates the plan admits; ModelNotFound when a pin leaves none, NotAllowed when the
        client key's provider allow-list does."""
        pinned = [
            c for c in candidates if all(matches_provider([p], c.state.name, c.state.provider_name) for p in plan.pins)
        ]
        if not pinned:
            raise ModelNotFound(
                f"model {plan.requested!r} is not served by {' / '.join(repr(p) for p in plan.pins)}; "
                f"GET {listing} lists the models"
            )
        allowed = [c for c in pinned if plan.admits(c.state)]
        if not allowed:
            raise NotAllowed(
                f"the API key {plan.key_label!r} may not use the providers that serve model {plan.requested!r}; "
                f"it may use: {', '.join(plan.providers or []) or 'none'}"
            )
        return allowed

    # --- model listings ---------------------------------------------------------------------------

    def models(self, pool: AccountPool, key_label: str | None, pins: Sequence[str] = ()) -> list[ModelInfo]:
        """What a client key sees in a model listing: the models of the accounts it may use (and the
        pins allow), as `model` and `provider/model`, then the aliases whose target one of them serves."""
        key = self.keys.get(key_label) if key_label is not None else None
        states = [
            s
            for s in pool.states
            if all(matches_provider([p], s.name, s.provider_name) for p in pins)
            and (key is None or key.providers is None or matches_provider(key.providers, s.name, s.provider_name))
        ]
        seen: dict[str, ModelInfo] = {}
        for state in states:
            for model in state.provider.models():
                seen.setdefault(model.id, model)
                pinned = f"{model.provider}/{model.id}"
                seen.setdefault(pinned, model.model_copy(update={"id": pinned}))
        for name, alias in self.aliases.items():
            info = self._alias_info(name, alias, states, seen)
            if info is not None:
                seen[name] = info
        if key is None or key.models is None:
            return list(seen.values())
        return [info for info in seen.values() if matches_model(key.models, self._names(info.id))]

    def _names(self, model: str) -> list[str]:
        alias = self.aliases.get(model)
        return model_names(model, alias.target if alias else None)

    def _alias_info(
        self, name: str, alias: ModelAlias, states: list[AccountState], seen: dict[str, ModelInfo]
    ) -> ModelInfo | None:
        plan = self.plan(name, None)
        serving = [s for s in states if all(matches_provider([p], s.name, s.provider_name) for p in plan.pins)]
        if not any(_serves(s, plan.model) for s in serving):
            return None
        target = seen.get(plan.model) or seen.get(plan.model.partition("/")[2])
        display = alias.description or f"alias of {alias.target}"
        if target is not None:
            return target.model_copy(update={"id": name, "display_name": display})
        return ModelInfo(id=name, provider=serving[0].provider_name, display_name=display)


def _serves(state: AccountState, model: str) -> bool:
    """Whether `state` serves `model` as the pool matches it (`provider/model` pins the provider)."""
    if state.provider.upstream_model(model) is not None:
        return True
    provider, slash, bare = model.partition("/")
    return bool(slash) and provider == state.provider_name and state.provider.upstream_model(bare) is not None


# --- answers name the alias ------------------------------------------------------------------------


class _AliasDecoder:
    """A decoder whose events no longer carry the upstream's model name, so the answer keeps the
    name the client asked for (the alias)."""

    def __init__(self, inner: StreamDecoder) -> None:
        self.inner = inner

    def feed(self, data: bytes) -> list[StreamEvent]:
        return _unnamed(self.inner.feed(data))

    def close(self) -> list[StreamEvent]:
        return _unnamed(self.inner.close())


def _unnamed(events: list[StreamEvent]) -> list[StreamEvent]:
    return [e.model_copy(update={"model": None}) if isinstance(e, ResponseMeta) and e.model else e for e in events]


def answer_as_alias(call: UpstreamCall) -> None:
    """Make an opened upstream call's answer name the model the client asked for (an alias)."""
    call.peeked_events = _unnamed(call.peeked_events)
    call.decoder = _AliasDecoder(call.decoder)
