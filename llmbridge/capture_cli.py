"""`llmbridge captures`, `llmbridge export-capture` and `llmbridge drift`: the capture-mode commands
(kept apart from `llmbridge.cli`, which adds them to the `llmbridge` group)."""

from __future__ import annotations

from pathlib import Path

import click

from llmbridge.capture import Call, export_capture, load_fixture_calls, load_session, sessions
from llmbridge.config import find_config, load_config
from llmbridge.drift import compare
from llmbridge.errors import ConfigError

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Database holding the captures (default: `database` from the bridge config).",
)


def _db(ctx: click.Context, db_path: Path | None) -> Path:
    if db_path is not None:
        return db_path
    try:
        return Path(load_config(find_config(ctx.obj.get("config_path") if ctx.obj else None)).database)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def _calls(db: Path, selector: str) -> list[Call]:
    """A capture folder (exported fixtures), or a session id / source label in the database."""
    folder = Path(selector)
    if folder.is_dir():
        return load_fixture_calls(folder)
    if not db.is_file():
        raise click.ClickException(f"{selector!r} is not a folder and the database {db} does not exist")
    try:
        return load_session(db, selector)
    except LookupError as e:
        raise click.ClickException(str(e)) from None


@click.command("captures")
@db_option
@click.pass_context
def captures_command(ctx: click.Context, db_path: Path | None) -> None:
    """List the capture runs in the database (session, source, client, calls)."""
    db = _db(ctx, db_path)
    if not db.is_file():
        raise click.ClickException(f"database {db} does not exist")
    for session, source, client, count in sessions(db):
        click.echo(f"{session}  {source:<10} {client or '-':<24} {count} calls")


@click.command("export-capture")
@click.argument("selector")
@db_option
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Folder for the fixtures.")
@click.option("--provider", default="gemini-cli", show_default=True, help="Provider the fixtures belong to.")
@click.pass_context
def export_capture_command(
    ctx: click.Context, selector: str, db_path: Path | None, out_dir: Path, provider: str
) -> None:
    """Write a capture run (session id, or source label: its latest run) as replay fixtures."""
    try:
        written = export_capture(_db(ctx, db_path), selector, out_dir, provider)
    except LookupError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{len(written)} fixtures in {out_dir}")


@click.command("drift")
@db_option
@click.option("--official", default="captured", show_default=True, help="The official client's capture.")
@click.option("--bridge", default="bridge", show_default=True, help="The bridge's upstream traffic, captured.")
@click.pass_context
def drift_command(ctx: click.Context, db_path: Path | None, official: str, bridge: str) -> None:
    """Compare the bridge's upstream requests with the official client's for the same conversation.

    OFFICIAL and BRIDGE are capture folders (export-capture) or, in the database, session ids or
    source labels (their latest run). Exit status 1 on any undocumented difference."""
    db = _db(ctx, db_path)
    report = compare(_calls(db, official), _calls(db, bridge), official, bridge)
    click.echo(report.text())
    ctx.exit(1 if report.drift else 0)


COMMANDS = [captures_command, export_capture_command, drift_command]
