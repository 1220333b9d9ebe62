"""Real-client conformance: the official Claude Code, Gemini CLI, Codex and Qwen Code, at pinned versions, run
headless through the real bridge (mitmdump) against each backend's strict fake.

For each client x backend: a plain answer, a streamed answer, and a full agentic turn (the fake asks
for the client's own file-writing tool, the client runs it, the file is checked on disk, and the strict
fake accepts the next request carrying the result in its wire format). Every request the clients send
at the bridge's door is summarised into shapes (endpoint, model, system placement, tools, thinking,
output_config, ...); they are written to `real_client_shapes.json` in pytest's base temporary folder
(and to $LLMBRIDGE_SHAPES_OUT when set).

The clients come from `scripts/install-clients` (run by `scripts/test`); without them every test here
skips, naming why. The gaps these clients found in the bridge (and that are fixed) each have their own
exception, raised when that exact symptom is seen again, so a regression names itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import real_clients as rc
from tests.e2e_backends import BACKENDS, Backend, start_backend

BIN, WHY_NOT = rc.clients()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(BIN is None, reason=f"REAL CLIENTS NOT RUN: {WHY_NOT}")]

# The model each backend is asked for: its own, except Claude names where a Claude backend serves them
# (Claude Code treats any other name as an unknown model; see SystemRoleGap).
MODELS = {
    "gemini-cli": "gemini-2.5-pro",
    "kiro": "claude-sonnet-4-5",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "openai": "gpt-test",
    "qwen": "coder-model",
}
GEMINI_WIRE = ("gemini", "gemini-cli")  # the backends that speak Gemini's wire format upstream
TOOLS = {"claude": "Write", "gemini": "write_file", "codex": "exec_command", "qwen": "write_file"}
CONTENT = "written by the fake's tool call\n"
SHAPES: dict[str, list[dict[str, Any]]] = {"claude": [], "gemini": [], "codex": [], "qwen": []}


# --- gaps the clients found, now fixed (each raised on its exact symptom, should it come back) ---


class SystemRoleGap(Exception):
    """Claude Code sends `messages: [user, {role: "system", ...}]` for model names it does not know."""


class NoResponsesDoor(Exception):
    """Codex speaks only the Responses API (`POST /v1/responses`)."""


class DoubleWrappedToolResult(Exception):
    """Gemini CLI's `functionResponse.response` reaches the upstream wrapped a second time."""


class TopKRefused(Exception):
    """Gemini CLI always sends `generationConfig.topK`; the openai provider refuses `top_k` with 400."""


class UnservedClassifierModel(Exception):
    """Gemini CLI's auto-routing asks a flash-lite classifier model the bridge does not serve (404)."""


def gaps_at_door(requests: list[rc.DoorRequest]) -> None:
    for r in requests:
        if r.status == 400 and "got 'system'" in (r.error or ""):
            raise SystemRoleGap(r.error)
        if r.status == 400 and "has no top_k" in (r.error or ""):
            raise TopKRefused(f"{r.endpoint} {r.model}: {r.error}")
        if r.status == 404 and "flash-lite" in (r.model or ""):
            raise UnservedClassifierModel(f"{r.endpoint} {r.model}: {r.error}")


def gaps_of_codex(run: rc.Run) -> None:
    if "no route for POST /v1/responses" in run.stdout + run.stderr:
        raise NoResponsesDoor(run.describe()[-600:])


# --- one bridge per backend, shared by the clients ---------------------------------------------------


