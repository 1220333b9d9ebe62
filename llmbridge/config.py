"""The bridge's configuration: a TOML file whose names are a public contract.

Found by `find_config`: `--set bridge_config` / `--config`, else `$LLMBRIDGE_CONFIG`, else
`bridge.toml` in the working directory, else `bridge.toml` in the home (`$LLMBRIDGE_HOME`, else the
checkout the bridge runs from, else the data directory); with none, defaults (accounts discovered
from the providers' standard credential files). Relative paths inside the file are relative to the
file, so the bridge behaves the same from any working directory. Unknown keys are errors, with the
nearest known name: a typo must not silently turn a setting off.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmbridge.aliases import ModelAlias
from llmbridge.errors import ConfigError
from llmbridge.rules import ParamRule, Params, ReplaceRule, SystemPromptRule

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8418
DEAD_TARGET = "reverse:http://127.0.0.1:9"  # the discard port: nothing untranslated leaves the machine
DEFAULT_DATABASE = "recordings/bridge.db"
CONFIG_NAME = "bridge.toml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientKey(Strict):
    key: str
    label: str
    models: list[str] | None = None  # allow-list: glob patterns of the models this key may use
    providers: list[str] | None = None  # allow-list: account names or provider kinds that may answer it


class AccountConfig(Strict):
    name: str
    provider: str
    credentials: str | None = None  # the provider's own credential file, refreshed in place
    base_url: str | None = None  # override of the API endpoint
    token_url: str | None = None  # override of the OAuth token endpoint
    project: str | None = None  # gemini-cli: skip project discovery
    client_version: str | None = (
        None  # gemini-cli, qwen, kiro: the client release to reproduce (default: the pinned one)
    )
    region: str | None = None  # kiro
    profile_arn: str | None = None  # kiro
    client_id: str | None = None  # kiro IdC: client registration
    client_secret: str | None = None
    api_key: str | None = None  # API-key providers
    models: list[str] | None = None  # restrict the account to these models
    # pacing; unset: conservative for coding-assistant logins, none for API keys (pool.DEFAULT_PACING)
    requests_per_minute: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    daily_limit: int | None = Field(default=None, ge=1)  # requests started per UTC day
    enabled: bool = True

    def credentials_path(self) -> Path | None:
        return Path(self.credentials).expanduser() if self.credentials else None


class BridgeConfig(Strict):
    api_keys: list[str | ClientKey] = Field(default_factory=list)
    database: str = DEFAULT_DATABASE
    record: bool = True  # write exchanges to the database
    record_bodies: bool = True  # keep request/response bodies (off: metadata only)
    retention_days: int | None = Field(default=None, ge=1)
    strategy: Literal["round-robin", "fill-first", "least-busy"] = "round-robin"
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_header_count: int = Field(default=200, ge=16)  # request headers; more is a 431
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)  # all request headers together; more is a 431
    max_json_depth: int = Field(default=200, ge=8, le=500)  # nesting of a request body; deeper is a 400
    max_messages: int = Field(default=10_000, ge=1)  # messages (contents, input items) in one request; more is a 413
    max_parts: int = Field(default=100_000, ge=1)  # content parts of all messages together; more is a 413
    client_header_timeout: float = Field(default=10.0, gt=0)  # seconds to send the request headers; then 408
    client_body_timeout: float = Field(default=30.0, gt=0)  # seconds to send the request body; then 408
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)  # on SIGTERM: time for answers in flight to end
    upstream_connect_timeout: float = Field(default=10.0, gt=0)
    upstream_read_timeout: float = Field(default=300.0, gt=0)  # silence allowed between upstream bytes
    keepalive_seconds: float = Field(default=15.0, gt=0)  # SSE keep-alive during upstream silence
    max_attempts: int = Field(default=4, ge=1)  # accounts tried per request before giving up
    max_wait_seconds: float = Field(default=20.0, ge=0)  # wait for a pacing slot or a cool-down, then 429
    session_affinity: bool = True  # a conversation's requests stay on the account that answered it
    # seconds an upstream may stay without content while another account could answer; 0: off
    first_token_timeout: float = Field(default=60.0, ge=0)
    probe_interval: float = Field(default=300.0, ge=0)  # seconds between health probes of an unusable account; 0: off
    # redis://host:port/db: the pool state shared by several bridge processes (`llmbridge.shared_state`);
    # unset: kept in this process (and in pool_state.db beside the database)
    state_url: str | None = Field(default=None, pattern=r"^(redis|rediss|unix)://")
    accounts: list[AccountConfig] = Field(default_factory=list)
    # Prompt rules, aliases and routing (`llmbridge.rules`, `llmbridge.aliases`)
    system_prompt: list[SystemPromptRule] = Field(default_factory=list)
    replace: list[ReplaceRule] = Field(default_factory=list)
    params: list[ParamRule] = Field(default_factory=list)
    models: dict[str, ModelAlias] = Field(default_factory=dict)
    # model -> models tried in order when no account of the model can answer (all cooling, dead,
    # overloaded or failing); never for a request the upstream refused as invalid
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_names(self) -> BridgeConfig:
        """A rule or key naming an account, provider or key label that does not exist is a typo that
        would silently disable it: refused."""
        from llmbridge.providers.base import PROVIDERS  # late: the providers import this module

        names = set(PROVIDERS) | {a.name for a in self.accounts}
        labels = {k.label for k in self.client_keys()} or {"generated"}
        tables: list[tuple[str, list[str] | None, list[str] | None]] = [
            (f"api_keys.{i}", None, k.providers) for i, k in enumerate(self.client_keys())
        ]
        for kind in ("system_prompt", "replace", "params"):
            rules: list[SystemPromptRule] | list[ReplaceRule] | list[ParamRule] = getattr(self, kind)
            tables += [(f"{kind}.{i}", r.keys, r.providers) for i, r in enumerate(rules)]
        for where, keys, providers in tables:
            for name in providers or []:
                if name not in names:
                    raise ValueError(f"{where}.providers: {name!r} is no account name or provider{_close(name, names)}")
            for label in keys or []:
                if label not in labels:
                    raise ValueError(f"{where}.keys: {label!r} is no client key label{_close(label, labels)}")
        return self

    @field_validator("accounts")
    @classmethod
    def _unique_names(cls, accounts: list[AccountConfig]) -> list[AccountConfig]:
        seen: set[str] = set()
        for account in accounts:
            if account.name in seen:
                raise ValueError(f"account name {account.name!r} is used twice")
            seen.add(account.name)
        return accounts

    def client_keys(self) -> list[ClientKey]:
        keys = []
        for i, entry in enumerate(self.api_keys):
            if isinstance(entry, ClientKey):
                keys.append(entry)
            else:
                keys.append(ClientKey(key=entry, label=f"key{i + 1}"))
        return keys


def _close(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(known))})"


def describe_validation_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"unknown setting {where!r}{_did_you_mean(first['loc'])}"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """`; did you mean 'x'?` for a misspelled key, from the fields of the table it sits in."""
    name = str(loc[-1])
    tables: dict[str, type[BaseModel]] = {
        "accounts": AccountConfig,
        "api_keys": ClientKey,
        "system_prompt": SystemPromptRule,
        "replace": ReplaceRule,
        "params": ParamRule,
        "models": ModelAlias,
    }
    table: type[BaseModel] = tables.get(str(loc[0]), BridgeConfig) if len(loc) > 1 else BridgeConfig
    if any(part in ("defaults", "force") for part in loc[1:-1]):
        table = Params
    fields = table.model_fields
    close = difflib.get_close_matches(name, list(fields), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def checkout_root() -> Path | None:
    """The source checkout this package runs from (an editable install), or None when installed."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "addons" / "openai_bridge.py").is_file() else None


