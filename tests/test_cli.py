"""The `llmbridge` command: logs, db prune/migrate, export-fixture, browse, and where --db comes from."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from llmbridge import cli
from llmbridge.recorder import Recorder
from tests.fakes.recordings import conversation, exchange, user

DAY = 86400


def record_all(path: Path, records) -> None:
    rec = Recorder(path)
    rec.open()
    for record in records:
        rec.submit(record)
    rec.flush()
    rec.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "rec" / "bridge.db"
    failed = exchange([user("boom")], "", account="acct-bad", status=429)
    failed.error_kind = "rate_limited"
    record_all(path, [*conversation(3, started=time.time() - 60), failed])
    return path


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli.main, list(args), input=input, catch_exceptions=False)


def test_logs_prints_one_line_per_recent_exchange(db_path: Path) -> None:
    result = run("logs", "--db", str(db_path), "-n", "3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert "openai" in lines[0] and "test-model-served" in lines[0] and "acct-1" in lines[0]
    assert " 200 " in lines[0] and "40ms" in lines[0] and "ttfb" in lines[0] and "tok 30>2" in lines[0]
    assert "429" in lines[-1] and "acct-bad" in lines[-1] and "! rate_limited" in lines[-1]


def test_logs_follow_prints_new_rows_and_exits_cleanly_on_ctrl_c(db_path: Path, monkeypatch) -> None:
    polls = []

    def fake_sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:  # a new exchange arrives while we wait
            late = exchange([user("late")], account="acct-late")
            record_all(db_path, [late])
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", fake_sleep)
    result = run("logs", "--db", str(db_path), "-n", "1", "-f")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and "acct-bad" in lines[0] and "acct-late" in lines[1]


def test_logs_on_a_missing_database_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["logs", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert "no recordings database at" in result.output and len(result.output.strip().splitlines()) == 1


def test_db_migrate_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "new" / "bridge.db"
    first = run("db", "migrate", "--db", str(path))
    assert first.exit_code == 0 and "applied m001_initial, m002_parts_fts, m003_parts_fts_porter" in first.output
    second = run("db", "migrate", "--db", str(path))
    assert "schema up to date" in second.output


def test_db_prune_uses_days_or_the_configured_retention(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    record_all(path, [*conversation(2, started=time.time() - 10 * DAY), exchange([user("new")])])
    result = run("db", "prune", "--db", str(path), "--days", "30")
    assert "deleted 0 exchanges" in result.output
    config = tmp_path / "bridge.toml"
    config.write_text(f'database = "{path}"\nretention_days = 5\n')
    result = run("--config", str(config), "db", "prune", "--vacuum")
    assert result.exit_code == 0 and "deleted 2 exchanges" in result.output and "(vacuumed)" in result.output
    assert sqlite_utils.Database(path)["exchanges"].count == 1


def test_db_prune_without_retention_explains(tmp_path: Path, db_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["db", "prune", "--db", str(db_path)])
    assert result.exit_code == 1 and "pass --days N or set retention_days" in result.output


def test_default_db_comes_from_bridge_toml_in_the_working_directory(db_path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bridge.toml").write_text(f'database = "{db_path}"\n')
    result = run("logs", "-n", "1")
    assert result.exit_code == 0 and "acct-bad" in result.output


def test_default_db_without_config_is_recordings_bridge_db_in_the_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path / "home"))
    result = run("db", "migrate")
    assert result.exit_code == 0 and (tmp_path / "home" / "recordings" / "bridge.db").is_file()
    assert not (tmp_path / "recordings").exists()  # never the working directory


def test_config_in_the_home_is_found_from_any_directory(tmp_path: Path, monkeypatch) -> None:
    """`llmbridge logs` run elsewhere reads the same config, and its relative `database` is relative to
    the config file, not to where the command runs."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    (home / "bridge.toml").write_text('database = "rec/bridge.db"\n')
    failed = exchange([user("boom")], "", account="acct-far", status=500)
    record_all(home / "rec" / "bridge.db", [failed])
    monkeypatch.setenv("LLMBRIDGE_HOME", str(home))
    monkeypatch.chdir(elsewhere)
    result = run("logs", "-n", "1")
    assert result.exit_code == 0 and "acct-far" in result.output


def test_version() -> None:
    from llmbridge import __version__

    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output and __version__ != "0+unknown"


