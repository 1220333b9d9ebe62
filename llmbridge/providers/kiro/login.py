"""`llmbridge login kiro`: imports a login made with Kiro's own software into a token file of the bridge.

Two sources, both read-only:

* the Kiro IDE's `~/.aws/sso/cache/kiro-auth-token.json` (camelCase; `authMethod` social or IdC; for
  IdC the client registration in `<clientIdHash>.json` beside it);
* kiro-cli's SQLite store (`~/.local/share/kiro-cli/data.sqlite3`; on macOS under
  `~/Library/Application Support/kiro-cli/`), table `auth_kv`: the token under `kirocli:social:token`
  or `kirocli:odic:token` (older: `codewhisperer:odic:token`), snake_case fields, `expires_at` RFC 3339
  with nanoseconds; the IdC registration under `kirocli:odic:device-registration`; a social login's
  profile ARN may only be in table `state`, key `api.codewhisperer.profile`.

The result is the file `llmbridge.providers.kiro.credentials` reads, standing alone: an IdC login
carries its `clientId` and `clientSecret`, so nothing else of the source directory is needed. The
bridge refreshes its copy by itself from then on; the source is never written.

Kiro's own sign-in (the IDE's social login through `auth.desktop.kiro.dev`) is not reproduced: neither
the IDE nor kiro-cli publishes its source, so it cannot be done faithfully.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmbridge.login import LoginError
from llmbridge.providers.kiro.credentials import (
    DEFAULT_REGION,
    DEFAULT_TOKEN_FILE,
    format_expiry,
    normalize_auth_method,
    parse_expiry,
)

Source = Literal["ide", "cli"]
CLI_TOKEN_KEYS = ("kirocli:social:token", "kirocli:odic:token", "codewhisperer:odic:token")
CLI_REGISTRATION_KEYS = ("kirocli:odic:device-registration", "codewhisperer:odic:device-registration")
EXTERNAL_IDP_KEY = "kirocli:external-idp:token"
CLI_PROFILE_KEY = "api.codewhisperer.profile"
TERMS = (
    "Note: Amazon suspends Kiro accounts whose traffic it flags as coming through proxies; use an account you "
    "accept to risk (README, 'Read this first')."
)
EXTERNAL_IDP = (
    "this is an enterprise external-IdP login (Entra ID, Okta...), which the kiro provider does not support yet; "
    "sign in with a Builder ID, IAM Identity Center or a social login instead"
)


@dataclass
class ImportedLogin:
    source: Path
    token: dict[str, Any]  # the bridge's token file, as written
    warnings: list[str]


def default_cli_store() -> Path:
    if sys.platform == "darwin":
        return Path("~/Library/Application Support/kiro-cli/data.sqlite3").expanduser()
    return Path("~/.local/share/kiro-cli/data.sqlite3").expanduser()


def choose_source(wanted: Source | None, path: Path | None) -> tuple[Source, Path]:
    """The source to import: as asked, else the IDE's file when it exists, else kiro-cli's store."""
    ide, cli = Path(DEFAULT_TOKEN_FILE).expanduser(), default_cli_store()
    if wanted is not None:
        return wanted, path or (ide if wanted == "ide" else cli)
    if path is not None:
        return ("cli" if path.suffix in (".sqlite3", ".sqlite", ".db") else "ide"), path
    if ide.is_file():
        return "ide", ide
    if cli.is_file():
        return "cli", cli
    raise LoginError(
        f"no Kiro login found: neither the Kiro IDE's {ide} nor kiro-cli's {cli} exists; sign in with the "
        "Kiro IDE or `kiro-cli login` first, or name the file with --source PATH"
    )


def import_login(source: Source, path: Path) -> ImportedLogin:
    token = from_ide(path) if source == "ide" else from_cli(path)
    _check_usable(token, path)
    return ImportedLogin(path, token, _warnings(token))


def from_ide(path: Path) -> dict[str, Any]:
    data = _read_json_file(path)
    method = normalize_auth_method(data.get("authMethod"))
    if method == "external_idp" or str(data.get("provider", "")).lower() == "externalidp":
        raise LoginError(f"{path}: {EXTERNAL_IDP}")
    if method not in ("social", "idc"):
        raise LoginError(f"{path}: Kiro authMethod {data.get('authMethod')!r} is not supported (social, IdC)")
    token = _token(
        access=data.get("accessToken"),
        refresh=data.get("refreshToken"),
        expires=data.get("expiresAt"),
        method="social" if method == "social" else "IdC",
        provider=data.get("provider"),
        profile=data.get("profileArn"),
        region=data.get("region"),
    )
    if method != "social":
        token.update(_ide_registration(path, data))
    return token


def _ide_registration(path: Path, data: dict[str, Any]) -> dict[str, str]:
    if data.get("clientId") and data.get("clientSecret"):
        return {"clientId": str(data["clientId"]), "clientSecret": str(data["clientSecret"])}
    client_hash = str(data.get("clientIdHash") or "")
    if not client_hash or "/" in client_hash or "\\" in client_hash:
        raise LoginError(f"{path} is an IdC login without its client registration (no clientIdHash)")
    registration_path = path.parent / f"{client_hash}.json"
    registration = _read_json_file(registration_path)
    if not registration.get("clientId") or not registration.get("clientSecret"):
        raise LoginError(f"{registration_path} holds no clientId and clientSecret")
    return {"clientId": str(registration["clientId"]), "clientSecret": str(registration["clientSecret"])}


def from_cli(path: Path) -> dict[str, Any]:
    rows = _auth_rows(path)
    if EXTERNAL_IDP_KEY in rows and not any(key in rows for key in CLI_TOKEN_KEYS):
        raise LoginError(f"{path}: {EXTERNAL_IDP}")
    key = next((k for k in CLI_TOKEN_KEYS if k in rows), None)
    if key is None:
        raise LoginError(f"{path} holds no kiro-cli login (table auth_kv has none of {', '.join(CLI_TOKEN_KEYS)})")
    data = rows[key]
    social = key.endswith(":social:token")
    token = _token(
        access=data.get("access_token"),
        refresh=data.get("refresh_token"),
        expires=_rfc3339(data.get("expires_at")),
        method="social" if social else "IdC",
        provider=data.get("provider"),  # only when kiro-cli recorded it: the provider does not need it
        profile=data.get("profile_arn") or _cli_profile_arn(path),
        region=data.get("region"),
    )
    if not social:
        token.update(_cli_registration(path, rows, token))
    return token


def _cli_registration(path: Path, rows: dict[str, dict[str, Any]], token: dict[str, Any]) -> dict[str, str]:
    registration = next((rows[k] for k in CLI_REGISTRATION_KEYS if k in rows), None)
    if not registration or not registration.get("client_id") or not registration.get("client_secret"):
        raise LoginError(f"{path} holds an IdC login but no client registration ({CLI_REGISTRATION_KEYS[0]})")
    if not token.get("region") and registration.get("region"):
        token["region"] = str(registration["region"])
    return {"clientId": str(registration["client_id"]), "clientSecret": str(registration["client_secret"])}


def _auth_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The JSON values of table auth_kv, opened read-only (kiro-cli may be running)."""
    if not path.is_file():
        raise LoginError(f"kiro-cli's store {path} does not exist; sign in with `kiro-cli login` first")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT key, value FROM auth_kv").fetchall()
    except sqlite3.Error as e:
        raise LoginError(f"cannot read kiro-cli's store {path}: {e}") from None
    found: dict[str, dict[str, Any]] = {}
    for key, value in rows:
        try:
            parsed = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(parsed, dict):
            found[str(key)] = parsed
    return found


