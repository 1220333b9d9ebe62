"""The one place that decodes the binary AWS event stream (`application/vnd.amazon.eventstream`).

Why botocore's `EventStreamBuffer` and not our own parser: botocore is already a dependency, it is
maintained by AWS for exactly this framing (every streaming AWS API in boto3 goes through it), it is
incremental (bytes can be added split anywhere), it verifies both the prelude CRC and the message CRC
as the spec requires (smithy `amazon-eventstream.rst`: clients MUST validate both), and it decodes all
ten header value types. What it does not do, this wrapper adds:

* a message shorter than the 16-byte minimum, or whose headers overrun the message, is an error
  (botocore would accept a CRC-valid 12-byte "message");
* one exception type (`EventStreamDecodeError`) for every framing problem, so callers need not know
  botocore's error classes;
* `pending()` tells whether a partial message is buffered, so that the end of the HTTP body inside a
  frame is reported as a truncated stream instead of silently dropped;
* after a framing error the stream is poisoned: nothing is decoded past a corrupt message, because
  its length field can no longer be trusted.

botocore keeps its buffer as one `bytes` it appends to, which copies on every `add_data`; Kiro frames
are small (100-300 bytes), so this costs nothing measurable here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from botocore.eventstream import EventStreamBuffer, ParserError

_PRELUDE_LENGTH = 12
_MIN_MESSAGE_LENGTH = 16


class EventStreamDecodeError(Exception):
    """The bytes are not a valid AWS event stream (bad CRC, bad lengths, bad header). `frames` holds
    the good frames decoded from the same `feed` call before the bad one."""

    def __init__(self, message: str, frames: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.frames: list[Frame] = frames or []


@dataclass(frozen=True)
class Frame:
    headers: dict[str, Any]
    payload: bytes
    total_length: int

    @property
    def message_type(self) -> str:
        return str(self.headers.get(":message-type", ""))

    @property
    def event_type(self) -> str:
        return str(self.headers.get(":event-type", ""))


class EventStreamReader:
    """Feed bytes split anywhere; get whole, CRC-verified frames back."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._buffered = 0  # bytes given to botocore and not yet returned as frames
        self._failed: str | None = None

    def feed(self, data: bytes) -> list[Frame]:
        if self._failed is not None:
            raise EventStreamDecodeError(self._failed)
        if not data:
            return []
        self._buffer.add_data(bytes(data))
        self._buffered += len(data)
        frames: list[Frame] = []
        try:
            for message in self._buffer:
                prelude = message.prelude
                if (
                    prelude.total_length < _MIN_MESSAGE_LENGTH
                    or prelude.headers_length > prelude.total_length - _MIN_MESSAGE_LENGTH
                ):
                    raise EventStreamDecodeError(
                        f"event-stream message with impossible lengths (total {prelude.total_length}, "
                        f"headers {prelude.headers_length})"
                    )
                self._buffered -= prelude.total_length
                frames.append(
                    Frame(
                        headers=dict(message.headers),
                        payload=bytes(message.payload),
                        total_length=prelude.total_length,
                    )
                )
        except EventStreamDecodeError as e:
            self._failed = str(e)
            raise EventStreamDecodeError(self._failed, frames) from None
        except ParserError as e:
            self._failed = f"corrupt event-stream message: {type(e).__name__}: {e}"
            raise EventStreamDecodeError(self._failed, frames) from e
        except (KeyError, IndexError, ValueError, struct.error) as e:  # bad header type / bytes
            self._failed = f"corrupt event-stream headers: {type(e).__name__}: {e}"
            raise EventStreamDecodeError(self._failed, frames) from e
        return frames

    def pending(self) -> int:
        """How many bytes of an incomplete message are buffered (0 at a clean frame boundary)."""
        return self._buffered
