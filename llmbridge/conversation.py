"""Which client conversation a request belongs to: for providers whose official client names its
conversation on the wire (Code Assist's `session_id` and `user_prompt_id`), and for session affinity
(`llmbridge.affinity`: one conversation's requests stay on one account).

The bridge keeps no conversation state: clients resend the whole history with every turn. A
conversation is therefore recognised by what stays the same across its turns:

* the client's own session header, where the client sends one (Claude Code's
  `x-claude-code-session-id`, Codex's `session-id`): the client's word is the best evidence;
* else its first user message, which every later turn of the same conversation repeats verbatim.

Either is scoped by the client key's label, so two users of one bridge never share a conversation,
and hashed with a secret the provider draws at start-up, so the id reveals nothing of the content
and two bridges (or two accounts) sending the same first prompt never send the same id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

from llmbridge.canonical import Message, ToolResultPart

# Client headers that name the client's own session, checked in this order.
SESSION_HEADERS = ("x-claude-code-session-id", "session-id")


def conversation_scope(key_label: str | None, headers: dict[str, str]) -> str:
    """The client key's label, plus the client's own session id when it sends one."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in SESSION_HEADERS:
        if lowered.get(name):
            return json.dumps([key_label, name, lowered[name]])
    return json.dumps([key_label])


def _has_session(scope: str) -> bool:
    try:
        return len(json.loads(scope)) == 3
    except ValueError:
        return False


def first_prompt(messages: list[Message]) -> str:
    """The first user message as canonical JSON (its parts, not their provider metadata)."""
    for message in messages:
        if message.role == "user":
            parts = [p.model_dump(mode="json", exclude={"provider_metadata"}) for p in message.parts]
            return json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return ""


def prompt_number(messages: list[Message]) -> int:
    """How many prompts the user has sent: user turns holding more than tool results. A tool
    result going back to the model continues the same prompt."""
    count = sum(1 for m in messages if m.role == "user" and any(not isinstance(p, ToolResultPart) for p in m.parts))
    return max(count, 1)


def _material(scope: str | None, messages: list[Message]) -> str:
    """What identifies the conversation: the client's session id where it sends one, else the
    scope and the first user message."""
    scope = scope or json.dumps([None])
    return scope if _has_session(scope) else scope + "\x00" + first_prompt(messages)


def conversation_key(secret: bytes, scope: str | None, messages: list[Message]) -> str:
    """A short keyed hash naming the conversation, the same for every turn of it (what session
    affinity remembers: no content, and nothing another process could match)."""
    return hmac.new(secret, _material(scope, messages).encode(), hashlib.sha256).hexdigest()[:32]


def session_uuid(secret: bytes, scope: str | None, messages: list[Message]) -> str:
    """A random-looking version-4 UUID, the same for every turn of one conversation."""
    material = _material(scope, messages)
    digest = bytearray(hmac.new(secret, material.encode(), hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40  # version 4
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(digest)))
