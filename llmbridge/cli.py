"""The `llmbridge` command: start the bridge, browse and maintain the recordings database, replay fixtures.

    llmbridge [--config PATH] serve [--replay DIR] [MITMDUMP_ARGS...]
    llmbridge [--config PATH] key
    llmbridge [--config PATH] browse [--db PATH] [--port N] [--host ADDR] [--allow-host NAME]... [--login]
    llmbridge [--config PATH] logs [--db PATH] [-n N] [-f]
    llmbridge [--config PATH] db prune [--days N] [--vacuum] [--db PATH]
    llmbridge [--config PATH] db migrate [--db PATH]
    llmbridge [--config PATH] export-fixture EXCHANGE_ID [--attempt N] [--out DIR] [--db PATH]
    llmbridge [--config PATH] replay FIXTURE_OR_DIR... [--port N]
    llmbridge [--config PATH] accounts [--url URL] [--json]
    llmbridge [--config PATH] captures [--db PATH]
    llmbridge [--config PATH] export-capture SESSION_OR_SOURCE --out DIR [--provider NAME] [--db PATH]
    llmbridge [--config PATH] drift [--official CAPTURE] [--bridge CAPTURE] [--db PATH]
    llmbridge [--config PATH] login gemini-cli [--no-browser] [--project ID] [LOGIN OPTIONS]
    llmbridge [--config PATH] login qwen [--no-browser] [LOGIN OPTIONS]
    llmbridge [--config PATH] login kiro [--from ide|cli] [--source PATH] [LOGIN OPTIONS]

LOGIN OPTIONS: --name NAME, --out PATH, --force, --print, and the endpoint overrides (--auth-url,
--token-url, --device-url, --base-url, or LLMBRIDGE_LOGIN_* in the environment).

`--db` defaults to the `database` of the bridge config in force (`--config`, else the file
`llmbridge.config.find_config` finds, else `recordings/bridge.db` in the home). Every failure is one
line on stderr and exit status 1.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
from sqlite_utils import Database

from llmbridge import __version__
from llmbridge.config import DEFAULT_HOST, DEFAULT_PORT, BridgeConfig, data_dir, find_config, load_config
from llmbridge.errors import ConfigError
from llmbridge.recorder.export import ExportError, export_fixture
from llmbridge.recorder.metadata import write_metadata
from llmbridge.recorder.prune import prune
from llmbridge.recorder.query import exchanges_after, format_line, open_existing, recent_exchanges
from llmbridge.recorder.schema import connect, migrate

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Recordings database (default: `database` from the bridge config).",
)


def _config_path(ctx: click.Context) -> Path | None:
    return find_config(ctx.obj.get("config_path") if ctx.obj else None)


def _config(ctx: click.Context) -> BridgeConfig:
    from llmbridge.providers.base import check_providers  # the registry imports every provider: only when needed

    try:
        config = load_config(_config_path(ctx))
        check_providers(config.accounts)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    return config


def _database(ctx: click.Context, db_path: Path | None) -> Path:
    return db_path if db_path is not None else Path(_config(ctx).database)


def _open_existing(path: Path) -> Database:
    try:
        return open_existing(path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


@click.group()
@click.version_option(__version__, "--version", "-V", prog_name="llmbridge")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Bridge config file (default: ./bridge.toml, else bridge.toml in the home).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """llmbridge: an OpenAI/Anthropic/Gemini-compatible bridge that records every exchange."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--replay",
    "replay_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Offline mode: answer from this folder of replay fixtures (e.g. replay/demo), with no accounts.",
)
@click.argument("mitmdump_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def serve(ctx: click.Context, replay_dir: Path | None, mitmdump_args: tuple[str, ...]) -> None:
    """Start the bridge: mitmdump with the addon and the safe defaults on its command line, so that
    only the configured address is ever bound. Extra arguments go to mitmdump
    (e.g. --set listen_port=9000)."""
    from llmbridge.launch import build, port_problem

    if replay_dir is not None:
        if not replay_dir.is_dir():
            raise click.ClickException(f"--replay {replay_dir}: no such folder (e.g. --replay replay/demo)")
        mitmdump_args = ("--set", f"bridge_replay={replay_dir.resolve()}", *mitmdump_args)

    mitmdump = Path(sys.executable).parent / "mitmdump"
    if not mitmdump.is_file():
        raise click.ClickException(
            f"mitmdump not found next to {sys.executable}; install llmbridge's dependencies (scripts/bootstrap)"
        )
    launch = build(mitmdump, list(mitmdump_args), ctx.obj.get("config_path"))
    problem = port_problem(launch.host, launch.port)
    if problem:
        raise click.ClickException(problem)
    sys.stdout.flush()
    os.execv(launch.argv[0], launch.argv)


@main.command()
@click.pass_context
def key(ctx: click.Context) -> None:
    """Print the client API key the bridge generated (e.g. export OPENAI_API_KEY=$(llmbridge key))."""
    from llmbridge.app import load_client_keys

    config = _config(ctx)
    if config.client_keys():
        raise click.ClickException(f"the config ({_config_path(ctx)}) sets api_keys: use one of those")
    _, generated = load_client_keys(config, data_dir())
    click.echo(generated)


@main.command()
@db_option
@click.option("--port", default=8001, show_default=True, help="Port for Datasette.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Beyond loopback (0.0.0.0, a LAN address) the sign-in is always required.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Another Host name to answer besides 127.0.0.1, localhost and [::1] (repeatable).",
)
@click.option(
    "--login", is_flag=True, help="Require the one-time sign-in URL Datasette prints (always on beyond loopback)."
)
@click.pass_context
def browse(
    ctx: click.Context, db_path: Path | None, port: int, host: str, allow_hosts: tuple[str, ...], login: bool
) -> None:
    """Open the recordings in Datasette (http://127.0.0.1:PORT/): recent exchanges, search, one screen per
    exchange, usage queries. Only requests whose Host is a local name (or one given with --allow-host)
    are answered. The database must exist (the bridge creates it when it records)."""
    from llmbridge.recorder.browse import (
        HOSTS_ENV,
        PLUGINS_DIR,
        TEMPLATES_DIR,
        host_name,
        is_loopback,
        is_wildcard,
        port_problem,
    )

    names = list(allow_hosts)
    if not is_loopback(host):
        login = True  # beyond this machine, never without the sign-in
        if is_wildcard(host) and not names:
            raise click.ClickException(
                f"--host {host} listens on every address, but only local Host names are answered: name the "
                "host names or addresses other machines will use with --allow-host NAME (repeatable)"
            )
        if not is_wildcard(host):
            names.append(host)
    path = _database(ctx, db_path)
    _open_existing(path).conn.close()  # a typo in --db is an error, not a new empty database
    _migrate(path)  # an older database gets the current schema (and its search index rebuilt)
    problem = port_problem(host, port)
    if problem:
        raise click.ClickException(problem)
    metadata = write_metadata(path, login=login)
    command = [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        str(path),
        "--metadata",
        str(metadata),
        "--plugins-dir",
        PLUGINS_DIR,
        "--template-dir",
        TEMPLATES_DIR,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if login:
        command.append("--root")
    env = dict(os.environ, **{HOSTS_ENV: ",".join(names)})
    shown = "127.0.0.1" if is_wildcard(host) else host_name(host)
    click.echo(f"Recordings on http://{shown}:{port}/ (recent exchanges and search; Ctrl-C stops)", err=True)
    if login:
        click.echo(
            "Sign in with the one-time URL Datasette prints below (it sets a cookie for this browser).", err=True
        )
    try:
        code = subprocess.call(command, env=env)
    except KeyboardInterrupt:
        code = 0
    ctx.exit(code)


@main.command()
@db_option
@click.option("-n", "count", default=20, show_default=True, help="How many recent exchanges to print.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new exchanges as they are written.")
@click.option("--interval", default=1.0, hidden=True, help="Seconds between polls with --follow.")
@click.pass_context
def logs(ctx: click.Context, db_path: Path | None, count: int, follow: bool, interval: float) -> None:
    """Print recent exchanges, one line each: time, format, model, account, status, duration, ttfb,
    tokens (input>output, ~ when estimated)."""
    db = _open_existing(_database(ctx, db_path))
    last = 0
    for row in recent_exchanges(db, count):
        click.echo(format_line(row))
        last = row["rowid"]
    if not follow:
        return
    try:
        while True:
            time.sleep(interval)
            for row in exchanges_after(db, last):
                click.echo(format_line(row))
                last = row["rowid"]
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --follow ends


@main.group()
def db() -> None:
    """Maintain the recordings database."""


@db.command("prune")
@db_option
@click.option(
    "--days",
    type=click.IntRange(min=0),
    default=None,
    help="Delete exchanges older than this many days (default: retention_days from the config).",
)
@click.option("--vacuum", is_flag=True, help="VACUUM afterwards to give the space back to the disk.")
@click.pass_context
def db_prune(ctx: click.Context, db_path: Path | None, days: int | None, vacuum: bool) -> None:
    """Delete old exchanges, their attempts, and messages and blobs no longer used."""
    if days is None:
        days = _config(ctx).retention_days
    if days is None:
        raise click.ClickException("no retention set: pass --days N or set retention_days in the config")
    result = prune(_open_existing(_database(ctx, db_path)), days, vacuum=vacuum)
    click.echo(result.describe() + (" (vacuumed)" if vacuum else ""))


@db.command("migrate")
@db_option
@click.pass_context
def db_migrate(ctx: click.Context, db_path: Path | None) -> None:
    """Create the database or bring its schema up to date (safe to run again)."""
    path = _database(ctx, db_path)
    done = _migrate(path)
    click.echo(f"{path}: applied {', '.join(done)}" if done else f"{path}: schema up to date")


def _migrate(path: Path) -> list[str]:
    """Creates or migrates the database (the recorder's own schema); the names applied now."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        database = connect(path)
        try:
            return migrate(database)
        finally:
            database.conn.close()
    except (sqlite3.Error, OSError) as e:
        raise click.ClickException(f"cannot open recordings database {path}: {e}") from None


@main.command("export-fixture")
@click.argument("exchange_id")
@db_option
@click.option("--attempt", type=int, default=None, help="Which attempt (1-based; default: the last).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("replay"),
    show_default=True,
    help="Directory for the fixture file.",
)
@click.pass_context
def export_fixture_command(
    ctx: click.Context, exchange_id: str, db_path: Path | None, attempt: int | None, out_dir: Path
) -> None:
    """Write one recorded exchange as a replay fixture (translated request, raw response, redacted)."""
    database = _open_existing(_database(ctx, db_path))
    try:
        path = export_fixture(database, exchange_id, out_dir, attempt)
    except ExportError as e:
        raise click.ClickException(str(e)) from None
    click.echo(str(path))


@main.command("replay")
@click.argument("fixtures", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--port", type=int, default=0, show_default=True, help="Port on 127.0.0.1 (0: any free one).")
def replay_command(fixtures: tuple[Path, ...], port: int) -> None:
    """Serve recorded upstream answers on 127.0.0.1: point an account's base_url at the printed URL."""
    import asyncio

    from llmbridge.replay import serve_forever

    try:
        asyncio.run(serve_forever(list(fixtures), port))
    except KeyboardInterrupt:
        pass


@main.command("accounts")
@click.option(
    "--url",
    default=f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
    show_default=True,
    help="The running bridge (its listen_host and listen_port).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status JSON as the bridge answers it.")
@click.pass_context
def accounts_command(ctx: click.Context, url: str, as_json: bool) -> None:
    """Each account's state in the running bridge (GET /llmbridge/status, with the client key)."""
    import json

    import httpx

    from llmbridge.app import load_client_keys

    config = _config(ctx)
    keys = config.client_keys()
    key = keys[0].key if keys else load_client_keys(config, data_dir())[1]
    try:
        response = httpx.get(f"{url.rstrip('/')}/llmbridge/status", headers={"authorization": f"Bearer {key}"})
    except httpx.HTTPError as error:
        raise click.ClickException(f"no bridge answers at {url} ({error}); start it with scripts/serve") from None
    if response.status_code != 200:
        raise click.ClickException(f"the bridge at {url} answered {response.status_code}: {response.text[:300]}")
    accounts = response.json()["accounts"]
    if as_json:
        click.echo(json.dumps(accounts, indent=2))
        return
    click.echo(format_accounts(accounts))


def format_accounts(accounts: list[dict[str, object]]) -> str:
    """The accounts as a table: one line each, then (when not healthy) the reason and the last
    health probe on the next lines."""
    if not accounts:
        return "no accounts are configured"
    rows = [("ACCOUNT", "PROVIDER", "STATE", "IN FLIGHT", "TODAY", "PINNED", "UNTIL")]
    for a in accounts:
        until = str(a["cooling_until"] or "-")
        counts = str(a["in_flight"]), str(a["requests_today"]), str(a.get("pinned_conversations", "-"))
        rows.append((str(a["name"]), str(a["provider"]), str(a["state"]), *counts, until))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        reason = accounts[i - 1]["reason"] if i else None
        if reason:
            lines.append(f"    {reason}")
            lines += _probe_line(accounts[i - 1].get("last_probe"))
    return "\n".join(lines)


def _probe_line(probe: object) -> list[str]:
    """`last probe <time>: <result>` for an account out of rotation that was probed."""
    if not isinstance(probe, dict):
        return []
    return [f"    last probe {probe.get('at')}: {probe.get('result')}"]


def _add_commands_kept_apart() -> None:
    from llmbridge.capture_cli import COMMANDS
    from llmbridge.login_cli import login

    for command in [*COMMANDS, login]:
        main.add_command(command)


_add_commands_kept_apart()