def test_key_prints_the_generated_key_once_made(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    first, second = run("key"), run("key")
    assert first.exit_code == 0 and first.output.startswith("sk-llmbridge-") and first.output == second.output
    assert (tmp_path / "home" / "client_key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "bridge.toml").write_text('api_keys = ["sk-mine-0123456789"]\n')
    configured = CliRunner().invoke(cli.main, ["key"])
    assert configured.exit_code == 1 and "sets api_keys" in configured.output


def test_misspelled_setting_suggests_the_right_one(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text("retention_day = 3\n")
    result = CliRunner().invoke(cli.main, ["--config", str(config), "logs"])
    assert "unknown setting 'retention_day'; did you mean 'retention_days'?" in result.output
    config.write_text('[[accounts]]\nname = "a"\nprovider = "openai"\napi_kye = "k"\n')
    result = CliRunner().invoke(cli.main, ["--config", str(config), "logs"])
    assert "unknown setting 'accounts.0.api_kye'; did you mean 'api_key'?" in result.output
    config.write_text('[[accounts]]\nname = "a"\nprovider = "gemini_cli"\n')
    result = CliRunner().invoke(cli.main, ["--config", str(config), "logs"])
    assert "did you mean 'gemini-cli'?" in result.output


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text("recrod = false\n")
    result = CliRunner().invoke(cli.main, ["--config", str(config), "logs"])
    assert result.exit_code == 1 and "unknown setting 'recrod'" in result.output


def test_export_fixture_writes_into_replay(db_path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    exchange_id = next(sqlite_utils.Database(db_path).query("SELECT id FROM exchanges LIMIT 1"))["id"]
    result = run("export-fixture", exchange_id, "--db", str(db_path))
    assert result.exit_code == 0, result.output
    written = Path(result.output.strip())
    assert written.parent == Path("replay") and json.loads(written.read_text())["exchange_id"] == exchange_id
    missing = CliRunner().invoke(cli.main, ["export-fixture", "nope", "--db", str(db_path)])
    assert missing.exit_code == 1 and "no exchange 'nope'" in missing.output


def test_browse_writes_metadata_and_starts_datasette_on_localhost(db_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda command, **kw: calls.append(command) or 0)
    result = run("browse", "--db", str(db_path), "--port", "8123")
    assert result.exit_code == 0
    (command,) = calls
    assert command[1:4] == ["-m", "datasette", "serve"] and str(db_path) in command
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    metadata = Path(command[command.index("--metadata") + 1])
    assert metadata == db_path.parent / "metadata.yml" and "Tokens per model per day" in metadata.read_text()


def test_browse_on_a_missing_database_names_the_path_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda command, **kw: calls.append(command) or 0)
    typo = tmp_path / "recordings" / "brigde.db"
    result = CliRunner().invoke(cli.main, ["browse", "--db", str(typo)])
    assert result.exit_code == 1 and not calls
    assert f"no recordings database at {typo}" in result.output and len(result.output.strip().splitlines()) == 1
    assert not typo.exists() and not typo.parent.exists()


def test_browse_on_a_busy_port_says_which_option_to_change(db_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda command, **kw: calls.append(command) or 0)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli.main, ["browse", "--db", str(db_path), "--port", str(port)])
    assert result.exit_code == 1 and not calls
    (line,) = result.output.strip().splitlines()
    assert f"port {port} on 127.0.0.1 is already in use" in line and f"--port {port + 1}" in line
    assert "Traceback" not in result.output and "http://" not in result.output  # no URL printed first


def test_every_command_is_documented_in_the_cli_docstring() -> None:
    documented = cli.__doc__ or ""
    for name, command in cli.main.commands.items():
        subcommands = getattr(command, "commands", {})
        for full in [f"{name} {sub}" for sub in subcommands] or [name]:
            assert f"llmbridge [--config PATH] {full}" in documented, full


def test_the_accounts_table_shows_pinned_conversations_and_the_last_probe_of_an_account_out():
    base = {"provider": "openai", "in_flight": 0, "requests_today": 3, "cooling_until": None, "last_probe": None}
    table = cli.format_accounts(
        [
            {**base, "name": "up", "state": "healthy", "reason": None, "pinned_conversations": 2},
            {**base, "name": "down", "state": "dead", "reason": "dead: the key was revoked", "pinned_conversations": 0,
             "last_probe": {"at": "2026-12-03T15:00:00+00:00", "result": "account_unusable: refused"}},
        ]
    )  # fmt: skip
    lines = table.splitlines()
    assert lines[0].split()[-2:] == ["PINNED", "UNTIL"] and lines[1].split()[-2:] == ["2", "-"]
    assert lines[2].split()[:3] == ["down", "openai", "dead"]
    assert lines[3].strip() == "dead: the key was revoked"
    assert lines[4].strip() == "last probe 2026-12-03T15:00:00+00:00: account_unusable: refused"
