"""The official coding clients (Claude Code, Gemini CLI, Codex, Qwen Code) run headless against the real bridge.

`scripts/install-clients` installs the versions pinned in tests/clients/ into a cache outside git
(`scripts/test` runs it through `scripts/bootstrap --with-clients`); `clients()` finds that install or
skips, naming why. Each run gets a temporary HOME and working directory, telemetry, update checks and
auto-update off, a timeout, and the bridge's client key; nothing reaches anything but 127.0.0.1.

What the clients send is read from two places: the bridge's own recording (`door_requests`: every
request the bridge recognised, as the client sent it) and the strict fake behind it (the upstream
request, which the fake validates as the real service would). `Script` decides the fake's answers by
the request's content, since a client's side requests (titles, classifiers) come in no fixed order.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bridge_process import CLIENT_KEY, ROOT
from tests.e2e_backends import Backend

PINS = ROOT / "tests" / "clients"
TIMEOUT = 90  # seconds for one client run


# --- the installed clients ------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where scripts/install-clients puts the pinned clients (the same rule as the script)."""
    base = os.environ.get("LLMBRIDGE_CLIENTS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "llmbridge", "clients"
    )
    digest = hashlib.sha256((PINS / "package.json").read_bytes() + (PINS / "package-lock.json").read_bytes())
    return Path(base) / digest.hexdigest()[:16]


def versions() -> dict[str, str]:
    return json.loads((PINS / "package.json").read_text())["dependencies"]


def clients() -> tuple[Path | None, str]:
    """(the folder of the clients' executables, "") when installed, else (None, why not)."""
    target = cache_dir()
    if (target / ".complete").exists():
        return target / "node_modules" / ".bin", ""
    failed = Path(str(target) + ".failed")
    if failed.exists():
        return None, f"the pinned clients could not be installed: {failed.read_text().strip()}"
    return (
        None,
        f"the pinned clients are not installed in {target}: run scripts/install-clients (needs the npm registry)",
    )


# --- running a client ------------------------------------------------------------------------------


@dataclass
class Run:
    client: str
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cwd: Path

    def describe(self) -> str:
        return (
            f"{self.client} exited {self.returncode} after {self.seconds:.1f}s\n"
            f"args: {self.args}\nstdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-4000:]}"
        )

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


def _base_env(home: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
        "CI": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "NO_UPDATE_NOTIFIER": "1",
        "npm_config_update_notifier": "false",
    }
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def _run(client: str, bin_dir: Path, args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Run:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(bin_dir / client), *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        code = -1
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        err = (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or "") + (
            f"\n[timed out after {timeout}s]"
        )
    return Run(client, args, code, out, err, time.monotonic() - started, cwd)


def claude(
    bin_dir: Path,
    base_url: str,
    model: str,
    prompt: str,
    home: Path,
    cwd: Path,
    *,
    stream: bool = False,
    allowed_tools: list[str] | None = None,
    nonessential_traffic: bool = True,
    timeout: float = TIMEOUT,
) -> Run:
    """`claude -p PROMPT --model MODEL --output-format json|stream-json` (stream: with --verbose and
    --include-partial-messages, so each text delta is printed as it arrives)."""
    env = _base_env(home)
    env.update(
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_API_KEY=CLIENT_KEY,
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_BUG_COMMAND="1",
        CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY="1",
    )
    if not nonessential_traffic:
        env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    args = ["-p", prompt, "--model", model]
    args += ["--output-format", "stream-json", "--verbose", "--include-partial-messages"] if stream else []
    args += [] if stream else ["--output-format", "json"]
    if allowed_tools:
        args += ["--allowedTools", ",".join(allowed_tools)]
    return _run("claude", bin_dir, args, cwd, env, timeout)


def gemini(
    bin_dir: Path,
    base_url: str,
    model: str | None,
    prompt: str,
    home: Path,
    cwd: Path,
    *,
    output: str = "json",
    timeout: float = TIMEOUT,
) -> Run:
    """`gemini -p PROMPT [-m MODEL] --approval-mode yolo -o json|stream-json|text`, API-key mode, with
    usage statistics, telemetry and update checks off in the temporary HOME's settings."""
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    }
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    env = _base_env(home)
    env.update(
        GOOGLE_GEMINI_BASE_URL=base_url,
        GEMINI_API_KEY=CLIENT_KEY,
        GEMINI_CLI_TRUST_WORKSPACE="true",
    )
    args = ["-p", prompt, "--approval-mode", "yolo", "-o", output]
    if model:
        args += ["-m", model]
    return _run("gemini", bin_dir, args, cwd, env, timeout)


