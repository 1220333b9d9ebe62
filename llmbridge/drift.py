"""`llmbridge drift`: what the bridge sends upstream, compared with what the official client sends for
the same conversation, field by field, where a server could tell them apart.

Both sides are capture runs (`llmbridge.capture`: the official client's traffic, and the bridge's own
upstream traffic captured the same way), or exported capture folders. Compared:

* the sequence of calls: the distinct methods before the first generation (a client process's
  start-up: the first call in its place, the concurrent ones after it as a set), and the set of
  methods used at all;
* for each generation (Code Assist's `streamGenerateContent`, chat completions) and each start-up call,
  paired in order: method, path and query; header
  names, their order and values; JSON field presence, order and types; enum-like values exactly;
  id formats; the tool schema form (a key `parametersJsonSchema` vs `parameters`, and its `type`s).

Volatile values are normalized by rule before comparing (`normalize_header`, `id_class`): tokens,
lengths, hosts, the Node version, uuids, prompt counters, epoch milliseconds. Free text (prompts,
descriptions) is compared by type only. Differences that are known and justified are listed in
`DOCUMENTED` and reported apart; any other difference makes the exit status 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from llmbridge.capture import Call

GENERATION = ("streamGenerateContent", "generateContent", "completions")  # Code Assist; chat completions
# String values compared exactly (enums and names a server branches on); other strings by id class.
EXACT_KEYS = frozenset(
    {
        "type",
        "role",
        "model",
        "mode",
        "thinkingLevel",
        "ideType",
        "ideName",
        "pluginType",
        "platform",
        "updateChannel",
        "ideVersion",
        "tierId",
        "name",
        "mimeType",
        "responseMimeType",
        "thoughtSignature",
    }
)
# Numbers compared exactly under these keys (generation settings); elsewhere by type.
EXACT_NUMBERS_UNDER = frozenset({"generationConfig", "thinkingConfig"})
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ID_CLASSES = [
    (re.compile(rf"^{_UUID}########\d+$"), "<uuid>########<n>"),
    (re.compile(rf"^{_UUID}$"), "<uuid>"),
    (re.compile(r"^[A-Za-z_][\w.:-]*_\d{13}_\d+$"), "<name>_<epoch ms>_<n>"),
    (re.compile(r"^call_[0-9a-f]{8,}$"), "call_<hex>"),
]
ID_KEYS = frozenset({"session_id", "user_prompt_id", "id", "sessionId", "promptId"})


@dataclass(frozen=True)
class Documented:
    """A known difference: `where` is matched against an entry's location, `what` against its text."""

    where: str
    what: str
    why: str


DOCUMENTED = [
    Documented(
        "headers",
        "order",
        "h11, the HTTP/1.1 writer under httpx, always writes `host` first (RFC 7230 says it should); "
        "Node's fetch writes it after the request's own headers. Every other header is in the CLI's order.",
    ),
    Documented(
        "user_prompt_id",
        "'<uuid>########<n>' from the bridge; '<uuid>' in the capture",
        "Gemini CLI run with -p (one prompt per process: the only way to run it headless) sends its "
        "session id as the prompt id; in an interactive session it sends <session>########<n>. The "
        "bridge serves conversations of many turns, so it sends the interactive form.",
    ),
    Documented(
        "headers",
        "x-dashscope-authtype is 'qwen-oauth'; the client's: 'openai'",
        "Qwen Code 0.24.4 refuses its own Qwen OAuth login (the free tier ended), so its traffic is "
        "captured in its API-key mode, which sends the same request but names that auth type; the "
        "bridge's qwen accounts are Qwen OAuth logins.",
    ),
    Documented(
        "promptId",
        "'<uuid>########<n>' from the bridge; 'free-form' in the capture",
        "Qwen Code's subagents (the memory extractor after each prompt) send <session>#<agent>-<id>#<n>; "
        "a request that reaches the bridge does not say it comes from a subagent, so the bridge numbers "
        "it as the conversation's next prompt.",
    ),
    Documented(
        "function.parameters",
        "is the bridge's own",
        "A tool declared without parameters reaches the upstream with the empty object schema: the "
        "bridge's canonical tool always carries a schema, and every OpenAI-compatible server takes it.",
    ),
]


