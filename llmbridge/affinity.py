"""Session affinity: the requests of one conversation stay on the account that answered it.

A provider sees a coherent session (the same account for every turn), and its prompt cache, which is
per account, keeps paying off. The pool still decides whether that account can take the request: a
pinned account that is cooling, dead, at its pacing limit or failing is passed over like any other,
and the conversation then sticks to the account that answered instead.

A conversation is named by `llmbridge.conversation.conversation_key` (the client's session header,
else its first user message, scoped by the client key). Memory is bounded twice: at most
`max_conversations` are remembered (the least recently used goes first), and one idle for
`idle_seconds` is forgotten.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from typing import Callable

MAX_CONVERSATIONS = 10_000
IDLE_SECONDS = 2 * 3600.0  # a conversation untouched this long has likely ended; its prompt cache has


class Affinity:
    def __init__(
        self,
        max_conversations: int = MAX_CONVERSATIONS,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_conversations = max_conversations
        self.idle_seconds = idle_seconds
        self.clock = clock
        self._pins: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (account, last used)

    def account_for(self, conversation: str) -> str | None:
        """The account this conversation is pinned to, if it is remembered and not idle too long."""
        self._expire()
        pinned = self._pins.get(conversation)
        return pinned[0] if pinned is not None else None

    def pin(self, conversation: str, account: str) -> None:
        """`account` answered this conversation: its next requests go there first."""
        self._pins[conversation] = (account, self.clock())
        self._pins.move_to_end(conversation)
        while len(self._pins) > self.max_conversations:
            self._pins.popitem(last=False)

    def forget_account(self, account: str) -> None:
        """An account left the pool (config reload): its conversations are free to go anywhere."""
        for key in [k for k, (name, _) in self._pins.items() if name == account]:
            del self._pins[key]

    def counts(self) -> Counter[str]:
        """How many remembered conversations each account holds."""
        self._expire()
        return Counter(name for name, _ in self._pins.values())

    def __len__(self) -> int:
        return len(self._pins)

    def _expire(self) -> None:
        """Forget conversations idle too long; the oldest are first in the LRU order."""
        cutoff = self.clock() - self.idle_seconds
        while self._pins:
            key, (_, used) = next(iter(self._pins.items()))
            if used >= cutoff:
                return
            del self._pins[key]