def codex(
    bin_dir: Path, base_url: str, model: str, prompt: str, home: Path, cwd: Path, *, timeout: float = TIMEOUT
) -> Run:
    """`codex exec --json --skip-git-repo-check PROMPT` with a custom provider in a temporary CODEX_HOME:
    the bridge's `/v1` as `base_url`, `wire_api = "responses"`, the key from `LLMBRIDGE_API_KEY`,
    no retries (a refused request fails at once)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "llmbridge"\n'
        'approval_policy = "never"\n'
        'sandbox_mode = "danger-full-access"\n'
        "check_for_update_on_startup = false\n"
        "[analytics]\nenabled = false\n"
        "[feedback]\nenabled = false\n"
        "[model_providers.llmbridge]\n"
        'name = "llmbridge"\n'
        f'base_url = "{base_url}/v1"\n'
        'env_key = "LLMBRIDGE_API_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    env = _base_env(home)
    env.update(CODEX_HOME=str(codex_home), LLMBRIDGE_API_KEY=CLIENT_KEY)
    args = ["exec", "--json", "--skip-git-repo-check", "--color", "never", prompt]
    return _run("codex", bin_dir, args, cwd, env, timeout)


def qwen(
    bin_dir: Path,
    base_url: str,
    model: str,
    prompt: str,
    home: Path,
    cwd: Path,
    *,
    output: str = "json",
    timeout: float = TIMEOUT,
) -> Run:
    """`qwen PROMPT --auth-type openai --approval-mode yolo -o json|stream-json`: Qwen Code with its
    OpenAI-compatible provider pointed at the bridge's `/v1` (OPENAI_BASE_URL, OPENAI_API_KEY,
    OPENAI_MODEL), usage statistics, telemetry and update checks off. Qwen Code needs Node >= 22: the
    pinned `node` in the clients' .bin comes first on its PATH. Any other address is a dead proxy."""
    settings = {
        "security": {"auth": {"selectedType": "openai"}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    }
    (home / ".qwen").mkdir(parents=True, exist_ok=True)
    (home / ".qwen" / "settings.json").write_text(json.dumps(settings))
    env = _base_env(home)
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        OPENAI_BASE_URL=f"{base_url}/v1",
        OPENAI_API_KEY=CLIENT_KEY,
        OPENAI_MODEL=model,
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        QWEN_CODE_SUPPRESS_YOLO_WARNING="1",
    )
    args = [prompt, "--auth-type", "openai", "--approval-mode", "yolo", "-o", output]
    if output == "stream-json":
        args.append("--include-partial-messages")
    return _run("qwen", bin_dir, args, cwd, env, timeout)


# --- what the client sent at the bridge's door ---------------------------------------------------------


@dataclass
class DoorRequest:
    endpoint: str
    model: str | None
    status: int | None
    stream: bool
    error: str | None
    body: Any


def door_requests(db: Path, after: int = 0, settle: float = 0.6) -> tuple[list[DoorRequest], int]:
    """The exchanges the bridge recorded after row `after` (the recorder writes in the background:
    wait until no new row came for `settle` seconds), and the last row id."""
    rows: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(settle)
        if not db.exists():
            continue
        with sqlite3.connect(db) as conn:
            found = conn.execute(
                "select rowid, endpoint, model_requested, status, stream, error_message, request_raw "
                "from exchanges where rowid > ? order by rowid",
                (after,),
            ).fetchall()
        if len(found) == len(rows):
            break
        rows = found
    requests = []
    for _, endpoint, model, status, stream, error, raw in rows:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        requests.append(DoorRequest(endpoint, model, status, bool(stream), error, body))
    return requests, (rows[-1][0] if rows else after)


def _keys(d: Any) -> list[str]:
    return sorted(d) if isinstance(d, dict) else []


def shape(request: DoorRequest) -> dict[str, Any]:
    """The notable fields of one client request, for the list of shapes each client sends."""
    body = request.body if isinstance(request.body, dict) else {}
    out: dict[str, Any] = {"endpoint": request.endpoint, "model": request.model, "status": request.status}
    if "messages" in body:  # Anthropic Messages
        messages = body.get("messages") or []
        tools = body.get("tools")
        out.update(
            stream=body.get("stream", False),
            system="top-level" if body.get("system") else "none",
            system_in_messages=[i for i, m in enumerate(messages) if m.get("role") == "system"],
            roles=[m.get("role") for m in messages],
            tools=None if tools is None else len(tools),
            thinking=body.get("thinking"),
            output_config=body.get("output_config"),
            temperature=body.get("temperature"),
            max_tokens=body.get("max_tokens"),
            other_fields=[
                k
                for k in _keys(body)
                if k not in {"model", "messages", "system", "tools", "thinking", "output_config", "stream"}
                and k not in {"temperature", "max_tokens"}
            ],
        )
    elif "contents" in body:  # Gemini generateContent
        config = body.get("generationConfig") or {}
        out.update(
            systemInstruction="systemInstruction" in body,
            tools=sum(len(t.get("functionDeclarations") or []) for t in body.get("tools") or []),
            generationConfig={k: config[k] for k in _keys(config) if k != "responseJsonSchema"},
            responseJsonSchema=_keys((config.get("responseJsonSchema") or {}).get("properties")) or None,
            toolConfig=body.get("toolConfig"),
            other_fields=[
                k for k in _keys(body) if k not in {"contents", "systemInstruction", "tools", "generationConfig"}
            ],
        )
    elif "input" in body:  # OpenAI Responses
        out.update(fields=_keys(body), tools=[t.get("type") for t in body.get("tools") or []])
    if request.error:
        out["error"] = request.error[:200]
    return out


