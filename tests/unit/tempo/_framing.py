"""Raw HTTP/1.1 answers for the response-parser tests (test-only)."""

from __future__ import annotations


def framed(body: bytes, *, chunk: int, chunked: bool) -> bytes:
    """A 200 answer carrying ``body``: chunked in ``chunk``-byte chunks, or with Content-Length."""
    if chunked:
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + payload
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
