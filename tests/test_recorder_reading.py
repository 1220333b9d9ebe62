"""The read side of one exchange (llmbridge/recorder/reading.py), on a database the real recorder wrote."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from llmbridge.recorder import Recorder
from llmbridge.recorder.reading import load_exchange
from tests.fakes.recordings import HOSTILE, conversation, exchange, lighthouse_conversation, user


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[sqlite3.Connection, list[str], list[str]]:
    """Two interleaved conversations with the same system prompt, and a lone question."""
    path = tmp_path / "bridge.db"
    rec = Recorder(path)
    rec.open()
    start = time.time() - 600
    plain = conversation(3, started=start)
    rich = lighthouse_conversation(started=start + 0.5)
    for record in (plain[0], rich[0], plain[1], rich[1], plain[2]):
        rec.submit(record)
    rec.submit(exchange([user("question 0")], "another answer", started=start + 10))  # same first question
    rec.flush()
    rec.close()
    return sqlite3.connect(path), [r.id for r in plain], [r.id for r in rich]


def test_the_conversation_as_the_model_saw_it(recorded) -> None:
    conn, _, (first, second) = recorded
    view = load_exchange(conn, second)
    assert view is not None
    assert [m.role for m in view.conversation] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert view.conversation[1].parts[0].text.endswith(HOSTILE)  # stored as sent; the page escapes it
    photo = view.conversation[3].parts
    assert [p.type for p in photo] == ["text", "image"] and view.blob_types == {photo[1].blob_hash: "image/png"}
    thinking, call = view.conversation[4].parts
    assert thinking.type == "reasoning" and "weather tool" in (thinking.text or "")
    assert (call.type, call.tool_name, call.payload["arguments"]) == ("tool_call", "get_weather", {"city": "Brest"})
    (result,) = view.conversation[5].parts
    assert (result.type, result.tool_call_id, result.text) == ("tool_result", "call_1", "fog, 12 C")
    assert view.answer is not None and view.answer.parts[0].text == "Foggy: the lighthouse beams matter today."
    assert [(a["position"], a["account"], a["status"]) for a in view.attempts] == [
        (1, "acct-limited", 429),
        (2, "acct-1", 200),
    ]
    assert view.row["input_tokens"] == 120 and view.row["usage_estimated"] == 1
    assert "request_raw" not in view.row
    assert load_exchange(conn, "no-such-exchange") is None


def test_previous_and_next_turn_stay_in_one_conversation(recorded) -> None:
    conn, plain, rich = recorded
    turns = {i: load_exchange(conn, i) for i in plain + rich}
    assert [(turns[i].previous_id, turns[i].next_id) for i in plain] == [  # type: ignore[union-attr]
        (None, plain[1]),
        (plain[0], plain[2]),
        (plain[1], None),
    ]
    assert [(turns[i].previous_id, turns[i].next_id) for i in rich] == [(None, rich[1]), (rich[0], None)]  # type: ignore[union-attr]


def test_a_client_that_rewrites_an_earlier_answer_still_links_its_turns(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    rec = Recorder(path)
    rec.open()
    first = exchange([user("hello")], "Hi there!", started=time.time() - 60)
    # The client sends the answer back trimmed: its hash differs from the recorded answer's.
    second = exchange([user("hello"), user("Hi there")], "fine", started=time.time() - 30)
    second.request_canonical["messages"][1]["role"] = "assistant"  # type: ignore[index]
    for record in (first, second):
        rec.submit(record)
    rec.flush()
    rec.close()
    conn = sqlite3.connect(path)
    assert load_exchange(conn, first.id).next_id == second.id  # type: ignore[union-attr]
    assert load_exchange(conn, second.id).previous_id == first.id  # type: ignore[union-attr]