class Bridges:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.stack = contextlib.ExitStack()
        self.started: dict[str, Backend] = {}
        self.seen: dict[str, int] = {}  # last recorded exchange row read, per backend

    def __call__(self, name: str) -> Backend:
        if name not in self.started:
            workdir = self.root / name
            workdir.mkdir()
            self.started[name] = self.stack.enter_context(
                start_backend(
                    name,
                    workdir,
                    model=MODELS[name],
                    restrict_models=name == "openai",  # the others list their provider's models
                    record=True,
                    database=str(workdir / "bridge.db"),
                )
            )
            self.seen[name] = 0
        return self.started[name]

    def door(self, name: str, client: str, scenario: str) -> list[rc.DoorRequest]:
        """What the client sent to this backend's bridge since the last look; its shapes are kept."""
        requests, self.seen[name] = rc.door_requests(self.root / name / "bridge.db", self.seen[name])
        for r in requests:
            SHAPES[client].append(dict(rc.shape(r), backend=name, scenario=scenario))
        return requests


@pytest.fixture(scope="module")
def bridges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridges]:
    bridges = Bridges(tmp_path_factory.mktemp("real-client-bridges"))
    with bridges.stack:
        yield bridges
    report = {client: rc.distinct(shapes) for client, shapes in SHAPES.items()}
    report["versions"] = rc.versions()  # type: ignore[assignment]
    text = json.dumps(report, indent=2, default=str)
    (tmp_path_factory.getbasetemp() / "real_client_shapes.json").write_text(text)
    if os.environ.get("LLMBRIDGE_SHAPES_OUT"):
        Path(os.environ["LLMBRIDGE_SHAPES_OUT"]).write_text(text)


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path]:
    """(a temporary HOME, a temporary working directory) for one client run."""
    home, cwd = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    cwd.mkdir()
    return home, cwd


def params(client: str) -> list[Any]:
    out = []
    for backend in BACKENDS:
        out.append(pytest.param(backend, id=backend))
    return out


def run_client(
    client: str,
    backend: Backend,
    prompt: str,
    place: tuple[Path, Path],
    *,
    stream: bool = False,
    nonessential: bool = True,
    model: str | None = "",
) -> rc.Run:
    assert BIN is not None
    home, cwd = place
    chosen = backend.model if model == "" else model
    if client == "claude":
        assert chosen
        return rc.claude(
            BIN,
            backend.bridge.base_url,
            chosen,
            prompt,
            home,
            cwd,
            stream=stream,
            allowed_tools=["Write"],
            nonessential_traffic=nonessential,
        )
    if client == "gemini":
        return rc.gemini(
            BIN, backend.bridge.base_url, chosen, prompt, home, cwd, output="stream-json" if stream else "json"
        )
    assert chosen
    if client == "qwen":
        return rc.qwen(
            BIN, backend.bridge.base_url, chosen, prompt, home, cwd, output="stream-json" if stream else "json"
        )
    return rc.codex(BIN, backend.bridge.base_url, chosen, prompt, home, cwd)


def answer_text(client: str, run: rc.Run, stream: bool) -> str:
    """The final answer as the client printed it."""
    if client == "claude":
        if not stream:
            result = json.loads(run.stdout)
            assert not result.get("is_error"), run.describe()
            return result["result"]
        results = [e for e in run.json_lines() if e.get("type") == "result"]
        assert results and not results[-1].get("is_error"), run.describe()
        return results[-1]["result"]
    if client == "qwen":  # -o json: a JSON array of events; stream-json: one event per line
        events = json.loads(run.stdout[run.stdout.index("[") :]) if not stream else run.json_lines()
        results = [e for e in events if e.get("type") == "result"]
        assert results and not results[-1].get("is_error"), run.describe()
        return str(results[-1]["result"])
    if client == "gemini":
        if not stream:
            return json.loads(run.stdout[run.stdout.index("{") :])["response"]
        return "".join(
            e.get("content", "")
            for e in run.json_lines()
            if e.get("type") == "message" and e.get("role") == "assistant"
        )
    messages = [
        e["item"].get("text", "")
        for e in run.json_lines()
        if e.get("type") == "item.completed" and e.get("item", {}).get("type") == "agent_message"
    ]
    assert messages, run.describe()
    return messages[-1]


