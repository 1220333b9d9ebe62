"""The conversations behind recent Responses, for `previous_response_id`.

OpenAI keeps every response made with `store: true` (its default) and lets the next request name it
instead of sending the conversation again. The bridge keeps them in memory, in this process: the
last `capacity` responses made with `store` true, each as the whole conversation up to and including
its answer (canonical messages, thought signatures included). A bridge restart forgets them, and an
id that has been pushed out answers `previous_response_not_found`, as OpenAI does for an unknown id.

Why not the recorder's database, which holds the same conversations: the recorder writes on a
background thread (a client's next request can arrive before the row is written), redacts secrets
in the text it stores, keeps images apart, and can be turned off (`record = false`) or asked to keep
no bodies. A conversation rebuilt from it would not be the one the model saw.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from llmbridge.formats.responses.parse import Conversation

DEFAULT_CAPACITY = 256


class ResponseStore:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Conversation] = OrderedDict()
        # Large request bodies are parsed on a worker thread (`Bridge._parse`), so `get` may run there
        # while `put` runs on the event loop: both reorder the dict.
        self._lock = threading.Lock()

    def put(self, response_id: str, conversation: Conversation) -> None:
        with self._lock:
            self._items[response_id] = conversation
            self._items.move_to_end(response_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> Conversation | None:
        with self._lock:
            found = self._items.get(response_id)
            if found is not None:
                self._items.move_to_end(response_id)  # a conversation still going stays
            return found

    def __len__(self) -> int:
        return len(self._items)
