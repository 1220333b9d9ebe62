"""Credential files: written 0600 from the first byte, atomically; what a crashed write leaves is
restored or removed at startup (issue 10)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from llmbridge import credentials
from llmbridge.app import BridgeApp, generated_client_key
from llmbridge.credentials import recover_temp_files, write_json_atomic
from tests.bridge_process import write_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_temp_file_is_0600_from_the_start_and_never_left_behind(tmp_path, monkeypatch):
    path = tmp_path / "creds.json"
    seen: list[tuple[str, int]] = []
    real_replace = os.replace

    def spying_replace(src, dst):
        seen.append((Path(src).name, mode(Path(src))))
        return real_replace(src, dst)

    monkeypatch.setattr(credentials.os, "replace", spying_replace)
    old_umask = os.umask(0)  # the most permissive umask: the file must still be private
    try:
        write_json_atomic(path, {"refresh_token": "rt-1"})
    finally:
        os.umask(old_umask)
    [(name, temp_mode)] = seen
    assert name.startswith(".creds.json.") and name.endswith(".tmp") and temp_mode == 0o600
    assert json.loads(path.read_text()) == {"refresh_token": "rt-1"} and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["creds.json"]


def dead_pid() -> int:
    return 4_194_304 + 7  # above Linux's largest pid_max (2**22): no such process can exist


def test_a_half_written_leftover_of_a_dead_process_is_removed(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text('{"refresh_token": "old"}')
    leftover = tmp_path / f".creds.json.{dead_pid()}.abcd1234.tmp"
    leftover.write_text('{"refresh_token": "ne')  # killed mid-write
    done = recover_temp_files(path)
    assert not leftover.exists() and "removed" in done[0]
    assert json.loads(path.read_text()) == {"refresh_token": "old"}


def test_a_whole_newer_leftover_is_the_rotated_token_and_is_restored(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text('{"refresh_token": "old"}')
    os.utime(path, (1_000_000, 1_000_000))
    leftover = tmp_path / f".creds.json.{dead_pid()}.abcd1234.tmp"
    leftover.write_text('{"refresh_token": "rotated"}')  # killed after fsync, before the rename
    done = recover_temp_files(path)
    assert json.loads(path.read_text()) == {"refresh_token": "rotated"} and "restored" in done[0]
    assert [p.name for p in tmp_path.iterdir()] == ["creds.json"]


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text("{}")
    ours = tmp_path / f".creds.json.{os.getpid()}.abcd1234.tmp"
    ours.write_text('{"a"')
    assert recover_temp_files(path) == [] and ours.exists()


def test_startup_cleans_up_a_leftover_beside_an_accounts_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMBRIDGE_HOME", str(tmp_path / "home"))
    creds = tmp_path / "oauth_creds.json"
    creds.write_text(json.dumps({"access_token": "at", "refresh_token": "rt", "expiry_date": 1}))
    leftover = tmp_path / f".oauth_creds.json.{dead_pid()}.0badf00d.tmp"
    leftover.write_text('{"access_token": "at-ne')
    config = write_config(
        tmp_path / "bridge.toml",
        [{"name": "g", "provider": "gemini-cli", "credentials": str(creds), "project": "p"}],
        record=False,
    )
    BridgeApp(config)
    assert not leftover.exists() and creds.exists()


def test_a_client_key_temp_file_of_a_dead_process_is_removed(tmp_path):
    leftover = tmp_path / f".client_key.{dead_pid()}.0badf00d"
    leftover.write_text("sk-llmbridge-half")
    key = generated_client_key(tmp_path)
    assert key.startswith("sk-llmbridge-") and not leftover.exists()