def streamed_pieces(client: str, run: rc.Run) -> list[str]:
    """The text deltas the client printed as they arrived (stream-json output)."""
    if client in ("claude", "qwen"):  # the same stream_event lines
        return [
            e["event"]["delta"]["text"]
            for e in run.json_lines()
            if e.get("type") == "stream_event"
            and e.get("event", {}).get("type") == "content_block_delta"
            and e["event"].get("delta", {}).get("type") == "text_delta"
        ]
    if client == "gemini":
        return [
            e.get("content", "")
            for e in run.json_lines()
            if e.get("type") == "message" and e.get("role") == "assistant" and e.get("delta")
        ]
    return []


def rejections(backend: Backend) -> list[str]:
    """Why the strict fake refused requests so far (its messages), oldest first."""
    if backend.name == "kiro":
        return [r.rejection for r in backend.fake.generate_requests() if r.rejection]
    return list(backend.fake.rejections)


# --- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend_name", params("claude"))
def test_claude_code_plain_default_traffic(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    """Claude Code in its default configuration (nonessential traffic on): the answer printed is the
    fake's, and every side request it makes is answered and recorded."""
    _plain("claude", bridges, backend_name, place)


@pytest.mark.parametrize("backend_name", params("gemini"))
def test_gemini_cli_plain(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _plain("gemini", bridges, backend_name, place)


@pytest.mark.parametrize("backend_name", params("qwen"))
def test_qwen_code_plain(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _plain("qwen", bridges, backend_name, place)


@pytest.mark.parametrize("backend_name", params("codex"))
def test_codex_plain(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _plain("codex", bridges, backend_name, place)


def _plain(client: str, bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    backend = bridges(backend_name)
    marker = f"plain-{client}-{backend_name}"
    final = (f"Plain answer for {marker} ", "from the fake.")
    script = rc.Script(backend, marker, TOOLS[client], final)
    backend.respond(script)
    refused = len(rejections(backend))
    run = run_client(client, backend, f"Say hello. ({marker})", place)
    door = bridges.door(backend_name, client, "plain")
    if client == "codex":
        gaps_of_codex(run)
    gaps_at_door(door)
    assert run.returncode == 0, run.describe()
    assert answer_text(client, run, stream=False).strip() == "".join(final).strip()
    assert script.main, "the client's main request never reached the upstream"
    assert rejections(backend)[refused:] == [], f"the strict {backend_name} fake refused requests"
    assert all(r.status == 200 for r in door), [rc.shape(r) for r in door]


@pytest.mark.parametrize("backend_name", params("claude"))
def test_claude_code_stream(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    """stream-json with partial messages and nonessential traffic off: the deltas arrive one by one."""
    _stream("claude", bridges, backend_name, place)


@pytest.mark.parametrize("backend_name", params("gemini"))
def test_gemini_cli_stream(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _stream("gemini", bridges, backend_name, place)


@pytest.mark.parametrize("backend_name", params("qwen"))
def test_qwen_code_stream(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _stream("qwen", bridges, backend_name, place)


def _stream(client: str, bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    backend = bridges(backend_name)
    marker = f"stream-{client}-{backend_name}"
    final = ("One, ", "two, ", "three: ", f"{marker} streamed.")
    script = rc.Script(backend, marker, TOOLS[client], final)
    backend.respond(script)
    refused = len(rejections(backend))
    run = run_client(client, backend, f"Count to three. ({marker})", place, stream=True, nonessential=False)
    door = bridges.door(backend_name, client, "stream")
    gaps_at_door(door)
    assert run.returncode == 0, run.describe()
    assert answer_text(client, run, stream=True).strip() == "".join(final).strip()
    pieces = streamed_pieces(client, run)
    assert len(pieces) >= 2 and "".join(pieces).strip() == "".join(final).strip(), pieces
    assert any(r.stream for r in door), [rc.shape(r) for r in door]
    assert script.main, "the client's main request never reached the upstream"
    assert rejections(backend)[refused:] == [], f"the strict {backend_name} fake refused requests"
    assert all(r.status == 200 for r in door), [(rc.shape(r), r.error) for r in door]


@pytest.mark.parametrize("backend_name", params("claude"))
def test_claude_code_agentic_write(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _agentic("claude", bridges, backend_name, place)


@pytest.mark.parametrize("backend_name", params("gemini"))
def test_gemini_cli_agentic_write_file(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _agentic("gemini", bridges, backend_name, place)


@pytest.mark.parametrize("backend_name", params("codex"))
def test_codex_agentic_exec(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _agentic("codex", bridges, backend_name, place)


@pytest.mark.parametrize("backend_name", params("qwen"))
def test_qwen_code_agentic_write_file(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    _agentic("qwen", bridges, backend_name, place)


def _agentic(client: str, bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    backend = bridges(backend_name)
    home, cwd = place
    marker = f"agentic-{client}-{backend_name}"
    target = cwd / "note.txt"
    call_id = f"call_{client}_{backend_name.replace('-', '_')}_1"
    if client == "codex":
        args: dict[str, Any] = {"cmd": f"printf %s {shlex.quote(CONTENT)} > note.txt", "workdir": str(cwd)}
    else:
        args = {"file_path": str(target), "content": CONTENT}
    final = (f"Done: note.txt is written ({marker}).",)
    script = rc.Script(backend, marker, TOOLS[client], final, call=(TOOLS[client], call_id, args))
    backend.respond(script)
    refused = len(rejections(backend))
    run = run_client(client, backend, f"Write note.txt in this folder. ({marker})", place)
    door = bridges.door(backend_name, client, "agentic")
    if client == "codex":
        gaps_of_codex(run)
    gaps_at_door(door)
    assert run.returncode == 0, run.describe()
    assert target.exists(), f"the client did not run the tool call\n{run.describe()}"
    assert target.read_text() == CONTENT
    assert answer_text(client, run, stream=False).strip() == final[0]
    assert len(script.main) >= 2, "no request carried the tool result"
    results = rc.tool_results(backend_name, script.main[-1])
    assert len(results) == 1, results
    key, result = results[0]
    expected_key = TOOLS[client] if backend_name in GEMINI_WIRE and key == TOOLS[client] else call_id
    assert key == expected_key
    if client == "gemini" and backend_name in GEMINI_WIRE:
        _check_gemini_cli_result(result)
    assert script.main, "the client's main request never reached the upstream"
    assert rejections(backend)[refused:] == [], f"the strict {backend_name} fake refused requests"
    assert all(r.status == 200 for r in door), [(rc.shape(r), r.error) for r in door]


def _check_gemini_cli_result(result: Any) -> None:
    """Gemini CLI sends {"output": "<text>"}; the upstream must get exactly that."""
    assert isinstance(result, dict) and set(result) == {"output"}, result
    with contextlib.suppress(ValueError, TypeError):
        inner = json.loads(result["output"])
        if isinstance(inner, dict) and "output" in inner:
            raise DoubleWrappedToolResult(json.dumps(result)[:300])
    assert isinstance(result["output"], str) and result["output"], result


@pytest.mark.parametrize("backend_name", ["gemini-cli", "gemini"])
def test_gemini_cli_default_auto_routing(bridges: Bridges, backend_name: str, place: tuple[Path, Path]) -> None:
    """Gemini CLI with no -m: its auto-routing classifier call, then the model it chose."""
    backend = bridges(backend_name)
    marker = f"auto-gemini-{backend_name}"
    final = (f"Auto-routed answer ({marker}).",)
    script = rc.Script(backend, marker, TOOLS["gemini"], final)
    backend.respond(script)
    refused = len(rejections(backend))
    run = run_client("gemini", backend, f"Say hello. ({marker})", place, model=None)
    door = bridges.door(backend_name, "gemini", "auto-routing")
    gaps_at_door(door)
    assert run.returncode == 0, run.describe()
    assert answer_text("gemini", run, stream=False).strip() == final[0]
    assert rejections(backend)[refused:] == [], f"the strict {backend_name} fake refused requests"
