"""Assembles the running bridge from its configuration: accounts, pool, recorder, relay, HTTP client.

The mitmproxy addon owns one `BridgeApp`; tests can run one without mitmproxy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
import urllib.request
from pathlib import Path

import httpx

from llmbridge import __version__
from llmbridge.bridge import Bridge
from llmbridge.config import AccountConfig, BridgeConfig, ClientKey, data_dir, find_config, load_config
from llmbridge.credentials import recover_temp_files, share_refreshes
from llmbridge.errors import ConfigError
from llmbridge.exchange import ExchangeRecord
from llmbridge.formats import load_formats
from llmbridge.http_transport import AiohttpTransport
from llmbridge.offline import OfflineCorpus
from llmbridge.pool import AccountPool
from llmbridge.pool_state import PoolStateStore, SqlitePoolStateStore, state_path
from llmbridge.probes import HealthProber
from llmbridge.providers.base import PROVIDERS, Provider, check_providers, provider_class
from llmbridge.recorder import Recorder, recorder_from_config
from llmbridge.recorder.prune import prune
from llmbridge.redact import redact_secrets, redact_text, register_secret
from llmbridge.relay import Relay
from llmbridge.reload import ConfigWatcher, restart_needed
from llmbridge.shared_state import SharedState

log = logging.getLogger(__name__)


def discover_accounts() -> list[AccountConfig]:
    """With no config file, each provider's standard credential file that exists becomes an account."""
    found = []
    for name in PROVIDERS:
        default = provider_class(name).default_credentials
        if default and Path(default).expanduser().is_file():
            found.append(AccountConfig(name=name, provider=name, credentials=default))
    return found


def load_client_keys(config: BridgeConfig, home: Path) -> tuple[list[ClientKey], str | None]:
    """Configured keys, or the generated one kept in the data directory (created on first run).
    Returns the keys and, when generated, the key to print."""
    if config.client_keys():
        return config.client_keys(), None
    key = generated_client_key(home)
    return [ClientKey(key=key, label="generated")], key


def generated_client_key(home: Path) -> str:
    """The key in `<home>/client_key`, created (mode 0600) when missing. Written whole to a temporary
    file and linked into place, so a crash or a second process never sees an empty or half key."""
    key_file = home / "client_key"
    _remove_dead_writers_temp_files(home)
    if key_file.is_file() and (existing := key_file.read_text().strip()):
        return existing
    home.mkdir(parents=True, exist_ok=True)
    key = "sk-llmbridge-" + secrets.token_urlsafe(24)
    temp = home / f".client_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, key_file)  # fails if another process got there first: theirs is the key
        except FileExistsError:
            if not key_file.read_text().strip():  # an empty file left by an older version
                os.replace(temp, key_file)
                return key
            return key_file.read_text().strip()
        return key
    finally:
        temp.unlink(missing_ok=True)


def _remove_dead_writers_temp_files(home: Path) -> None:
    """`.client_key.<pid>.<random>` files of processes killed mid-write hold a key: remove them."""
    try:
        leftovers = list(home.glob(".client_key.*"))
    except OSError:
        return
    for temp in leftovers:
        pid = temp.name.split(".")[2] if temp.name.count(".") >= 3 else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            temp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_http_client(config: BridgeConfig) -> httpx.AsyncClient:
    # One shared client: connection reuse matters (a new TLS context per request costs ~10 ms).
    timeout = httpx.Timeout(
        connect=config.upstream_connect_timeout, read=config.upstream_read_timeout, write=60.0, pool=60.0
    )
    # No cap on connections: the accounts' `max_concurrent` bound how many requests are under way, and
    # a cap here made every stream past it wait silently for a connection (scripts/bench
    # --many-streams 500: with 200, streams waited 15 s for their first text, some until the pool
    # timeout). Kept-alive idle connections stay bounded.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
    # aiohttp underneath (llmbridge.http_transport): httpx's own transport cost about 1 ms of CPU per
    # request more. With a proxy set in the environment (HTTPS_PROXY, ALL_PROXY, ...) httpx's own
    # transport stays, since it is what honours them (and NO_PROXY).
    transport = None if environment_proxies() else AiohttpTransport()
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False, transport=transport)


def environment_proxies() -> bool:
    """Whether the environment names a proxy for HTTP(S) traffic (what httpx would use)."""
    return any(scheme in urllib.request.getproxies() for scheme in ("http", "https", "all"))


