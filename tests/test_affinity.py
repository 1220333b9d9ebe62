"""Session affinity's memory: pins, least-recently-used eviction, idle expiry, per-account counts."""

from __future__ import annotations

from llmbridge.affinity import Affinity


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_pinned_conversation_names_its_account_until_pinned_elsewhere() -> None:
    affinity = Affinity()
    assert affinity.account_for("c1") is None
    affinity.pin("c1", "a")
    assert affinity.account_for("c1") == "a"
    affinity.pin("c1", "b")
    assert affinity.account_for("c1") == "b" and len(affinity) == 1


def test_the_least_recently_used_conversation_goes_first_past_the_limit() -> None:
    affinity = Affinity(max_conversations=2)
    affinity.pin("old", "a")
    affinity.pin("kept", "a")
    affinity.pin("old", "a")  # used again: now the most recent
    affinity.pin("new", "b")
    assert affinity.account_for("kept") is None
    assert affinity.account_for("old") == "a" and affinity.account_for("new") == "b"


def test_an_idle_conversation_is_forgotten() -> None:
    clock = Clock()
    affinity = Affinity(idle_seconds=60, clock=clock)
    affinity.pin("idle", "a")
    clock.now += 30
    affinity.pin("busy", "b")
    clock.now += 31
    assert affinity.account_for("idle") is None and affinity.account_for("busy") == "b"
    assert len(affinity) == 1


def test_counts_per_account_and_forgetting_an_account() -> None:
    affinity = Affinity()
    for key, name in (("c1", "a"), ("c2", "a"), ("c3", "b")):
        affinity.pin(key, name)
    assert affinity.counts() == {"a": 2, "b": 1}
    affinity.forget_account("a")
    assert affinity.counts() == {"b": 1} and affinity.account_for("c1") is None