@dataclass
class Entry:
    where: str
    what: str
    documented: Documented | None = None

    def line(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Report:
    entries: list[Entry]
    official: str
    bridge: str

    @property
    def drift(self) -> list[Entry]:
        return [e for e in self.entries if e.documented is None]

    @property
    def accepted(self) -> list[Entry]:
        return [e for e in self.entries if e.documented is not None]

    def text(self) -> str:
        out = [f"drift: {self.official} (official) vs {self.bridge} (bridge)"]
        if self.drift:
            out.append(f"\n{len(self.drift)} difference(s):")
            out += [f"  - {e.line()}" for e in self.drift]
        else:
            out.append("\nno drift")
        if self.accepted:
            out.append(f"\n{len(self.accepted)} documented difference(s), accepted:")
            for e in self.accepted:
                assert e.documented is not None
                out.append(f"  - {e.line()}\n      why: {e.documented.why}")
        return "\n".join(out)


# --- normalization -----------------------------------------------------------------------------------


def id_class(value: str) -> str | None:
    for pattern, name in ID_CLASSES:
        if pattern.match(value):
            return name
    return None


def normalize_header(name: str, value: str) -> str:
    """A header value with what differs on every request or machine replaced by a placeholder."""
    lowered = name.lower()
    if lowered == "authorization":
        return value.split(" ", 1)[0] + " <token>" if " " in value else "<token>"
    if lowered == "content-length":
        return "<length>"
    if lowered == "host":
        return "<host>"
    if lowered == "x-goog-api-client":
        return re.sub(r"gl-node/[\w.]+", "gl-node/<node version>", value)
    return value


# --- comparing ---------------------------------------------------------------------------------------


def compare_sequences(official: list[Call], bridge: list[Call]) -> list[Entry]:
    entries = []
    start_o, start_b = startup(official), startup(bridge)
    if start_o != start_b:
        entries.append(Entry("calls", f"start-up sequence {' > '.join(start_b)}; the client's: {' > '.join(start_o)}"))
    used_o, used_b = {c.rpc for c in official}, {c.rpc for c in bridge}
    for rpc in sorted(used_o - used_b):
        entries.append(Entry("calls", f"the client calls {rpc}, the bridge never does"))
    for rpc in sorted(used_b - used_o):
        entries.append(Entry("calls", f"the bridge calls {rpc}, the client never does"))
    return entries


def startup(calls: list[Call]) -> list[str]:
    """Distinct methods before the first generation: the first in its place, the ones after it as a
    set (sorted), since the CLI issues them concurrently and their order varies from run to run."""
    seen: list[str] = []
    for call in calls:
        if call.rpc in GENERATION:
            return seen[:1] + sorted(seen[1:]) + [call.rpc]
        if call.rpc not in seen:
            seen.append(call.rpc)
    return seen[:1] + sorted(seen[1:])


def pairs(official: list[Call], bridge: list[Call]) -> Iterable[tuple[str, Call | None, Call | None]]:
    """Calls paired by method, in order: the n-th of a method on one side with the n-th on the other.
    Start-up calls are taken from each side's first start-up only (a client process repeats them)."""
    by_o: dict[str, list[Call]] = {}
    by_b: dict[str, list[Call]] = {}
    for calls, by in ((official, by_o), (bridge, by_b)):
        for call in calls:
            by.setdefault(call.rpc, []).append(call)
    for rpc in sorted(set(by_o) | set(by_b)):
        left, right = by_o.get(rpc, []), by_b.get(rpc, [])
        if rpc not in GENERATION:
            left, right = left[:1], right[:1]
        for i in range(max(len(left), len(right))):
            yield (
                f"{rpc}[{i}]" if rpc in GENERATION else rpc,
                left[i] if i < len(left) else None,
                right[i] if i < len(right) else None,
            )


def compare_calls(label: str, official: Call, bridge: Call) -> list[Entry]:
    entries = []
    if official.method != bridge.method or official.target != bridge.target:
        entries.append(
            Entry(f"{label} url", f"{bridge.method} {bridge.target}; the client's: {official.method} {official.target}")
        )
    entries += compare_headers(label, official.headers, bridge.headers)
    entries += compare_json(label, official.body, bridge.body, "body")
    return entries


def compare_headers(label: str, official: list[tuple[str, str]], bridge: list[tuple[str, str]]) -> list[Entry]:
    entries = []
    names_o, names_b = [k for k, _ in official], [k for k, _ in bridge]
    lower_o, lower_b = [k.lower() for k in names_o], [k.lower() for k in names_b]
    for name in [k for k in names_o if k.lower() not in lower_b]:
        entries.append(Entry(f"{label} headers", f"{name} missing"))
    for name in [k for k in names_b if k.lower() not in lower_o]:
        entries.append(Entry(f"{label} headers", f"{name} is the bridge's own"))
    common_o = [k for k in names_o if k.lower() in lower_b]
    common_b = [k for k in names_b if k.lower() in lower_o]
    if [k.lower() for k in common_o] != [k.lower() for k in common_b]:
        order_b, order_o = ", ".join(k.lower() for k in common_b), ", ".join(k.lower() for k in common_o)
        entries.append(Entry(f"{label} headers", f"order {order_b}; the client's: {order_o}"))
    case_o = {k.lower(): k for k in common_o}
    for name in common_b:
        if case_o[name.lower()] != name:
            entries.append(Entry(f"{label} headers", f"{name!r} is spelled {case_o[name.lower()]!r} by the client"))
    values_o = {k.lower(): normalize_header(k, v) for k, v in official}
    for name, value in bridge:
        mine, theirs = normalize_header(name, value), values_o.get(name.lower())
        if theirs is not None and mine != theirs:
            entries.append(Entry(f"{label} headers", f"{name.lower()} is {mine!r}; the client's: {theirs!r}"))
    return entries


def compare_json(label: str, official: Any, bridge: Any, where: str, parent: str = "") -> list[Entry]:
    key = where.rsplit(".", 1)[-1].split("[")[0]
    if type(official) is not type(bridge) and not (_number(official) and _number(bridge)):
        return [Entry(f"{label} {where}", f"is {_kind(bridge)}; the client's is {_kind(official)}")]
    if isinstance(official, dict):
        entries = []
        for k in [k for k in official if k not in bridge]:
            entries.append(Entry(f"{label} {where}.{k}", "missing"))
        for k in [k for k in bridge if k not in official]:
            entries.append(Entry(f"{label} {where}.{k}", "is the bridge's own"))
        common_o, common_b = [k for k in official if k in bridge], [k for k in bridge if k in official]
        if common_o != common_b:
            entries.append(Entry(f"{label} {where}", f"key order {common_b}; the client's: {common_o}"))
        for k in common_o:
            entries += compare_json(label, official[k], bridge[k], f"{where}.{k}", key)
        return entries
    if isinstance(official, list):
        entries = []
        if len(official) != len(bridge):
            entries.append(Entry(f"{label} {where}", f"has {len(bridge)} items; the client's {len(official)}"))
        for i, (o, b) in enumerate(zip(official, bridge)):
            entries += compare_json(label, o, b, f"{where}[{i}]", key)
        return entries
    if isinstance(official, str) and isinstance(bridge, str):
        if key in EXACT_KEYS and parent != "properties":
            return (
                [] if official == bridge else [Entry(f"{label} {where}", f"is {bridge!r}; the client's: {official!r}")]
            )
        if key in ID_KEYS or id_class(official) or id_class(bridge):
            mine, theirs = id_class(bridge) or "free-form", id_class(official) or "free-form"
            if mine != theirs:
                entries_what = f"{mine!r} from the bridge; {theirs!r} in the capture"
                return [Entry(key if key in ("user_prompt_id", "session_id") else f"{label} {where}", entries_what)]
        return []
    if (parent in EXACT_NUMBERS_UNDER or isinstance(official, bool)) and official != bridge:
        return [Entry(f"{label} {where}", f"is {bridge!r}; the client's: {official!r}")]
    return []


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _documented(entry: Entry) -> Documented | None:
    for known in DOCUMENTED:
        if known.where in entry.where and known.what in entry.what:
            return known
    return None


def compare(official: list[Call], bridge: list[Call], official_name: str, bridge_name: str) -> Report:
    entries = compare_sequences(official, bridge)
    for label, left, right in pairs(official, bridge):
        if left is None or right is None:
            if label.split("[")[0] in GENERATION:
                what = (
                    "the client makes this call, the bridge does not" if right is None else "only the bridge makes it"
                )
                entries.append(Entry(label, what))
            continue
        entries += compare_calls(label, left, right)
    unique: dict[str, Entry] = {}
    for entry in entries:  # one line per distinct finding (the same header drift on every call once)
        unique.setdefault(_dedupe_key(entry), entry)
    found = list(unique.values())
    for entry in found:
        entry.documented = _documented(entry)
    return Report(found, official_name, bridge_name)


def _dedupe_key(entry: Entry) -> str:
    where = re.sub(r"^\w+(\[\d+\])? ", "", entry.where)  # the same finding on several calls counts once
    return f"{where}|{entry.what}"