class BridgeApp:
    def __init__(self, config_path: Path | None, replay: Path | None = None) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.offline = OfflineCorpus(replay) if replay is not None else None
        self.discovered = not self.config.accounts and config_path is None and self.offline is None
        if self.discovered:
            self.config.accounts = discover_accounts()
        if self.offline is not None:  # offline mode: the corpus's accounts only, nothing recorded
            self.config.accounts, self.config.record = self.offline.accounts(), False
        self.validate(self.config)
        self.home = data_dir()
        self.client_keys, self.generated_key = load_client_keys(self.config, self.home)
        self._register_secrets()
        self.recorder: Recorder | None = None
        self.http: httpx.AsyncClient | None = None
        self.relay = Relay()
        self.pool: AccountPool | None = None  # made at start, with the HTTP client
        self.bridge: Bridge | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.state_store: PoolStateStore | None = None
        self.shared = self._open_shared_state()  # `state_url`; checked here, so startup stops when unreachable
        self.prober = HealthProber(lambda: self.pool, self.config.probe_interval)
        self._probing: asyncio.Task[None] | None = None

    def validate(self, config: BridgeConfig) -> None:
        """ConfigError naming the problem when `config`'s accounts cannot work."""
        check_providers(config.accounts)  # every name first: a typo is the likelier fault
        self._recover_credential_writes(config)
        for account in config.accounts:
            provider_class(account.provider).validate_account(account)

    def _recover_credential_writes(self, config: BridgeConfig) -> None:
        """A credential write cut short by a crash (kill -9) leaves a temp file holding tokens beside
        the file: restore it or remove it before anything reads the credentials."""
        for account in config.accounts:
            default = provider_class(account.provider).default_credentials
            path = account.credentials_path() or (Path(default).expanduser() if default else None)
            if path is not None:
                for line in recover_temp_files(path):
                    log.warning("llmbridge: %s", line)

    def _register_secrets(self) -> None:
        """Every key the config holds is redacted by value wherever it appears (OAuth tokens are
        registered as their credential files are read and refreshed, `llmbridge.credentials`)."""
        for client_key in self.client_keys:
            register_secret(client_key.key)
        for account in self.config.accounts:
            register_secret(account.api_key)
            register_secret(account.client_secret)

    def open_recorder(self) -> None:
        """Open the database now, so that a bad path stops startup with a clear message."""
        self.recorder = recorder_from_config(self.config)
        if self.recorder is None:
            return
        self.recorder.open()
        if self.config.retention_days:
            self._prune_old_exchanges()

    def _prune_old_exchanges(self) -> None:
        """Apply `retention_days` once at startup (`llmbridge db prune` does it on demand)."""
        import sqlite_utils

        days = float(self.config.retention_days or 0)
        result = prune(sqlite_utils.Database(self.config.database), days)
        log.info("retention (%s days): %s", self.config.retention_days, result.describe())

    async def start(self) -> None:
        self.http = make_http_client(self.config)
        providers: list[Provider] = [
            provider_class(a.provider)(a, self.http) for a in self.config.accounts if a.enabled
        ]
        self.state_store = self.shared or self._open_state_store()
        self.pool = AccountPool(
            providers, self.config.strategy, self.state_store, self.config.session_affinity, self.shared
        )
        self.pool.restore()
        await self.relay.start()
        self.bridge = Bridge(self.config, self.pool, self.client_keys, self.exchange_done)
        if self.shared is not None:
            self.bridge.failover.conversation_secret = self.shared.conversation_secret()
            await self.shared.start()
        if self.offline is not None:
            await self.offline.start()
        elif self.config_path is not None and not self.discovered:
            self._watcher = asyncio.ensure_future(ConfigWatcher(self, self.config_path).run())
        self._probing = asyncio.ensure_future(self.prober.run())

    def _open_shared_state(self) -> SharedState | None:
        """With `state_url`, the state shared with the other processes (`llmbridge.shared_state`);
        an unreachable Redis stops startup (a misspelt URL must not silently split the pool)."""
        if self.config.state_url is None or self.offline is not None:
            return None
        shared = SharedState(self.config.state_url)
        shared.check()
        share_refreshes(shared)
        log.info("pool state shared through Redis at %s", shared.where())
        return shared

    def _open_state_store(self) -> PoolStateStore | None:
        """The pool state's store (`llmbridge.pool_state`), beside the database; recording off or on.
        One that cannot be opened is reported, and the bridge runs without it. Offline mode keeps none:
        its stand-in accounts are not the user's."""
        if self.offline is not None:
            return None
        path = state_path(self.config.database)
        try:
            return SqlitePoolStateStore(path)
        except Exception as error:
            log.error("pool state %s cannot be opened (%s): cool-downs and dead accounts are not kept", path, error)
            return None

    def apply(self, config: BridgeConfig) -> str:
        """A reloaded config on the running bridge (`llmbridge.reload`); what changed, in words."""
        assert self.pool is not None and self.bridge is not None and self.http is not None
        keys, _ = load_client_keys(config, self.home)
        for key in keys:
            register_secret(key.key)
        for account in config.accounts:
            register_secret(account.api_key)
            register_secret(account.client_secret)
        providers = [provider_class(a.provider)(a, self.http) for a in config.accounts if a.enabled]
        fresh, removed = self.pool.replace_accounts(providers, config.strategy)
        restart = restart_needed(self.config, config)
        self.config, self.client_keys = config, keys
        self.bridge.config, self.bridge.client_keys = config, keys
        self.bridge.failover.max_attempts = config.max_attempts
        self.bridge.failover.max_wait = config.max_wait_seconds
        self.bridge.failover.first_token_timeout = config.first_token_timeout
        self.pool.affinity_on = config.session_affinity
        self.prober.interval = config.probe_interval
        self.bridge.use_rules(config, keys)
        said = []
        if fresh:
            said.append("accounts added or changed: " + ", ".join(fresh))
        if removed:
            said.append("accounts removed: " + ", ".join(removed))
        if restart:
            said.append("takes effect after a restart: " + ", ".join(restart))
        return "; ".join(said)

    async def exchange_done(self, record: ExchangeRecord) -> None:
        log.info(console_line(record))
        if self.recorder is not None:
            self.recorder.submit(record)

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Ends what is in flight, then closes the recorder: every exchange that began is recorded.

        Streams in the relay are cancelled and awaited; closing the HTTP client ends the upstream
        reads of whole (non-stream) answers, which then finish and are submitted; only then is the
        recorder flushed and closed (submitting to a closed recorder would drop the record)."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self._probing is not None:
            self._probing.cancel()
        await self.relay.close()
        if self.http is not None:
            await self.http.aclose()
        await self._drain(drain_timeout)
        if self.recorder is not None:
            self.recorder.close()
        if self.state_store is not None:
            self.state_store.close()
        if self.shared is not None:
            share_refreshes(None)
            await self.shared.aclose()
        if self.offline is not None:
            log.info("offline mode: %s", self.offline.describe())
            await self.offline.close()

    async def _drain(self, timeout: float) -> None:
        """Waits (bounded) until no account has a request in flight: each in-flight answer releases
        its account just before it submits its record, with no await in between."""
        states = self.pool.states if self.pool is not None else []
        deadline = time.monotonic() + timeout
        while any(s.in_flight for s in states) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        busy = {s.name: s.in_flight for s in states if s.in_flight}
        if busy:
            log.error(
                "stopping with %d exchanges still in flight after %.0fs (%s); they are not recorded",
                sum(busy.values()),
                timeout,
                ", ".join(f"{k}: {v}" for k, v in busy.items()),
            )

    def banner(self, host: str, port: int) -> str:
        base = f"http://{host}:{port}"
        lines = [
            f"llmbridge {__version__} is listening (local only)"
            if host in ("127.0.0.1", "localhost", "::1")
            else f"llmbridge {__version__} is listening on {host}: reachable from other machines",
            *door_lines(base),
        ]
        if self.generated_key:
            lines.append(f"  API key:   {self.generated_key}   (generated; kept in {self.home / 'client_key'})")
        else:
            labels = ", ".join(k.label for k in self.client_keys)
            lines.append(f"  API keys:  from the config ({labels})")
        if self.offline is not None:
            count, folder = len(self.offline.fixtures), self.offline.directory
            lines.append(f"  Offline:   answering from {count} recordings in {folder}")
        lines.append(
            f"  Config:    {self.config_path}"
            if self.config_path is not None
            else "  Config:    none found; defaults (see README, 'Configuration', for bridge.toml)"
        )
        lines += self._account_lines()
        database = self.config.database if self.recorder is not None else "off"
        if self.offline is not None:
            database = "off (offline mode: the answers are recordings)"
        lines.append(f"  Recording: {database}")
        return "\n".join(lines)

    def _account_lines(self) -> list[str]:
        accounts = [a for a in self.config.accounts if a.enabled]
        if not accounts:
            return [
                "  Accounts:  none. Add one: llmbridge login gemini-cli (or qwen, or kiro to import a Kiro",
                "             login), or list accounts in bridge.toml (README, 'Account keys'). Until then",
                "             every model request answers 503; scripts/serve --replay replay/demo runs offline.",
            ]
        where = "discovered from standard credential files" if self.discovered else "from the config"
        if self.offline is not None:
            where = "stand-ins pointed at the recordings"
        lines = [f"  Accounts ({where}):"]
        for provider in self.pool.states if self.pool is not None else []:
            lines.append(f"    - {provider.provider.describe()}")
        return lines


