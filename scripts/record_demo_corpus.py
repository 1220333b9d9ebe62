"""Records the demo replay corpus (`replay/demo/`): one conversation turn per provider and front door,
sent through the real bridge to the project's strict fake upstreams, then exported as fixtures.

    .venv/bin/python scripts/record_demo_corpus.py [--out replay/demo]

`llmbridge serve --replay replay/demo` answers from it offline, and tests/test_e2e_offline.py sends each
fixture's client request through the bridge again and requires the very same upstream call: a change
in a translator or a provider's wire format shows up as a failing test naming the difference.
Re-run this script when such a change is intended; review the diff of replay/demo like code.

Each provider gets its own model, so that in offline mode every model has exactly one replay account.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.bridge_process import CLIENT_KEY, LLMBRIDGE, BridgeProcess, write_config  # noqa: E402
from tests.fakes import anthropic_api, code_assist, gemini_api, kiro, openai_upstream, qwen  # noqa: E402

PACING = {"requests_per_minute": 1000, "max_concurrent": 10}
MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash-lite",
    "gemini-cli": "gemini-2.5-flash",
    "kiro": "claude-sonnet-4-5",
    "qwen": "coder-model",
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def turns() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(file name, provider, path on the bridge, client request body): every door at least once."""
    ask = [{"role": "user", "content": "Name a colour, in one word."}]
    return [
        ("01-openai-chat", "openai", "/v1/chat/completions", {"model": MODELS["openai"], "messages": ask}),
        (
            "02-anthropic-messages-stream",
            "anthropic",
            "/v1/messages",
            {"model": MODELS["anthropic"], "max_tokens": 256, "stream": True, "messages": ask},
        ),
        (
            "03-gemini-generate",
            "gemini",
            f"/v1beta/models/{MODELS['gemini']}:generateContent",
            {"contents": [{"role": "user", "parts": [{"text": "Name a colour, in one word."}]}]},
        ),
        (
            "04-gemini-cli-chat-stream",
            "gemini-cli",
            "/v1/chat/completions",
            {"model": MODELS["gemini-cli"], "messages": ask, "stream": True},
        ),
        (
            "05-gemini-cli-responses",
            "gemini-cli",
            "/v1/responses",
            {"model": MODELS["gemini-cli"], "input": "Name a colour, in one word.", "store": False},
        ),
        (
            "06-kiro-messages-stream",
            "kiro",
            "/v1/messages",
            {"model": MODELS["kiro"], "max_tokens": 256, "stream": True, "messages": ask},
        ),
        (
            "07-kiro-chat-tool-call",
            "kiro",
            "/v1/chat/completions",
            {
                "model": MODELS["kiro"],
                "messages": [{"role": "user", "content": "What is the weather in Lisbon?"}],
                "tools": [WEATHER_TOOL],
            },
        ),
        (
            "08-qwen-chat-stream",
            "qwen",
            "/v1/chat/completions",
            {"model": MODELS["qwen"], "messages": ask, "stream": True, "stream_options": {"include_usage": True}},
        ),
        # API-key providers are called upstream as the client asked (stream or not): both kinds are
        # recorded, so that offline mode answers either from a recording of the same kind.
        (
            "09-openai-chat-stream",
            "openai",
            "/v1/chat/completions",
            {"model": MODELS["openai"], "messages": ask, "stream": True, "stream_options": {"include_usage": True}},
        ),
        (
            "10-anthropic-messages",
            "anthropic",
            "/v1/messages",
            {"model": MODELS["anthropic"], "max_tokens": 256, "messages": ask},
        ),
        (
            "11-gemini-generate-stream",
            "gemini",
            f"/v1beta/models/{MODELS['gemini']}:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": "Name a colour, in one word."}]}]},
        ),
    ]


def enqueue_answers(fakes: dict[str, Any]) -> None:
    """One scripted answer per turn, in the order of `turns()`."""
    fakes["openai"].enqueue(openai_upstream.text_reply("Teal."))
    fakes["anthropic"].enqueue(anthropic_api.text_reply("Crimson."))
    fakes["gemini"].enqueue(gemini_api.text_reply("Ochre."))
    fakes["gemini-cli"].enqueue(code_assist.text_reply("Indigo.", thoughts=("A calm one.",), signature="SIG"))
    fakes["gemini-cli"].enqueue(code_assist.text_reply("Saffron."))
    fakes["kiro"].enqueue(kiro.Text("Viridian."), kiro.ContextUsage(1.5), kiro.Metering(0.01))
    fakes["kiro"].enqueue(
        kiro.Text("Let me look that up."),
        kiro.ToolUse("get_weather", "tooluse_demo1", fragments=['{"city":', ' "Lisbon"}']),
        kiro.ContextUsage(1.5),
        kiro.Metering(0.01),
    )
    fakes["qwen"].enqueue(qwen.Reply(deltas=[{"content": "Cerulean."}]))
    fakes["openai"].enqueue(openai_upstream.text_reply("Mauve."))
    fakes["anthropic"].enqueue(anthropic_api.text_reply("Amber."))
    fakes["gemini"].enqueue(gemini_api.text_reply("Sepia."))


