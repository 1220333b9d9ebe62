"""What every `llmbridge login PROVIDER` shares: PKCE, the loopback redirect server, reading a pasted
code, progress on stderr, writing the credential file, and adding the account to the config.

The provider modules (`llmbridge.providers.<name>.login`) hold each vendor's flow and `llmbridge.cli`
the `login` commands (whose endpoint options also read `LLMBRIDGE_LOGIN_*_URL`); this module never
speaks a vendor's protocol. Everything here runs in the foreground of one command: a KeyboardInterrupt
anywhere leaves nothing behind (credential files are written once, atomically, at the very end).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import secrets
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, TextIO
from urllib.parse import parse_qs, urlsplit

from llmbridge.config import CONFIG_NAME, AccountConfig, data_dir, find_config, home_dir, load_config
from llmbridge.credentials import write_json_atomic
from llmbridge.errors import ConfigError

CALLBACK_PATH = "/oauth2callback"
# The page the browser shows after the redirect. It cannot know yet whether the code will be
# accepted (the state check and the token exchange come after), so it points at the terminal.
DONE_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>llmbridge</title>"
    b"<p>llmbridge received the sign-in answer. The terminal says whether the login succeeded; "
    b"you can close this tab.</p>"
)


class LoginError(Exception):
    """A login that cannot finish; the message says what happened and what to do."""


# --- PKCE (RFC 7636) ------------------------------------------------------------------------------


def pkce_pair(verifier_bytes: int = 32) -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), both base64url without padding."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(verifier_bytes)).rstrip(b"=").decode()
    return verifier, s256(verifier)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- the loopback redirect ------------------------------------------------------------------------


@dataclass
class Callback:
    """What the browser brought back to the loopback server: the query of the redirect."""

    params: dict[str, str] = field(default_factory=dict)


class LoopbackRedirect:
    """A one-shot HTTP server on 127.0.0.1 that receives the OAuth redirect (`/oauth2callback?code=..&state=..`).

    Runs in a thread so the browser (or the test's fake browser) can be driven from this one. The first
    request to the callback path ends it; anything else is answered 404 and ignored (a browser asks
    for /favicon.ico)."""

    def __init__(self, port: int = 0) -> None:
        self.callback = Callback()
        self._done = threading.Event()
        # threaded: a browser's idle speculative connection must not hold up the real redirect
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{CALLBACK_PATH}"

    def __enter__(self) -> LoopbackRedirect:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        """The redirect's query parameters; LoginError when none arrives within `timeout` seconds.
        Waits in short slices so Ctrl-C is seen at once."""
        waited = 0.0
        while not self._done.wait(0.2):
            waited += 0.2
            if waited >= timeout:
                raise LoginError(f"no sign-in arrived within {int(timeout)} s; run the command again")
        return self.callback.params

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass  # the query holds the authorization code: never on the console

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                if parts.path != CALLBACK_PATH or owner._done.is_set():
                    self.send_error(404)
                    return
                owner.callback.params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(DONE_PAGE)))
                self.end_headers()
                self.wfile.write(DONE_PAGE)
                owner._done.set()

        return Handler


def code_from_redirect(params: dict[str, str], state: str, vendor: str) -> str:
    """The authorization code of a redirect whose `state` matches; LoginError otherwise."""
    if params.get("error"):
        description = params.get("error_description") or "no details given"
        raise LoginError(f"{vendor} refused the sign-in: {params['error']} ({description})")
    if params.get("state") != state:
        raise LoginError(
            "the sign-in answer carries the wrong state (it belongs to another login attempt, or was forged); "
            "nothing was saved: run the command again"
        )
    code = params.get("code")
    if not code:
        raise LoginError(f"{vendor}'s answer has no authorization code; run the command again")
    return code


def code_from_paste(text: str, state: str, vendor: str) -> str:
    """What a user pasted after signing in elsewhere: the bare code, or the whole redirect URL (whose
    state is then checked)."""
    text = text.strip()
    if not text:
        raise LoginError("no authorization code was entered; run the command again")
    if "://" in text or text.startswith("/") or text.startswith("?"):
        params = {k: v[0] for k, v in parse_qs(urlsplit(text).query).items()}
        if "state" not in params:
            if "error" in params:
                return code_from_redirect(params, state, vendor)
            code = params.get("code")
            if not code:
                raise LoginError("the pasted URL has no code= parameter; paste the code or the whole URL")
            return code
        return code_from_redirect(params, state, vendor)
    return text


# --- progress -------------------------------------------------------------------------------------


class Progress:
    """A one-line spinner on stderr while waiting on a person ("waiting for approval | 12 s").
    On a non-terminal stderr it prints a dot per tick instead, so logs stay readable."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self._frames = itertools.cycle("|/-\\")
        self._ticks = 0
        self._width = 0  # of the spinner line, to blank it at the end

    def tick(self, elapsed: float, note: str = "") -> None:
        self._ticks += 1
        if self.stream.isatty():
            extra = f" ({note})" if note else ""
            line = f"{self.label} {next(self._frames)} {int(elapsed)} s{extra}"
            self.stream.write("\r" + line.ljust(self._width))
            self._width = max(self._width, len(line))
        else:
            self.stream.write("." if self._ticks > 1 else f"{self.label} .")
        self.stream.flush()

    def end(self, message: str) -> None:
        if self._ticks:
            self.stream.write("\r" + " " * self._width + "\r" if self.stream.isatty() else "\n")
        self.stream.write(message + "\n")
        self.stream.flush()


# --- the credential file --------------------------------------------------------------------------


def check_target(path: Path, force: bool, provider: str) -> None:
    """Refuse before any sign-in to replace an existing login the user did not ask to replace."""
    if path.exists() and not force:
        raise LoginError(
            f"{path} already holds a login; pass --out PATH to log in another {provider} account beside it, "
            "or --force to replace it"
        )


def save_credentials(path: Path, data: dict[str, Any]) -> None:
    """Written once, whole, mode 0600 (`llmbridge.credentials.write_json_atomic`)."""
    write_json_atomic(path, data)


def bridge_credentials_path(account_name: str) -> Path:
    """Where a login that has no official file of its own is kept: the bridge's data directory."""
    return data_dir() / "credentials" / f"{account_name}.json"


# --- the config -----------------------------------------------------------------------------------


@dataclass
class AddedAccount:
    config_path: Path
    name: str
    created_config: bool = False
    already: bool = False  # the config already had an account on this credential file
    same_login: str | None = None  # an account of the config on the file this login was imported from


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def account_block(account: dict[str, object]) -> str:
    """The `[[accounts]]` table for an account, keys in the given order, unset values left out."""
    lines = ["[[accounts]]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in account.items() if value is not None]
    return "\n".join(lines) + "\n"


def unused_name(wanted: str, taken: set[str]) -> str:
    if wanted not in taken:
        return wanted
    return next(f"{wanted}-{n}" for n in itertools.count(2) if f"{wanted}-{n}" not in taken)


def add_account(
    account: dict[str, object], explicit_config: str | Path | None, imported_from: Path | None = None
) -> AddedAccount:
    """Append the account to the config in force (the file `find_config` finds), or create
    `bridge.toml` in the bridge's home when there is none. A new config lists the accounts the bridge
    discovered until now too, so creating it loses none of them. The result is validated as the bridge
    would before it replaces the file; an account on the same credential file is not added twice.
    `imported_from`: the file an imported login came from; a discovered account on it is replaced by
    the new one (two copies of one login would refresh each other's tokens away)."""
    path = find_config(explicit_config)
    created = path is None or not path.exists()
    target = path or home_dir() / CONFIG_NAME
    if created:
        # discovered from the standard files: kept, except the one this login just (re)wrote
        superseded = {account.get("credentials"), imported_from}
        kept = [a for a in _discovered() if not any(_same_credentials([a], file) for file in superseded)]
        entry = dict(account, name=unused_name(str(account["name"]), {a.name for a in kept}))
        _replace_checked(target, _new_config_text(kept, entry))
        return AddedAccount(target, str(entry["name"]), created_config=True)
    existing = _configured(target)
    same_file = _same_credentials(existing, account.get("credentials"))
    if same_file is not None:
        return AddedAccount(target, same_file.name, already=True)
    entry = dict(account, name=unused_name(str(account["name"]), {a.name for a in existing}))
    old_text = target.read_text(encoding="utf-8")
    _replace_checked(target, old_text.rstrip("\n") + "\n\n" + account_block(entry))
    twin = _same_credentials(existing, imported_from)
    return AddedAccount(target, str(entry["name"]), same_login=twin.name if twin else None)


def _discovered() -> list[AccountConfig]:
    from llmbridge.app import discover_accounts  # the registry imports every provider: only when needed

    return discover_accounts()


def _configured(path: Path) -> list[AccountConfig]:
    try:
        return load_config(path).accounts
    except ConfigError as e:
        raise LoginError(f"cannot add the account: {e}; fix the config first") from None


def _same_credentials(accounts: list[AccountConfig], credentials: object) -> AccountConfig | None:
    if not credentials:
        return None
    wanted = Path(str(credentials)).expanduser().resolve()
    for account in accounts:
        path = account.credentials_path()
        if path is not None and path.resolve() == wanted:
            return account
    return None


def _new_config_text(discovered: list[AccountConfig], entry: dict[str, object]) -> str:
    header = (
        "# llmbridge config, created by `llmbridge login`. Settings: README, 'Configuration'.\n"
        "# The accounts the bridge had discovered from the providers' standard credential files are\n"
        "# listed too: with a config file, only its accounts are used.\n"
    )
    blocks = [account_block({"name": a.name, "provider": a.provider, "credentials": a.credentials}) for a in discovered]
    return header + "\n" + "\n".join([*blocks, account_block(entry)])


def _replace_checked(target: Path, text: str) -> None:
    """Write `text` beside `target`, load it as the bridge would, then move it into place."""
    from llmbridge.providers.base import check_providers

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        check_providers(load_config(tmp).accounts)
        os.replace(tmp, target)
    except ConfigError as e:
        problem = str(e).replace(str(tmp), str(target))  # name the file the user knows, not the draft
        raise LoginError(f"the config with the new account would not load ({problem}); {target} is unchanged") from None
    finally:
        tmp.unlink(missing_ok=True)


# --- the end of every login -----------------------------------------------------------------------


def finish(
    account: dict[str, object],
    credentials: dict[str, Any],
    path: Path,
    *,
    print_only: bool,
    explicit_config: str | Path | None,
    say: Callable[[str], None],
    show_block: Callable[[str], None],
    imported_from: Path | None = None,
) -> None:
    """Write the credential file, then add the account to the config (or print its block)."""
    from llmbridge.providers.base import PROVIDERS

    save_credentials(path, credentials)
    say(f"Saved the login to {path} (mode 0600).")
    if account["provider"] not in PROVIDERS:
        say(f"This build has no {account['provider']!r} provider yet; add this block to the config once it has:")
        show_block(account_block(account))
        return
    if print_only:
        say("Add this block to the config (README, 'Configuration'):")
        show_block(account_block(account))
        return
    try:
        added = add_account(account, explicit_config, imported_from)
    except LoginError as e:
        say(f"The login is saved, but the account could not be added to the config: add this block yourself ({e}).")
        show_block(account_block(account))
        raise
    if added.already:
        say(
            f"The config {added.config_path} already has account {added.name!r} on this file; "
            "it now uses the new login."
        )
    elif added.created_config:
        say(f"Created the config {added.config_path} with account {added.name!r}.")
    else:
        say(f"Added account {added.name!r} to the config {added.config_path}.")
    if added.same_login:
        say(
            f"Remove account {added.same_login!r} from the config: it uses {imported_from}, the same login, and "
            "two copies of one login refresh each other's tokens away."
        )
    if added.created_config:
        say("Restart a bridge that is running without a config file to use it.")
    else:
        say("A bridge running with this config picks the account up by itself (it watches the file).")