class SecretFilter(logging.Filter):
    """Replaces registered secret values in every log record a handler emits (console, files)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_secrets(message)
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def door_lines(base: str) -> list[str]:
    """One banner line per registered door: its name, the base URL its clients use, its main endpoints."""
    doors = load_formats()
    width = max(len(door.base_path) for door in doors) + 3
    return [
        f"  {door.title + ':':<10} {base + door.base_path:<{len(base) + width}}({', '.join(door.headline)})"
        for door in doors
    ]


def console_line(record: ExchangeRecord) -> str:
    """One line per exchange; no tokens, keys or prompt text. No time stamp: the console log adds one."""
    ttfb = f"{record.ttfb_ms:.0f}ms" if record.ttfb_ms is not None else "-"
    duration = f"{record.duration_ms:.0f}ms" if record.duration_ms is not None else "-"
    parts = [
        record.client_format or "-",
        record.model_requested or "-",
        record.account or "-",
        str(record.status or "-"),
        f"{duration} ttfb {ttfb}",
    ]
    if len(record.attempts) > 1:
        parts.append(f"attempts {len(record.attempts)}")
    if record.error_kind:
        parts.append(f"{record.error_kind}: {redact_text(record.error_message or '')}")
    if record.client_disconnected:
        parts.append("client disconnected")
    return "  ".join(parts)


__all__ = ["BridgeApp", "ConfigError", "find_config"]
