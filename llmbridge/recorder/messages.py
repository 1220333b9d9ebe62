"""The content-addressed message store.

A message's hash covers its parent's hash, its role and its parts (as canonical JSON), so a chain of
messages is identified by its head, and a client that re-sends its whole history on every turn adds
only the messages that are new. The system prompt, as sent, is the root of the chain (role `system`).

    hash = "b2:" + blake2b-128( canonical_json({"parent": parent_hash, "message": message}) )

Images are stored once in `blobs` (keyed by sha256 of media type + bytes); the message that holds
one refers to it by `blob_hash` instead of carrying the base64 data, so the hash stays small and
the same image sent twice is stored once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sqlite3
from typing import Any

from pydantic import TypeAdapter, ValidationError

from llmbridge.canonical import Part
from llmbridge.redact import redact_json

_PART = TypeAdapter(Part)

# Part fields lifted into their own columns; everything else of a part goes into `payload`.
_COLUMN_FIELDS = ("type", "text")


def canonical_json(value: Any) -> str:
    """Sorted keys, compact separators, non-ASCII kept: one text per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def message_hash(parent_hash: str | None, message: dict[str, Any]) -> str:
    data = canonical_json({"parent": parent_hash, "message": message}).encode()
    return "b2:" + hashlib.blake2b(data, digest_size=16).hexdigest()


def blob_hash(media_type: str, content: bytes) -> str:
    return "sha256:" + hashlib.sha256(media_type.encode() + b"\0" + content).hexdigest()


def infer_part_type(part: dict[str, Any]) -> str:
    """The part's type when a dump left it out (`model_dump(exclude_defaults=True)` drops it)."""
    if "tool_call_id" in part:
        return "tool_result"
    if "arguments" in part or ("id" in part and "name" in part):
        return "tool_call"
    if "signature" in part or "redacted" in part:
        return "reasoning"
    if "data" in part or "url" in part or "media_type" in part:
        return "image"
    return "text"


def normalize_part(part: dict[str, Any]) -> dict[str, Any]:
    """One canonical form per part, however it was dumped (with or without defaults), so that the
    same part always hashes the same. Parts the canonical model does not know are kept as given."""
    data = {**part, "type": part.get("type") or infer_part_type(part)}
    if data["type"] == "tool_result" and isinstance(data.get("content"), list):
        data["content"] = [
            {**c, "type": c.get("type") or infer_part_type(c)} if isinstance(c, dict) else c for c in data["content"]
        ]
    try:
        model = _PART.validate_python(data)
    except ValidationError:
        return compact_dict(data)
    out = {**model.model_dump(mode="json", exclude_defaults=True), "type": model.type}
    if model.type == "tool_result":
        out["content"] = [{**c.model_dump(mode="json", exclude_defaults=True), "type": c.type} for c in model.content]
    if model.type == "image":
        out["media_type"] = model.media_type
    return compact_dict(out)


def compact(value: Any) -> Any:
    """Drops None and empty containers, so `{}` and a missing field hash the same."""
    if isinstance(value, dict):
        return compact_dict(value)
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def compact_dict(value: dict[str, Any]) -> dict[str, Any]:
    """`compact` of a dict (typed: a dict stays a dict)."""
    items = ((k, compact(v)) for k, v in value.items())
    return {k: v for k, v in items if v is not None and v != {} and v != []}


class MessageStore:
    """Writes messages, parts and blobs on one connection; the caller owns the transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def store_request(self, canonical: dict[str, Any], exchange_id: str, now: str) -> str | None:
        """Stores the system prompt and messages of a canonical request; returns the head hash."""
        chain: list[dict[str, Any]] = []
        if canonical.get("system"):
            chain.append({"role": "system", "parts": canonical["system"]})
        chain.extend(canonical.get("messages") or [])
        return self.store_chain(chain, None, exchange_id, now)

    def store_response(self, result: dict[str, Any], parent_hash: str | None, exchange_id: str, now: str) -> str | None:
        """Stores the answer (a canonical ChatResult) as an assistant message under the request."""
        if not result.get("parts"):
            return None
        message = {"role": "assistant", "parts": result["parts"]}
        return self.store_chain([message], parent_hash, exchange_id, now)

    def store_chain(
        self, chain: list[dict[str, Any]], parent_hash: str | None, exchange_id: str, now: str
    ) -> str | None:
        """Stores each message under the previous one; returns the hash of the last."""
        for message in chain:
            parent_hash = self._store_message(message, parent_hash, exchange_id, now)
        return parent_hash

    def _store_message(self, message: dict[str, Any], parent_hash: str | None, exchange_id: str, now: str) -> str:
        stored = compact(redact_json(message))
        parts = [
            normalize_part(p) if isinstance(p, dict) else {"type": "unknown", "value": p}
            for p in stored.get("parts", [])
        ]
        stored["parts"] = [self._externalize_images(p, now) for p in parts]
        digest = message_hash(parent_hash, stored)
        metadata = stored.get("provider_metadata")
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO messages (hash, parent_hash, role, part_count, provider_metadata,"
            " first_exchange_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                digest,
                parent_hash,
                stored.get("role"),
                len(stored["parts"]),
                canonical_json(metadata) if metadata else None,
                exchange_id,
                now,
            ),
        )
        if cursor.rowcount:  # new message: its parts are new too
            for position, part in enumerate(stored["parts"]):
                self._insert_part(digest, position, part)
        return digest

    def _insert_part(self, digest: str, position: int, part: dict[str, Any]) -> None:
        kind = part.get("type")
        text = part.get("text")
        if kind == "tool_result":
            text = "".join(c.get("text", "") for c in part.get("content", []) if c.get("type") == "text")
        payload = {k: v for k, v in part.items() if k not in _COLUMN_FIELDS and k != "blob_hash"}
        self.conn.execute(
            "INSERT INTO parts (message_hash, position, type, text, tool_name, tool_call_id, blob_hash,"
            " payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                digest,
                position,
                kind,
                text if isinstance(text, str) else None,
                part.get("name"),
                part.get("id") if kind == "tool_call" else part.get("tool_call_id"),
                part.get("blob_hash"),
                canonical_json(payload) if payload else None,
            ),
        )

    def _externalize_images(self, part: dict[str, Any], now: str) -> dict[str, Any]:
        """A copy of the part with inline image data moved to `blobs` (also inside tool results)."""
        if part.get("type") == "image" and part.get("data"):
            media_type = part.get("media_type") or "image/png"  # the canonical default
            content = _decode_base64(part["data"])
            digest = blob_hash(media_type, content)
            self.conn.execute(
                "INSERT OR IGNORE INTO blobs (hash, media_type, size, content, created_at) VALUES (?, ?, ?, ?, ?)",
                (digest, media_type, len(content), content, now),
            )
            return {**{k: v for k, v in part.items() if k != "data"}, "blob_hash": digest}
        if part.get("type") == "tool_result" and part.get("content"):
            return {**part, "content": [self._externalize_images(c, now) for c in part["content"]]}
        return part


def _decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return data.encode()  # not base64 after all: keep what the client sent
