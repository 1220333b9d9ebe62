"""The content-addressed message store (llmbridge/recorder/messages.py): shared history is stored once,
chains are rooted at the system prompt, parts and images keep what they hold."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import sqlite_utils

from llmbridge.canonical import ImagePart, Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from llmbridge.recorder import Recorder
from llmbridge.recorder.messages import normalize_part
from tests.fakes.recordings import conversation, exchange, user


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "recordings" / "bridge.db"


@pytest.fixture
def recorder(db_path: Path):
    rec = Recorder(db_path)
    rec.open()
    yield rec
    rec.close()


def count(path: Path, table: str) -> int:
    return sqlite_utils.Database(path)[table].count


def test_history_resent_each_turn_adds_only_new_messages(recorder: Recorder, db_path: Path) -> None:
    for record in conversation(3):
        recorder.submit(record)
    recorder.flush()
    # system + (user, assistant) x 3, each stored once; the assistant answer of turn N is the same
    # message as the one the client re-sends in turn N+1.
    assert count(db_path, "messages") == 7
    assert count(db_path, "parts") == 7
    assert count(db_path, "exchanges") == 3


def test_response_links_to_request_chain_rooted_at_system_prompt(recorder: Recorder, db_path: Path) -> None:
    records = conversation(2)
    for record in records:
        recorder.submit(record)
    recorder.flush()
    db = sqlite_utils.Database(db_path)
    row = db["exchanges"].get(records[-1].id)
    chain, digest = [], row["response_message_hash"]
    while digest:
        message = db["messages"].get(digest)
        text = next(db["parts"].rows_where("message_hash = ?", [digest]))["text"]
        chain.append((message["role"], text))
        digest = message["parent_hash"]
    assert chain[::-1] == [
        ("system", "You are a terse assistant."),
        ("user", "question 0"),
        ("assistant", "answer 0"),
        ("user", "question 1"),
        ("assistant", "answer 1"),
    ]


def test_same_history_under_another_system_prompt_is_a_new_chain(recorder: Recorder, db_path: Path) -> None:
    recorder.submit(exchange([user("same")], system="one"))
    recorder.submit(exchange([user("same")], system="two"))
    recorder.flush()
    assert count(db_path, "messages") == 2 * 3


def test_dump_with_or_without_defaults_hashes_the_same() -> None:
    parts = [
        TextPart(text="t"),
        ReasoningPart(text="r", signature="s"),
        ToolCallPart(id="c1", name="f", arguments={"a": 1}),
        ToolResultPart(tool_call_id="c1", content=[TextPart(text="out")]),
        ImagePart(data="AAAA"),
    ]
    for part in parts:
        full, lean = part.model_dump(mode="json"), part.model_dump(mode="json", exclude_defaults=True)
        assert normalize_part(full) == normalize_part(lean), part.type
        assert normalize_part(lean)["type"] == part.type


def test_parts_keep_tool_calls_results_reasoning_and_images_once(recorder: Recorder, db_path: Path) -> None:
    png = base64.b64encode(b"\x89PNG fake image bytes").decode()
    history = [
        Message(role="user", parts=[TextPart(text="look"), ImagePart(data=png, media_type="image/png")]),
        Message(
            role="assistant",
            parts=[
                ReasoningPart(text="hmm", signature="sig"),
                ToolCallPart(id="c1", name="lookup", arguments={"q": "x"}),
            ],
        ),
        Message(
            role="user",
            parts=[
                ToolResultPart(
                    tool_call_id="c1",
                    name="lookup",
                    content=[TextPart(text="found"), ImagePart(data=png, media_type="image/png")],
                )
            ],
        ),
    ]
    recorder.submit(exchange(history, "done"))
    recorder.flush()
    db = sqlite_utils.Database(db_path)
    kinds = [r["type"] for r in db.query("SELECT type FROM parts ORDER BY rowid")]
    assert kinds == ["text", "text", "image", "reasoning", "tool_call", "tool_result", "text"]
    assert db["blobs"].count == 1  # the same image twice is stored once
    blob = next(db["blobs"].rows)
    assert blob["content"] == b"\x89PNG fake image bytes" and blob["media_type"] == "image/png"
    tool = next(db["parts"].rows_where("type = 'tool_call'"))
    assert (tool["tool_name"], tool["tool_call_id"]) == ("lookup", "c1")
    assert png not in "".join(str(r) for r in db["parts"].rows)  # images are not inlined in parts
