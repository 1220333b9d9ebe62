"""Prompt and parameter rules: what the bridge changes in a request before it goes upstream.

Three kinds of rule, each a list in the config and applied in config order:

* `[[system_prompt]]`: `overwrite`, `append` to or `prepend` to the system prompt a text given inline
  (`text`) or read from a file (`file`, read again whenever its modification time or size changes);
* `[[replace]]`: find and replace (plain text, or a regular expression with `regex = true`) in the
  system prompt (`scope = "system"`), the user turns with their tool results (`"user"`), or the
  system prompt and every turn (`"all"`, the default); thinking is never rewritten (it is signed);
* `[[params]]`: generation parameters per model or provider: `defaults` (when the client sent none),
  `force` (whatever the client sent), `clamp` (into `[min, max]`), `drop`, and `drop_when_thinking`
  (for a backend that rejects, say, `temperature` while thinking is on).

Each rule may be limited by `providers` (account names or provider kinds, as in `[[accounts]]`),
`models` (glob patterns over the model the client asked for, the alias's target and the model the
account is sent) and `keys` (client key labels). A rule without filters applies to every request.

All rules apply in the canonical model, so every door and every provider sees the same result
(Kiro, which has no system field, gets the rewritten system prompt where it puts the system text).
They apply per attempt, on a copy, once the account is known (`Rules.apply`): a rule limited to
`providers = ["kiro"]` changes only what Kiro receives, and the rules still apply in their config
order. The client's own request is never changed: it is what the answer is rendered for, and what the
Responses door keeps for `previous_response_id`. Nothing is injected that the config does not hold.

Everything here is a pure function of the config (`Rules(config)`), except the prompt files, which
are read when first used and re-read when they change: a config reload builds a new `Rules`.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmbridge.canonical import ChatRequest, Message, Reasoning, ReasoningEffort, TextPart, ToolResultPart
from llmbridge.errors import BridgeError, ClientError

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NotAllowed(ClientError):
    """A client key asked for a model or provider outside its allow-list."""

    status = 403
    kind = "permission_denied"


# --- parameters ------------------------------------------------------------------------------------

NUMERIC_PARAMS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "thinking_budget",
)
PARAM_NAMES = (*NUMERIC_PARAMS, "reasoning_effort")
ParamName = Literal[
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "thinking_budget",
    "reasoning_effort",
]
_INT_PARAMS = ("top_k", "max_tokens", "seed", "thinking_budget")


class Params(_Strict):
    """Generation parameters a rule or an alias sets: the canonical request's, by their OpenAI names
    (`thinking_budget` is the thinking token budget, `reasoning_effort` the effort level)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    thinking_budget: int | None = Field(default=None, ge=0)
    reasoning_effort: ReasoningEffort | None = None

    def values(self) -> dict[str, Any]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


def get_param(request: ChatRequest, name: str) -> Any:
    if name == "reasoning_effort":
        return request.reasoning.effort if request.reasoning else None
    if name == "thinking_budget":
        return request.reasoning.budget_tokens if request.reasoning else None
    return getattr(request, name)


def set_param(request: ChatRequest, name: str, value: Any) -> None:
    """Set (or, with None, drop) one parameter of `request` in place (the caller's copy)."""
    if name in ("reasoning_effort", "thinking_budget"):
        reasoning = request.reasoning.model_copy() if request.reasoning else Reasoning()
        if name == "reasoning_effort":
            reasoning.effort = value
        else:
            reasoning.budget_tokens = value
        empty = reasoning.effort is None and reasoning.budget_tokens is None and reasoning.include_thoughts is None
        request.reasoning = None if empty else reasoning
        return
    if value is not None and name in _INT_PARAMS:
        value = int(value)
    setattr(request, name, value)


def thinking_on(request: ChatRequest) -> bool:
    reasoning = request.reasoning
    if reasoning is None:
        return False
    if reasoning.budget_tokens is not None:
        return reasoning.budget_tokens > 0
    return reasoning.effort is not None and reasoning.effort != "none"