def home_dir() -> Path:
    """Where the config and the default database are looked for when no path is given:
    `$LLMBRIDGE_HOME` when set, else the checkout the bridge runs from, else the data directory.
    Never the working directory, so the bridge finds the same files wherever it is started."""
    if os.environ.get("LLMBRIDGE_HOME"):
        return data_dir()
    return checkout_root() or data_dir()


def find_config(explicit: str | Path | None) -> Path | None:
    """The config file in force (see the module docstring for the order), or None for defaults."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    from_env = os.environ.get("LLMBRIDGE_CONFIG")
    if from_env:
        return Path(from_env).expanduser().absolute()
    for folder in (Path.cwd(), home_dir()):
        if (folder / CONFIG_NAME).is_file():
            return (folder / CONFIG_NAME).absolute()
    return None


def default_database() -> Path:
    return home_dir() / DEFAULT_DATABASE


def _anchor(value: str, base: Path) -> str:
    """A path from the config, with `~` expanded and made absolute against the config's folder."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def load_config(path: Path | None) -> BridgeConfig:
    """Read and validate the config file; ConfigError with one line naming the problem.
    Relative paths in it (`database`, `credentials`) are anchored to the file's folder. Provider names
    are checked against the registry by whoever builds accounts (`providers.base.check_providers`)."""
    if path is None:
        return BridgeConfig(database=str(default_database()))
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    try:
        config = BridgeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"config file {path}: {describe_validation_error(e)}") from None
    base = path.absolute().parent
    config.database = _anchor(config.database, base)
    for account in config.accounts:
        if account.credentials:
            account.credentials = _anchor(account.credentials, base)
    for rule in config.system_prompt:
        if rule.file:
            rule.file = _anchor(rule.file, base)
    return config


def data_dir() -> Path:
    """Where the bridge keeps its own state (generated client key, mitmproxy confdir)."""
    base = os.environ.get("LLMBRIDGE_HOME")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "llmbridge"
