"""Drift at zero (issue 15): the pinned Gemini CLI as the official Code Assist client, captured in
front of the strict fake, against the bridge's gemini-cli provider captured the same way, for the
same prompts (plain, a tool turn, thinking). `llmbridge drift` must find nothing but its documented
entries.

    official:  gemini (GCA mode, CODE_ASSIST_ENDPOINT) -> capture (source "captured") -> fake
    bridge:    gemini (API-key mode) -> bridge -> capture (source "bridge") -> fake

Offline, the CLI's Google login stops at a token-info call; `GOOGLE_GENAI_USE_GCA=true` with
`GOOGLE_CLOUD_ACCESS_TOKEN` runs the same Code Assist code path (tests/real_clients.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmbridge.capture import export_capture, load_fixture_calls, load_session, sessions
from llmbridge.cli import main
from llmbridge.drift import compare
from tests.bridge_process import BridgeProcess, write_config
from tests.capture_kit import CaptureProcess
from tests.fakes.code_assist import FakeCodeAssist, Reply, text_reply, tool_call_reply
from tests.real_clients import _base_env, _run, clients, gemini

pytestmark = pytest.mark.e2e
MODEL = "gemini-2.5-pro"
PROMPTS = {
    "plain": "Say hello. [drift-plain]",
    "tool": "Run the shell command `echo drift` and tell me what it printed. [drift-tool]",
    "thinking": "Think it over, then tell me what 17 * 3 is. [drift-thinking]",
}


def answer(body: Any) -> Reply | None:
    """The fake's answer by content: the same on both sides, whatever order side calls come in."""
    text = json.dumps(body)
    last = body["request"]["contents"][-1]
    if any("functionResponse" in p for p in last["parts"]):
        return text_reply("It printed drift.")
    if "[drift-tool]" in text:
        return tool_call_reply("run_shell_command", {"command": "echo drift"})
    if "[drift-thinking]" in text:
        return text_reply("17 * 3 is 51.", thoughts=("Seventeen threes are fifty-one.",))
    return text_reply("Hello!")


def official_gemini(bin_dir: Path, endpoint: str, token: str, prompt: str, home: Path) -> Any:
    """The CLI as the official Code Assist client, in its GCA mode, against `endpoint`."""
    settings = {
        "security": {"auth": {"selectedType": "oauth-personal"}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    }
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    cwd = home / "work"
    cwd.mkdir(exist_ok=True)
    env = _base_env(home)
    env.update(
        GOOGLE_GENAI_USE_GCA="true",
        GOOGLE_CLOUD_ACCESS_TOKEN=token,
        CODE_ASSIST_ENDPOINT=endpoint,
        GEMINI_CLI_TRUST_WORKSPACE="true",
        # the user-info lookup after login must not leave the machine
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
    )
    args = ["-p", prompt, "--approval-mode", "yolo", "-o", "json", "-m", MODEL]
    return _run("gemini", bin_dir, args, cwd, env, 120)


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    bin_dir, why = clients()
    if bin_dir is None:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("drift")
    db = tmp / "captures.db"
    with FakeCodeAssist() as fake:
        fake.responder = answer
        with CaptureProcess(tmp, fake.origin, db, "captured") as capture:
            for name, prompt in PROMPTS.items():
                run = official_gemini(bin_dir, capture.url, fake.new_access_token(), prompt, tmp / f"official-{name}")
                assert run.returncode == 0, run.describe()
        creds = tmp / "oauth_creds.json"
        fake.write_credentials(creds)
        with CaptureProcess(tmp, fake.origin, db, "bridge") as capture:
            account = {
                "name": "g1",
                "provider": "gemini-cli",
                "credentials": str(creds),
                "base_url": capture.url,
                "token_url": fake.token_url,
                "requests_per_minute": 1000,
            }
            config = write_config(tmp / "bridge.toml", [account], record=False)
            (tmp / "bridge").mkdir()
            with BridgeProcess(tmp / "bridge", config) as bridge:
                for name, prompt in PROMPTS.items():
                    home = tmp / f"via-bridge-{name}"
                    (home / "work").mkdir(parents=True)
                    run = gemini(bin_dir, bridge.base_url, MODEL, prompt, home, home / "work", timeout=120)
                    assert run.returncode == 0, run.describe() + bridge.output()[-3000:]
        assert not fake.rejections, fake.rejections
    return db


def test_both_sides_were_captured_with_their_headers_in_wire_order(captured):
    runs = {source: count for _, source, _, count in sessions(captured)}
    assert runs.keys() == {"captured", "bridge"}
    official = load_session(captured, "captured")
    generate = next(c for c in official if c.rpc == "streamGenerateContent")
    assert [k.lower() for k, _ in generate.headers][:7] == [
        "accept",
        "accept-encoding",
        "authorization",
        "content-length",
        "content-type",
        "user-agent",
        "x-goog-api-client",
    ]
    assert dict(generate.headers)["authorization"] == "Bearer [redacted]"  # redacted by structure
    assert "ya29." not in captured.read_bytes().decode("latin-1")


def test_drift_report_is_empty_but_for_documented_entries(captured):
    report = compare(load_session(captured, "captured"), load_session(captured, "bridge"), "captured", "bridge")
    print(report.text())
    assert report.drift == [], report.text()


def test_the_command_exits_zero_and_captures_export_as_fixtures(captured, tmp_path):
    result = CliRunner().invoke(main, ["drift", "--db", str(captured)])
    assert result.exit_code == 0, result.output
    assert "no drift" in result.output
    written = export_capture(captured, "captured", tmp_path / "official")
    assert written and all(json.loads(p.read_text())["provider"] == "gemini-cli" for p in written)
    calls = load_fixture_calls(tmp_path / "official")
    assert [c.rpc for c in calls] == [c.rpc for c in load_session(captured, "captured")]
    # an exported folder is a drift input too
    result = CliRunner().invoke(main, ["drift", "--db", str(captured), "--official", str(tmp_path / "official")])
    assert result.exit_code == 0, result.output