def apply_params(request: ChatRequest, defaults: Params | None, force: Params | None, who: str) -> list[str]:
    """Defaults (for parameters the client left out) then forced values, in place; the notes say what changed."""
    notes = []
    for name, value in (defaults.values() if defaults else {}).items():
        if get_param(request, name) is None:
            set_param(request, name, value)
            notes.append(f"{who}: {name} = {value!r} (default)")
    for name, value in (force.values() if force else {}).items():
        before = get_param(request, name)
        if before != value:
            set_param(request, name, value)
            notes.append(f"{who}: {name} {before!r} -> {value!r} (forced)")
    return notes


# --- filters ---------------------------------------------------------------------------------------


class Filters(_Strict):
    """Which requests a rule applies to; a filter left out matches every request."""

    providers: list[str] | None = None  # account names or provider kinds
    models: list[str] | None = None  # glob patterns (fnmatch): `claude-*`, `kiro/*`
    keys: list[str] | None = None  # client key labels


@dataclass
class Target:
    """What a rule's filters are judged against: one attempt (an account) for one request."""

    key_label: str | None
    models: Sequence[str]  # the names the request's model goes by (asked for, alias target, bare, upstream)
    account: str | None = None  # None before the account is known
    provider: str | None = None


def model_names(*names: str | None) -> list[str]:
    """Every name a model goes by: each given name, and each without its `provider/` prefix."""
    out: list[str] = []
    for name in names:
        if not name:
            continue
        for candidate in (name, name.removeprefix("models/"), name.partition("/")[2]):
            if candidate and candidate not in out:
                out.append(candidate)
    return out