def _cli_profile_arn(path: Path) -> str | None:
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (CLI_PROFILE_KEY,)).fetchone()
        profile = json.loads(row[0]) if row else None
    except (sqlite3.Error, TypeError, ValueError):
        return None
    arn = profile.get("arn") if isinstance(profile, dict) else None
    return arn if isinstance(arn, str) and arn else None


def _rfc3339(value: Any) -> float | None:
    """kiro-cli's `expires_at` (nanoseconds, which Python cannot parse) as epoch seconds."""
    if not isinstance(value, str):
        return parse_expiry(value)
    return parse_expiry(re.sub(r"(\.\d{6})\d+", r"\1", value))


def _token(
    *, access: Any, refresh: Any, expires: Any, method: str, provider: Any, profile: Any, region: Any
) -> dict[str, Any]:
    """The bridge's token file, in the Kiro IDE's field names and order."""
    epoch = expires if isinstance(expires, float) else parse_expiry(expires)
    token: dict[str, Any] = {
        "accessToken": access or "",
        "refreshToken": refresh or "",
        "expiresAt": format_expiry(epoch) if epoch is not None else None,
        "authMethod": method,
        "provider": provider or None,
        "profileArn": profile or None,
        "region": region or DEFAULT_REGION,
    }
    return {key: value for key, value in token.items() if value is not None}


def _check_usable(token: dict[str, Any], path: Path) -> None:
    if not token.get("refreshToken"):
        raise LoginError(
            f"{path} has no refresh token, so the bridge could not keep the login alive; sign in with Kiro again"
        )


def _warnings(token: dict[str, Any]) -> list[str]:
    expires = parse_expiry(token.get("expiresAt"))
    if expires is not None and expires < time.time():
        return ["its access token has expired; the bridge refreshes it on the first request"]
    return []


def _read_json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LoginError(f"{path} does not exist; sign in with the Kiro IDE first") from None
    except (OSError, ValueError) as e:
        raise LoginError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise LoginError(f"{path} does not hold a JSON object")
    return data


def account_entry(name: str, path: Path, token_url: str | None, base_url: str | None) -> dict[str, object]:
    return {"name": name, "provider": "kiro", "credentials": str(path), "base_url": base_url, "token_url": token_url}
