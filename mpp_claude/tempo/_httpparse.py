"""Sans-I/O reader of HTTP/1.x responses, shared by the JSON-RPC client (``tempo._http1``) and
the sync paying client's transport (``client._wire``): bytes in, one response out, whole
(``feed``) or piece by piece as the body arrives (``take``).

Bodies are bounded (``MAX_BODY``, unless the caller streams them) so a hostile endpoint cannot
exhaust memory; framing errors raise ``WireError``.
"""

from __future__ import annotations

import re

MAX_BODY = 32 * 1024 * 1024
MAX_HEAD = 64 * 1024
_HEX = re.compile(rb"[0-9A-Fa-f]+")
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  #: RFC 9110 token: a method or a header name
_TOKEN = re.compile(TOKEN)


class WireError(Exception):
    """The HTTP exchange failed (connect, timeout, closed early, malformed answer)."""


class ResponseParser:
    """Sans-I/O reader of one HTTP/1.x response.

    Two ways to use it:
    - whole answer: ``feed`` bytes until it returns ``done``; then ``body`` holds the body
      (bounded by ``max_body``);
    - streamed: ``take`` bytes; each call returns the body bytes they completed (framing
      removed) and ``head_done`` says when ``status``/``headers`` are known.

    ``feed(b"")``/``take(b"")`` mean the peer closed the connection.  After ``done``,
    ``keep_alive`` says whether the connection may carry another request.

    Args:
        no_body: the request was ``HEAD``: the answer has no body whatever its headers say.
        max_body: bound on the body (``None``: no bound, for streamed use).
    Raises:
        WireError: bad framing, an answer cut short, or one larger than the bounds.
    """

    def __init__(self, *, no_body: bool = False, max_body: int | None = MAX_BODY) -> None:
        self._buf = bytearray()
        self.status = 0
        self.reason = b""
        self.version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.keep_alive = True
        self.head_done = False
        self.done = False
        self._no_body = no_body
        self._max = max_body
        self._length: int | None = None  # bytes of a Content-Length body still to come
        self._chunked = False
        self._chunk_left = -1  # in a chunked body: data bytes left, -1 size line next, -2 CRLF next
        self._body = bytearray()

    def feed(self, data: bytes) -> bool:
        """Consume ``data`` (``b""``: connection closed), collecting the body; returns ``done``."""
        if self.done:
            return True
        piece = self.take(data)
        if self.done and not self._body:
            self.body = piece
            return True
        self._body += piece
        if self.done:
            self.body = bytes(self._body)
        elif self._max is not None and len(self._buf) + len(self._body) > self._max:
            raise WireError(f"answer larger than {self._max} bytes")
        return self.done

    def take(self, data: bytes) -> bytes:
        """Consume ``data`` (``b""``: connection closed); returns the body bytes it completed."""
        if self.done:
            return b""
        self._buf += data
        return self._step(not data)

    def _step(self, eof: bool) -> bytes:
        if not self.head_done and not self._read_head(eof):
            return b""
        buf = self._buf
        if self._chunked:
            return self._take_chunks(eof)
        if self._length is not None:
            n = min(self._length, len(buf))
            piece = bytes(buf[:n]) if n < len(buf) else bytes(buf)
            del buf[:n]
            self._length -= n
            if self._length == 0:
                self._finish()
            elif eof:
                raise WireError("connection closed in the middle of the body")
            return piece
        piece = bytes(buf)  # delimited by the end of the connection
        buf.clear()
        if eof:
            self.done, self.keep_alive = True, False
        return piece

    def _finish(self) -> None:
        self.done = True
        if self._buf:  # bytes beyond the answer: the connection's state is unknown
            self.keep_alive = False

    def _read_head(self, eof: bool) -> bool:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if eof:
                    raise WireError("connection closed before a complete response head")
                if len(self._buf) > MAX_HEAD:
                    raise WireError("response head too large")
                return False
            lines = bytes(self._buf[:end]).split(b"\r\n")
            del self._buf[:end + 4]
            version, _, rest = lines[0].partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or not code.isdigit() or rest[3:4] not in (b"", b" "):
                raise WireError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
            if code.startswith(b"1"):  # 100 Continue and friends: another head follows
                continue
            self.status, self.reason, self.version = int(code), rest[4:], version
            self._headers(lines[1:], http10=version == b"HTTP/1.0")
            self.head_done = True
            if self._length == 0:
                self._finish()
            return True

    def _headers(self, lines: list[bytes], *, http10: bool) -> None:
        connection = b""
        headers = self.headers
        for line in lines:
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.fullmatch(name):
                raise WireError(f"malformed header line {line[:80]!r}")
            value = value.strip()
            headers.append((name, value))
            key = name.lower()
            if key == b"content-length":
                if not value.isdigit() or (self._length is not None and int(value) != self._length):
                    raise WireError(f"bad Content-Length {value[:40]!r}")
                self._length = int(value)
            elif key == b"transfer-encoding":
                if value.lower().split(b",")[-1].strip() != b"chunked":
                    raise WireError(f"unsupported Transfer-Encoding {value[:40]!r}")
                self._chunked = True
            elif key == b"connection":
                connection = value.lower()
        keep = b"close" not in connection and (not http10 or b"keep-alive" in connection)
        if self._no_body or self.status in (204, 304):
            self._length, self._chunked = 0, False
        elif self._chunked:
            self._length = None
        elif self._length is None:
            keep = False  # delimited by close
        elif self._max is not None and self._length > self._max:
            raise WireError(f"answer larger than {self._max} bytes")
        self.keep_alive = keep

    def _take_chunks(self, eof: bool) -> bytes:
        buf, out = self._buf, b""
        while True:
            left = self._chunk_left
            if left > 0:
                if not buf:
                    break
                n = min(left, len(buf))
                out += buf[:n]
                del buf[:n]
                self._chunk_left = -2 if n == left else left - n
            elif left == -2:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise WireError("chunk not followed by CRLF")
                del buf[:2]
                self._chunk_left = -1
            else:
                line_end = buf.find(b"\r\n")
                if line_end < 0:
                    if len(buf) > MAX_HEAD:
                        raise WireError("chunk size line too long")
                    break
                size_text = bytes(buf[:line_end]).split(b";", 1)[0].strip()
                if not _HEX.fullmatch(size_text):
                    raise WireError(f"bad chunk size {size_text[:20]!r}")
                size = int(size_text, 16)
                if size == 0:  # last chunk, then optional trailer lines and an empty line
                    end = buf.find(b"\r\n\r\n", line_end)
                    if end < 0:
                        if len(buf) > MAX_HEAD:
                            raise WireError("chunked trailer too large")
                        break
                    del buf[:end + 4]
                    self._finish()
                    return out
                del buf[:line_end + 2]
                self._chunk_left = size
        if eof:
            raise WireError("connection closed in the middle of a chunked body")
        return out