def matches_model(patterns: Sequence[str], names: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


def matches_provider(allowed: Sequence[str], account: str | None, provider: str | None) -> bool:
    return (account is not None and account in allowed) or (provider is not None and provider in allowed)


def applies(rule: Filters, target: Target) -> bool:
    if rule.keys is not None and target.key_label not in rule.keys:
        return False
    if rule.models is not None and not matches_model(rule.models, target.models):
        return False
    if rule.providers is not None and not matches_provider(rule.providers, target.account, target.provider):
        return False
    return True


# --- rule configs ------------------------------------------------------------------------------------


class SystemPromptRule(Filters):
    mode: Literal["overwrite", "append", "prepend"]
    text: str | None = None
    file: str | None = None  # relative to the config file; re-read when it changes

    @model_validator(mode="after")
    def _one_source(self) -> SystemPromptRule:
        if (self.text is None) == (self.file is None):
            raise ValueError("give exactly one of 'text' or 'file'")
        return self


class ReplaceRule(Filters):
    find: str = Field(min_length=1)
    replace: str = ""
    regex: bool = False
    scope: Literal["system", "user", "all"] = "all"

    @model_validator(mode="after")
    def _compiles(self) -> ReplaceRule:
        if self.regex:
            try:
                re.compile(self.find)
            except re.error as e:
                raise ValueError(f"'find' is not a valid regular expression: {e}") from None
        return self


class ParamRule(Filters):
    defaults: Params | None = None
    force: Params | None = None
    clamp: dict[ParamName, tuple[float, float]] = Field(default_factory=dict)
    drop: list[ParamName] = Field(default_factory=list)
    drop_when_thinking: list[ParamName] = Field(default_factory=list)

    @field_validator("clamp")
    @classmethod
    def _ranges(cls, clamp: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for name, (low, high) in clamp.items():
            if name not in NUMERIC_PARAMS:
                raise ValueError(f"{name} cannot be clamped (only {', '.join(NUMERIC_PARAMS)})")
            if low > high:
                raise ValueError(f"clamp for {name}: {low} is above {high}")
        return clamp


# --- prompt files ------------------------------------------------------------------------------------


class PromptFiles:
    """Prompt files, read when first used and read again whenever their mtime or size changes."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int], str]] = {}
        self._lock = threading.Lock()

    def read(self, path: str) -> str:
        """The file's text; a file that cannot be read is an error for the request (never a silent
        empty prompt)."""
        try:
            stat = Path(path).stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            with self._lock:
                cached = self._cache.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PromptFileError(f"the system prompt file {path} cannot be read: {e}") from None
        with self._lock:
            self._cache[path] = (stamp, text)
        log.info("system prompt file %s read (%d characters)", path, len(text))
        return text


class PromptFileError(BridgeError):
    status = 500
    kind = "configuration_error"
    action = "stop"


# --- applying ----------------------------------------------------------------------------------------


@dataclass
class Applied:
    """A request as the rules made it for one attempt, and what they changed."""

    request: ChatRequest
    notes: list[str] = field(default_factory=list)


class Rules:
    """The prompt and parameter rules of one config (`Rules.from_config`); `apply` per attempt."""

    def __init__(
        self,
        system_prompt: Sequence[SystemPromptRule] = (),
        replace: Sequence[ReplaceRule] = (),
        params: Sequence[ParamRule] = (),
        files: PromptFiles | None = None,
    ) -> None:
        self.system_prompt = list(system_prompt)
        self.replace = list(replace)
        self.params = list(params)
        self.files = files or PromptFiles()
        self._patterns = [re.compile(r.find) if r.regex else None for r in self.replace]

    @classmethod
    def from_config(cls, config: Any, files: PromptFiles | None = None) -> Rules:
        """From a `BridgeConfig` (its `system_prompt`, `replace`, `params`); `files` may be carried
        over from the previous config so unchanged prompt files are not read again."""
        return cls(config.system_prompt, config.replace, config.params, files)

    def __bool__(self) -> bool:
        return bool(self.system_prompt or self.replace or self.params)

    def apply(self, request: ChatRequest, target: Target) -> Applied:
        """A copy of `request` with every rule that applies to `target`, in config order."""
        if not self:
            return Applied(request)
        out = request.model_copy(deep=True)
        notes: list[str] = []
        for i, param_rule in enumerate(self.params):
            if applies(param_rule, target):
                notes += self._params(out, param_rule, f"params[{i}]")
        for i, prompt_rule in enumerate(self.system_prompt):
            if applies(prompt_rule, target):
                self._system(out, prompt_rule)
                notes.append(f"system_prompt[{i}]: {prompt_rule.mode}")
        for i, replace_rule in enumerate(self.replace):
            if applies(replace_rule, target):
                count = self._replace(out, replace_rule, self._patterns[i])
                if count:
                    notes.append(f"replace[{i}]: {count} replaced")
        return Applied(out, notes)

    def _params(self, request: ChatRequest, rule: ParamRule, who: str) -> list[str]:
        notes = apply_params(request, rule.defaults, rule.force, who)
        for name, (low, high) in rule.clamp.items():
            value = get_param(request, name)
            if value is not None and not low <= value <= high:
                clamped = min(max(value, low), high)
                set_param(request, name, clamped)
                notes.append(f"{who}: {name} {value!r} -> {get_param(request, name)!r} (clamped)")
        dropped = list(rule.drop)
        if thinking_on(request):
            dropped += [name for name in rule.drop_when_thinking if name not in dropped]
        for name in dropped:
            value = get_param(request, name)
            if value is not None:
                set_param(request, name, None)
                why = "dropped" if name in rule.drop else "dropped: thinking is on"
                notes.append(f"{who}: {name} {value!r} ({why})")
        return notes

    def _system(self, request: ChatRequest, rule: SystemPromptRule) -> None:
        text = rule.text if rule.text is not None else self.files.read(rule.file or "")
        if rule.mode == "overwrite":
            request.system = [TextPart(text=text)] if text else []
        elif rule.mode == "append":
            request.system = [*request.system, TextPart(text=text)]
        else:
            request.system = [TextPart(text=text), *request.system]

    @staticmethod
    def _replace(request: ChatRequest, rule: ReplaceRule, pattern: re.Pattern[str] | None) -> int:
        count = 0

        def sub(text: str) -> str:
            nonlocal count
            if pattern is not None:
                new, n = pattern.subn(rule.replace, text)
            else:
                n = text.count(rule.find)
                new = text.replace(rule.find, rule.replace) if n else text
            count += n
            return new

        if rule.scope in ("system", "all"):
            for part in request.system:
                part.text = sub(part.text)
        for message in request.messages:
            if rule.scope == "all" or (rule.scope == "user" and message.role == "user"):
                _sub_message(message, sub)
        return count


def _sub_message(message: Message, sub: Any) -> None:
    for part in message.parts:
        if isinstance(part, TextPart):
            part.text = sub(part.text)
        elif isinstance(part, ToolResultPart):
            for inner in part.content:
                if isinstance(inner, TextPart):
                    inner.text = sub(inner.text)
