"""Terminal output for the CLI: stdout for results, stderr for messages and progress.

Colours only when the stream is a TTY, ``NO_COLOR`` is unset (https://no-color.org) and
``TERM`` is not ``dumb``.  Progress appears only for work still running after one second.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from typing import TextIO

PROG = "mpp-claude"
_CODES = {"red": "31", "green": "32", "yellow": "33", "dim": "2", "bold": "1"}


def colour_on(stream: TextIO) -> bool:
    """True when ``stream`` is a terminal that may receive ANSI colours."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, colour: str, stream: TextIO) -> str:
    """``text`` wrapped in the ANSI code for ``colour`` when :func:`colour_on` ``(stream)``."""
    return f"\033[{_CODES[colour]}m{text}\033[0m" if colour_on(stream) else text


def out(text: str = "", *, end: str = "\n") -> None:
    """Write command output (the result a script consumes) to stdout."""
    sys.stdout.write(text + end)
    sys.stdout.flush()


def err(text: str, *, colour: str | None = None) -> None:
    """Write one message line to stderr, prefixed with the program name."""
    line = f"{PROG}: {text}"
    sys.stderr.write((paint(line, colour, sys.stderr) if colour else line) + "\n")
    sys.stderr.flush()


def note(text: str) -> None:
    """An informational line on stderr (dim on a terminal), for humans reading along."""
    sys.stderr.write(paint(text, "dim", sys.stderr) + "\n")
    sys.stderr.flush()


class Progress:
    """Shows ``message`` on stderr if the block is still running after ``delay`` seconds.

    On a terminal: a spinner with the elapsed time, erased when the block ends.  Elsewhere:
    one plain line, so logs show what the command was waiting for.  ``stop()`` ends it early
    (before the first streamed token is printed).
    """

    def __init__(self, message: str, *, enabled: bool = True, delay: float = 1.0,
                 stream: TextIO | None = None) -> None:
        self.message = message
        self._stream = stream or sys.stderr
        self._enabled = enabled
        self._delay = delay
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = False

    def __enter__(self) -> Progress:
        if self._enabled:
            self._thread = threading.Thread(target=self._run, daemon=True, name="mpp-claude-progress")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop and erase the spinner (idempotent)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._drawn and self._tty():
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._drawn = False

    def _tty(self) -> bool:
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())

    def _run(self) -> None:
        start = time.monotonic()
        if self._done.wait(self._delay):
            return
        if not self._tty():
            self._stream.write(f"{PROG}: {self.message}...\n")
            self._stream.flush()
            return
        for frame in itertools.cycle("|/-\\"):
            self._stream.write(f"\r\033[K{frame} {self.message} ({time.monotonic() - start:.0f}s)")
            self._stream.flush()
            self._drawn = True
            if self._done.wait(0.1):
                return