def distinct(shapes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for s in shapes:
        seen.setdefault(json.dumps(s, sort_keys=True, default=str), s)
    return list(seen.values())


# --- scripting the fake by the request's content ------------------------------------------------------

# How each backend's wire format carries a tool result (a JSON dump of the upstream body contains it).
TOOL_RESULT = re.compile(r'"type": "tool_result"|"role": "tool"|"toolResults": \[\{|"functionResponse"')


@dataclass
class Script:
    """The fake's answers for one client run, chosen by what each upstream request holds:

    - a request that names the client's `tool` among its tool declarations and carries `marker` (the
      client's main turn): the scripted tool call first (when `call` is set), then, once the request
      carries a tool result, the `final` text pieces; without `call`, the `final` text at once;
    - any other request (a title, a classifier, another side request): a small answer in the shape
      that request asks for, recorded in `side`."""

    backend: Backend
    marker: str
    tool: str
    final: tuple[str, ...]
    call: tuple[str, str, dict[str, Any]] | None = None  # (tool name, call id, arguments)
    main: list[Any] = field(default_factory=list)
    side: list[Any] = field(default_factory=list)

    def __call__(self, body: Any) -> Any:
        text = json.dumps(body)
        if self.marker in text and re.search(rf'"(name|functionName)": "{re.escape(self.tool)}"', text):
            self.main.append(body)
            if self.call and not TOOL_RESULT.search(text):
                name, call_id, args = self.call
                return self.backend.tool_reply(name, call_id, args)
            return self.backend.text_reply(*self.final)
        self.side.append(body)
        return self.backend.text_reply(side_answer(text))


def side_answer(text: str) -> str:
    """What a side request gets: JSON in the shape it asks for where it asks for one."""
    if "complexity_score" in text:  # Gemini CLI's auto-routing classifier
        return json.dumps({"complexity_reasoning": "A simple request.", "complexity_score": 10})
    if "model_choice" in text:  # Gemini CLI's older model router
        return json.dumps({"reasoning": "A simple request.", "model_choice": "flash"})
    if "next_speaker" in text:  # Gemini CLI's next-speaker check
        return json.dumps({"reasoning": "The answer is complete.", "next_speaker": "user"})
    if re.search(r'"title"', text) or "title" in text.lower() and "json" in text.lower():
        return json.dumps({"title": "Fake session title"})
    return "Side answer from the fake."


# --- tool results as each backend's wire format carries them -------------------------------------------


def tool_results(backend: str, body: Any) -> list[tuple[str, Any]]:
    """(call id, or the function name where the wire format has no ids; the result as sent) for every
    tool result in one upstream request, checked to answer a call of the turn before."""
    out: list[tuple[str, Any]] = []
    if backend == "anthropic":
        messages = body["messages"]
        for i, message in enumerate(messages):
            blocks = message["content"] if isinstance(message["content"], list) else []
            for block in blocks:
                if block.get("type") == "tool_result":
                    calls = {b["id"] for b in messages[i - 1]["content"] if b.get("type") == "tool_use"}
                    assert block["tool_use_id"] in calls, block
                    out.append((block["tool_use_id"], block.get("content")))
    elif backend in ("openai", "qwen"):  # Qwen: chat completions too
        calls: set[str] = set()
        for message in body["messages"]:
            if message["role"] == "assistant":
                calls |= {c["id"] for c in message.get("tool_calls") or []}
            if message["role"] == "tool":
                assert message["tool_call_id"] in calls, message
                out.append((message["tool_call_id"], message["content"]))
    elif backend == "kiro":
        state = body["conversationState"]
        turns = [h.get("userInputMessage") for h in state.get("history") or []]
        turns.append(state["currentMessage"]["userInputMessage"])
        for turn in turns:
            for result in ((turn or {}).get("userInputMessageContext") or {}).get("toolResults") or []:
                assert result.get("status") == "success", result
                out.append((result["toolUseId"], result["content"]))
    else:  # gemini, gemini-cli: Gemini's contents (inside Code Assist's envelope for gemini-cli)
        contents = (body["request"] if backend == "gemini-cli" else body)["contents"]
        for i, content in enumerate(contents):
            for part in content.get("parts") or []:
                if "functionResponse" in part:
                    response = part["functionResponse"]
                    called = [p["functionCall"]["name"] for p in contents[i - 1]["parts"] if "functionCall" in p]
                    assert response["name"] in called, response
                    out.append((response.get("id") or response["name"], response["response"]))
    return out
