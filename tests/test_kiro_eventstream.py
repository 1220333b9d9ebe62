"""The binary AWS event stream: real Kiro captures decoded byte-exactly, split at every boundary."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from llmbridge.accumulate import StreamAccumulator
from llmbridge.canonical import StreamError, TextDelta, ToolCallStart
from llmbridge.providers.kiro.decoder import KiroDecoder
from llmbridge.providers.kiro.eventstream import EventStreamDecodeError, EventStreamReader
from tests.fakes.kiro import encode_frame, event_frame

SAMPLES = Path(__file__).parents[1] / "replay" / "samples" / "kiro"
NAMES = [
    "kiro-eventstream-simple-text",
    "kiro-eventstream-medium-text",
    "kiro-eventstream-text-then-tooluse-start",
]
LINE = re.compile(r"total=(\d+) headers=(\d+) prelude_crc=([0-9a-f]{8}) msg_crc=([0-9a-f]{8}) \| (.*?) \| (.*)$")


def sample_bytes(name: str) -> bytes:
    path = SAMPLES / f"{name}.hex"
    return bytes.fromhex(path.read_text().strip())


def expected_frames(name: str) -> list[dict]:
    path = SAMPLES / f"{name}.decoded.txt"
    frames = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = LINE.match(line)
        assert m, line
        headers = dict(h.split("=", 1) for h in m.group(5).split("; "))
        frames.append(
            {
                "total": int(m.group(1)),
                "headers_length": int(m.group(2)),
                "prelude_crc": m.group(3),
                "msg_crc": m.group(4),
                "headers": headers,
                "payload": m.group(6).encode("utf-8"),
            }
        )
    return frames


def decode_all(data: bytes, cuts: list[int]) -> list:
    reader = EventStreamReader()
    frames, start = [], 0
    for cut in [*cuts, len(data)]:
        frames.extend(reader.feed(data[start:cut]))
        start = cut
    assert reader.pending() == 0
    return frames


@pytest.mark.parametrize("name", NAMES)
def test_sample_decodes_byte_exactly(name: str) -> None:
    data = sample_bytes(name)
    expected = expected_frames(name)
    frames = decode_all(data, [])
    assert len(frames) == len(expected)
    offset = 0
    for frame, want in zip(frames, expected, strict=True):
        assert frame.total_length == want["total"]
        assert frame.headers == want["headers"]
        # decoded.txt prints the payload as it is (JSON escapes kept): compare the bytes exactly
        assert frame.payload == want["payload"]
        raw = data[offset : offset + frame.total_length]
        assert struct.unpack(">I", raw[4:8])[0] == want["headers_length"]
        assert raw[8:12].hex() == want["prelude_crc"] and raw[-4:].hex() == want["msg_crc"]
        offset += frame.total_length
    assert offset == len(data)


@pytest.mark.parametrize("name", NAMES)
def test_sample_split_at_every_boundary(name: str) -> None:
    data = sample_bytes(name)
    whole = [(f.headers, f.payload) for f in decode_all(data, [])]
    for cut in range(1, len(data)):
        assert [(f.headers, f.payload) for f in decode_all(data, [cut])] == whole, cut


def test_sample_byte_by_byte_through_decoder() -> None:
    data = sample_bytes("kiro-eventstream-text-then-tooluse-start")
    decoder = KiroDecoder()
    events = []
    for i in range(len(data)):
        events.extend(decoder.feed(data[i : i + 1]))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "我将为您创建一个高级天气展示卡片，完全符合您的要求。让我先创建一个包含所有功能的单一HTML文件。"
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.name, s.id) for s in starts] == [("Write", "tooluse_1DCqyICMR-CfTS36UNNiwA")]
    end = decoder.close()  # the capture stops after the tool start: arguments close as {}
    acc = StreamAccumulator("r", "m")
    acc.feed_all(events + end)
    result = acc.result()
    assert result.tool_calls()[0].arguments == {}
    assert result.finish_reason == "tool_calls"
    assert result.usage is not None and result.usage.estimated


def test_medium_sample_text_is_json() -> None:
    decoder = KiroDecoder()
    events = decoder.feed(sample_bytes("kiro-eventstream-medium-text")) + decoder.close()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert json.loads(text) == {"isNewTopic": True, "title": "Weather Card"}


@pytest.mark.parametrize("position", ["prelude_crc", "payload", "message_crc", "length"])
def test_crc_corruption_detected(position: str) -> None:
    data = bytearray(sample_bytes("kiro-eventstream-simple-text"))
    index = {"prelude_crc": 9, "payload": 120, "message_crc": 141, "length": 2}[position]
    data[index] ^= 0x01
    reader = EventStreamReader()
    with pytest.raises(EventStreamDecodeError):
        reader.feed(bytes(data))
    with pytest.raises(EventStreamDecodeError):  # poisoned: nothing after a corrupt frame
        reader.feed(b"")


def test_corruption_in_second_frame_keeps_the_first() -> None:
    data = bytearray(sample_bytes("kiro-eventstream-simple-text"))
    data[200] ^= 0x40
    decoder = KiroDecoder()
    events = decoder.feed(bytes(data))
    assert isinstance(events[0], TextDelta) and events[0].text == "Immersive Weather Car"
    assert isinstance(events[-1], StreamError) and "ChecksumMismatch" in events[-1].message
    assert decoder.feed(b"more") == [] and decoder.close() == []


def test_truncated_stream_reported() -> None:
    data = sample_bytes("kiro-eventstream-simple-text")
    decoder = KiroDecoder()
    events = decoder.feed(data[:-10]) + decoder.close()
    assert isinstance(events[-1], StreamError) and "inside" in events[-1].message


def test_too_short_message_rejected() -> None:
    prelude = struct.pack(">II", 12, 0)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(EventStreamDecodeError):
        EventStreamReader().feed(prelude + b"\x00" * 8)


def test_own_encoder_round_trip() -> None:
    frame = encode_frame({":event-type": "x", ":message-type": "event"}, b"{}")
    (decoded,) = EventStreamReader().feed(frame)
    assert decoded.headers == {":event-type": "x", ":message-type": "event"} and decoded.payload == b"{}"
    # our encoder reproduces the real capture byte for byte
    first = sample_bytes("kiro-eventstream-simple-text")[:143]
    assert event_frame("assistantResponseEvent", {"content": "Immersive Weather Car"}) == first
