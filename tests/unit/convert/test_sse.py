"""The incremental SSE parser: any byte split gives the same events."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpp_claude.convert import SseEvent, SseParser
from mpp_claude.errors import ConversionError

RAW = (
    b": comment\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"event: ping\r\ndata: {}\r\n\r\n"
    b"data: line1\rdata: line2\r\r"
    b"event: x\ndata:no-space\nid: 7\nretry: 10\n\n"
)
EXPECTED = [
    SseEvent("message_start", '{"a": 1}'),
    SseEvent("ping", "{}"),
    SseEvent("message", "line1\nline2"),
    SseEvent("x", "no-space"),
]


def _parse(chunks: list[bytes]) -> list[SseEvent]:
    parser = SseParser()
    out: list[SseEvent] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out + parser.flush()


def test_whole_input() -> None:
    """LF, CRLF and CR line ends, comments, multi-line data, id/retry ignored."""
    assert _parse([RAW]) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(RAW)))
def test_every_two_way_split(cut: int) -> None:
    """Splitting the input anywhere (even inside CRLF) gives the same events."""
    assert _parse([RAW[:cut], RAW[cut:]]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(RAW)), max_size=12))
def test_random_splits(cuts: list[int]) -> None:
    """Any number of splits gives the same events."""
    points = sorted(set(cuts))
    chunks = [RAW[a:b] for a, b in zip([0, *points], [*points, len(RAW)], strict=True)]
    assert _parse(chunks) == EXPECTED


def test_unterminated_event_dropped() -> None:
    """An event without its blank line is not dispatched (truncation is detected upstream)."""
    assert _parse([b"event: a\ndata: 1"]) == []


def test_oversized_event_refused() -> None:
    """An event above the cap is a 502, not unbounded buffering."""
    parser = SseParser(max_event_bytes=64)
    with pytest.raises(ConversionError) as info:
        parser.feed(b"data: " + b"x" * 100)
    assert info.value.status == 502


def test_invalid_json_payload() -> None:
    """SseEvent.json() raises a 502 ConversionError for bad JSON."""
    with pytest.raises(ConversionError):
        SseEvent("message_start", "{nope").json()
