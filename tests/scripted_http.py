"""Scripted loopback HTTP/1.1 servers for the transport tests (test-only): each answer is a
callback the test writes, so framing, hang-ups, delays and bad bytes can be staged exactly."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

Answer = Callable[["Server", socket.socket, bytes], bool]  # returns False to close the connection


def read_request(conn: socket.socket, buf: bytearray) -> bytes | None:
    """One whole request (head + Content-Length or chunked body) from ``conn``; None at EOF."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end + 4])
            lower = head.lower()
            if b"transfer-encoding: chunked" in lower:
                stop = buf.find(b"0\r\n\r\n", end + 4)
                if stop >= 0:
                    request = bytes(buf[:stop + 5])
                    del buf[:stop + 5]
                    return request
            else:
                length = 0
                if b"content-length:" in lower:
                    length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(buf) >= end + 4 + length:
                    request = bytes(buf[:end + 4 + length])
                    del buf[:end + 4 + length]
                    return request
        data = conn.recv(65536)
        if not data:
            return None
        buf += data


class Server:
    """A loopback HTTP server whose answers the test scripts; counts connections, requests and
    the ``recv`` calls the first request of each connection took."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = 0  # connections the client ended (EOF seen)
        self._sock = socket.create_server(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        if tls is not None:
            self._sock = tls.wrap_socket(self._sock, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self._open: list[socket.socket] = []
        self.gate = threading.Event()

    def start(self) -> Server:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except ssl.SSLError:
                continue  # a client that refused our certificate
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while True:
                request = read_request(conn, buf)
                if request is None:
                    self.closed += 1
                    return
                self.requests.append(request)
                if not self.answer(self, conn, request):
                    return
        except OSError:
            return
        finally:
            conn.close()

    def drop_idle(self) -> None:
        for conn in self._open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._open.clear()

    def close(self) -> None:
        self._sock.close()
        self.drop_idle()


@contextmanager
def serving(answer: Answer, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server(answer, tls).start()
    try:
        yield server
    finally:
        server.close()


def self_signed_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 and its key (skips without openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context presenting ``cert``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


# -- scripted answers both wire transports' tests use ---------------------------------------------

def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> Answer:
    """A 200 JSON answer with ``body`` (``extra``: more header lines), keeping the connection."""
    def answer(server: Server, conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                     % (len(body), extra, body))
        return True
    return answer


def slow_ok(server: Server, conn: socket.socket, request: bytes) -> bool:
    """The head at once, the body when the test opens ``server.gate``."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    server.gate.wait(10)
    conn.sendall(b"ok")
    return True


def silent(server: Server, conn: socket.socket, request: bytes) -> bool:
    """No answer until the test opens ``server.gate`` (a read timeout)."""
    server.gate.wait(10)
    return False


def hang_up(server: Server, conn: socket.socket, request: bytes) -> bool:
    """Close without a byte."""
    return False


def garbage(server: Server, conn: socket.socket, request: bytes) -> bool:
    """Not HTTP."""
    conn.sendall(b"SMTP ready\r\n\r\n")
    return False


def cut_short(server: Server, conn: socket.socket, request: bytes) -> bool:
    """A body shorter than its Content-Length, then the close."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    return False


def reset_mid_body(server: Server, conn: socket.socket, request: bytes) -> bool:
    """Part of the body, then a TCP reset (SO_LINGER 0)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    server.gate.wait(0.1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return False
