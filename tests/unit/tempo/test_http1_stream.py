"""ResponseParser's streamed use (the sync client's transport): raw headers, body pieces as they
arrive, answers without a body, and the keep-alive verdict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpp_claude.tempo._http1 import MAX_BODY, ResponseParser, WireError

from ._framing import framed


def test_head_fields_are_exposed_raw() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 402 Payment Required\r\nWWW-Authenticate: Payment id=\"a\"\r\n"
                  b"X-Two: 1\r\nx-two:  2 \r\nContent-Length: 0\r\n\r\n")
    assert (p.status, p.reason, p.version) == (402, b"Payment Required", b"HTTP/1.1")
    assert p.headers == [(b"WWW-Authenticate", b'Payment id="a"'), (b"X-Two", b"1"), (b"x-two", b"2"),
                         (b"Content-Length", b"0")]
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n") and p.reason == b""


def test_chunked_body_is_handed_on_before_its_chunk_is_complete() -> None:
    p = ResponseParser(max_body=None)
    assert p.take(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") == b""
    assert p.head_done and not p.done
    assert p.take(b"9\r\ndata: ") == b"data: "
    assert p.take(b"1\n\n\r\n") == b"1\n\n"
    assert p.take(b"0\r\n") == b"" and not p.done
    assert p.take(b"\r\n") == b"" and p.done and p.keep_alive


def test_body_bytes_that_come_with_the_head() -> None:
    p = ResponseParser(max_body=None)
    assert p.take(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel") == b"hel"
    assert p.head_done and not p.done
    assert p.take(b"lo") == b"lo" and p.done and p.keep_alive


def test_until_close_streamed() -> None:
    p = ResponseParser(max_body=None)
    assert p.take(b"HTTP/1.1 200 OK\r\n\r\nab") == b"ab"
    assert p.take(b"cd") == b"cd" and not p.done
    assert p.take(b"") == b"" and p.done and not p.keep_alive


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_no_body_statuses(raw: bytes) -> None:
    p = ResponseParser()
    assert p.feed(raw) and p.body == b"" and p.keep_alive


def test_answer_to_head_has_no_body() -> None:
    p = ResponseParser(no_body=True)
    assert p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n") and p.body == b"" and p.keep_alive
    p = ResponseParser(no_body=True)
    assert p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") and p.keep_alive


def test_bytes_beyond_the_answer_forbid_reuse() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA") and p.body == b"ok"
    assert not p.keep_alive
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1")
    assert p.body == b"ok" and not p.keep_alive


@pytest.mark.parametrize("size", [b"0x2", b"+2", b"1_0", b"-1", b""])
def test_chunk_size_is_hex_digits_only(size: bytes) -> None:
    with pytest.raises(WireError, match="chunk size"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nab\r\n")


@pytest.mark.parametrize("line", [b" folded: x", b"Bad Name: x", b": empty"])
def test_malformed_header_names(line: bytes) -> None:
    with pytest.raises(WireError, match="malformed header"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 0\r\n\r\n")


def test_streamed_use_is_not_bounded_by_max_body() -> None:
    big = str(MAX_BODY + 1).encode()
    p = ResponseParser(max_body=None)
    assert p.take(b"HTTP/1.1 200 OK\r\nContent-Length: " + big + b"\r\n\r\nx") == b"x"
    with pytest.raises(WireError, match="larger"):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nContent-Length: " + big + b"\r\n\r\n")


def test_whole_answer_bounded_while_chunks_arrive() -> None:
    p = ResponseParser(max_body=10)
    p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(WireError, match="larger"):
        p.feed(b"20\r\n" + b"x" * 20)


@given(body=st.binary(max_size=300), chunk=st.integers(1, 7), split=st.integers(1, 40), chunked=st.booleans())
def test_streamed_pieces_join_to_the_body(body: bytes, chunk: int, split: int, chunked: bool) -> None:
    """However the bytes arrive, the pieces ``take`` returns join to the body."""
    raw = framed(body, chunk=chunk, chunked=chunked)
    parser = ResponseParser(max_body=None)
    got = b"".join(parser.take(raw[i:i + split]) for i in range(0, len(raw), split))
    assert parser.done and parser.keep_alive and got == body
