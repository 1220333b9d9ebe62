"""What a reasoning item's `encrypted_content` carries through a Responses client.

OpenAI's reasoning items hold the model's thinking as an opaque `encrypted_content` that a client asks
for (`include: ["reasoning.encrypted_content"]`) and sends back verbatim on the next turn (with
`store: false` that is the only way thinking survives a tool loop). The bridge uses that field for
the opaque values its backends need back:

- Gemini's `thoughtSignature`, with the part it was on: the thought itself (`thought`), the first
  function call of the turn (`call`) or its first text (`text`); a tool loop over Gemini 3 fails
  without the call's signature.
- Claude's thinking `signature` (kiro, anthropic) with the exact thinking text it signs, and
  `redacted_thinking` data: Anthropic verifies them when they come back.

The value is `llmbridge.1.` + base64url(compact JSON); it is not encrypted (the bridge is local and
the client holds the conversation anyway), only opaque. Anything else (OpenAI's own encrypted
reasoning, a value from another bridge version) reads as nothing and is dropped: no backend behind
the bridge could use it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Literal, cast

PREFIX = "llmbridge.1."
Placement = Literal["thought", "call", "text"]
PLACEMENTS: tuple[Placement, ...] = ("thought", "call", "text")


@dataclass
class Sealed:
    """The contents of one reasoning item's `encrypted_content`."""

    text: str = ""  # the thinking text (a Claude signature signs exactly this)
    signature: str | None = None  # Claude's thinking signature
    redacted: str | None = None  # Anthropic redacted_thinking data
    gemini: str | None = None  # Gemini's thoughtSignature ...
    placement: Placement = "thought"  # ... and the part it belongs on

    def empty(self) -> bool:
        return not (self.signature or self.redacted or self.gemini)


def seal(sealed: Sealed) -> str:
    fields = {"t": sealed.text, "s": sealed.signature, "r": sealed.redacted, "g": sealed.gemini}
    fields = {k: v for k, v in fields.items() if v}
    if sealed.gemini:
        fields["p"] = sealed.placement
    raw = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unseal(value: str) -> Sealed | None:
    """The contents of a value `seal` made; None for anything else."""
    if not value.startswith(PREFIX):
        return None
    data = value[len(PREFIX) :]
    try:
        fields = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(fields, dict):
        return None
    placement = fields.get("p", "thought")
    strings = {k: fields.get(k) if isinstance(fields.get(k), str) else None for k in ("t", "s", "r", "g")}
    return Sealed(
        text=strings["t"] or "",
        signature=strings["s"],
        redacted=strings["r"],
        gemini=strings["g"],
        placement=cast(Placement, placement) if placement in PLACEMENTS else "thought",
    )