def accounts(fakes: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    cli_creds, kiro_token = workdir / "gemini-creds.json", workdir / "kiro-token.json"
    qwen_creds = workdir / "qwen-creds.json"
    fakes["gemini-cli"].write_credentials(cli_creds)
    fakes["kiro"].write_token_file(kiro_token)
    fakes["qwen"].write_credentials(qwen_creds)
    return [
        {"name": "openai", "provider": "openai", "api_key": fakes["openai"].api_key,
         "base_url": fakes["openai"].base_url, "models": [MODELS["openai"]], **PACING},
        {"name": "anthropic", "provider": "anthropic", "api_key": fakes["anthropic"].api_key,
         "base_url": fakes["anthropic"].base_url, "models": [MODELS["anthropic"]], **PACING},
        {"name": "gemini", "provider": "gemini", "api_key": fakes["gemini"].api_key,
         "base_url": fakes["gemini"].base_url, "models": [MODELS["gemini"]], **PACING},
        {"name": "gemini-cli", "provider": "gemini-cli", "credentials": str(cli_creds),
         "base_url": fakes["gemini-cli"].base_url, "token_url": fakes["gemini-cli"].token_url,
         "project": fakes["gemini-cli"].project, "models": [MODELS["gemini-cli"]], **PACING},
        {"name": "kiro", "provider": "kiro", "credentials": str(kiro_token), "base_url": fakes["kiro"].base_url,
         "token_url": fakes["kiro"].social_refresh_url, "models": [MODELS["kiro"]], **PACING},
        {"name": "qwen", "provider": "qwen", "credentials": str(qwen_creds), "base_url": fakes["qwen"].base_url,
         "token_url": fakes["qwen"].token_url, "models": [MODELS["qwen"]], **PACING},
    ]  # fmt: skip


def record(out: Path) -> list[Path]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        openai_upstream.FakeOpenAI() as oai,
        anthropic_api.FakeAnthropic() as claude,
        gemini_api.FakeGeminiAPI() as gemini,
        code_assist.FakeCodeAssist() as cli,
        kiro.FakeKiro() as kiro_fake,
        qwen.FakeQwen() as qwen_fake,
    ):
        workdir = Path(tmp)
        fakes = {
            "openai": oai,
            "anthropic": claude,
            "gemini": gemini,
            "gemini-cli": cli,
            "kiro": kiro_fake,
            "qwen": qwen_fake,
        }
        database = workdir / "demo.db"
        config = write_config(workdir / "bridge.toml", accounts(fakes, workdir), database=str(database))
        enqueue_answers(fakes)
        with BridgeProcess(workdir, config) as bridge:
            headers = {"authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY}
            for name, _, path, body in turns():
                answer = httpx.post(bridge.base_url + path, json=body, headers=headers, timeout=30)
                if answer.status_code != 200:
                    raise SystemExit(f"{name}: {answer.status_code} {answer.text[:500]}")
        return export(database, out)


def export(database: Path, out: Path) -> list[Path]:
    rows = sqlite3.connect(database).execute("SELECT id FROM exchanges ORDER BY started_at").fetchall()
    names = [name for name, *_ in turns()]
    if len(rows) != len(names):
        raise SystemExit(f"recorded {len(rows)} exchanges, expected {len(names)}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.json"):
        stale.unlink()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for (exchange_id,), name in zip(rows, names):
            command = [str(LLMBRIDGE), "export-fixture", exchange_id, "--db", str(database), "--out", tmp]
            subprocess.run(command, check=True, capture_output=True, timeout=60)
            (exported,) = Path(tmp).glob(f"*{exchange_id}.json")
            fixture = json.loads(exported.read_text())
            exported.unlink()
            target = out / f"{name}.json"
            target.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n")
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "replay" / "demo")
    args = parser.parse_args()
    for path in record(args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
