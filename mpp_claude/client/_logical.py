"""Logical requests: what the openai SDK's retries of one call have in common, and what was paid.

The SDK retries a failed call with the same method, URL and body and a higher
``x-stainless-retry-count``; a caller may also send its own ``Idempotency-Key``.  Either way
the retry must reuse the first attempt's ``Idempotency-Key`` and, if it paid, its credential,
never a new payment (agent-payments-ux.md §4.4).  :class:`LogicalRequests` remembers paid
requests for ``LOGICAL_TTL`` seconds (bounded, thread-safe).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..protocol.encoding import loads_bounded
from ._flow import PaymentFlow, Resend
from .budget import BudgetScope
from .payer import Signed
from .receipts import Quote

LOGICAL_TTL = 900.0   # an SDK retry comes within seconds; keep paid requests 15 min
LOGICAL_MAX = 4096


@dataclass
class Ticket:
    """One payment in progress: what was reserved where."""

    quote: Quote
    scopes: tuple[BudgetScope, ...]
    ledger_id: int | None = None
    signed: Signed | None = None
    model: str | None = None
    done: bool = False
    day: int | None = None  # max_per_day's 24 h sum with this payment, as its reservation read it


@dataclass
class Logical:
    """One logical request across the openai SDK's retries."""

    idempotency_key: str
    credential: Resend | None = None
    ticket: Ticket | None = None
    touched: float = field(default_factory=time.monotonic)


@dataclass
class Attempt:
    """One pass of a shell through the flow (one ``handle_request`` call)."""

    flow: PaymentFlow
    method: str
    url: str
    body: bytes
    idempotency_key: str
    user_key: bool
    logical: Logical | None
    set_headers: list[tuple[str, str]]


def fingerprint(method: str, url: str, body: bytes, user_key: str | None) -> str:
    if user_key:
        return f"key {urlsplit(url).netloc} {user_key}"
    return f"{method} {url} {hashlib.sha256(body).hexdigest()}"


# A ``"model": "<JSON string>"`` pair anywhere in a body (escaped quotes inside message text never
# match: the key's closing quote must follow ``model`` directly).
_MODEL_PAIR = re.compile(rb'"model"[ \t\r\n]*:[ \t\r\n]*"((?:[^"\\\x00-\x1f]|\\.){0,256})"')
PARSE_BELOW = 16_384  # bytes; above, a long conversation would be parsed only to read one label


def model_of(body: bytes) -> str | None:
    """The top-level ``model`` of an OpenAI/Anthropic-style JSON body (a label for the ledger
    and receipts, never used to decide a payment).

    A small body is parsed.  A large one (a long conversation: parsing 200 KB costs ~0.4 ms) is
    searched for its ``"model": "..."`` pairs instead (~0.1 ms), and parsed only when there are
    several (one may be nested).
    """
    if not body.startswith(b"{"):
        return None
    if len(body) >= PARSE_BELOW:
        pairs = _MODEL_PAIR.findall(body)
        if not pairs:
            return None
        if len(pairs) == 1:
            try:
                return _label(json.loads(b'"' + pairs[0] + b'"'))
            except ValueError:
                return None
    try:
        return _label(loads_bounded(body).get("model"))
    except (ValueError, AttributeError):
        return None


def _label(value: object) -> str | None:
    """``value`` when it is text SQLite and logs can store (no lone surrogate), else ``None``."""
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


class LogicalRequests:
    """Paid logical requests by fingerprint: oldest dropped after ``LOGICAL_TTL`` or beyond
    ``LOGICAL_MAX`` entries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, Logical] = OrderedDict()

    def find(self, fp: str) -> Logical | None:
        now = time.monotonic()
        with self._lock:
            while self._items:
                oldest = next(iter(self._items.values()))
                if now - oldest.touched < LOGICAL_TTL and len(self._items) <= LOGICAL_MAX:
                    break
                self._items.popitem(last=False)
            found = self._items.get(fp)
            if found is not None:
                found.touched = now
            return found

    def add(self, fp: str, logical: Logical) -> Logical:
        with self._lock:
            self._items[fp] = logical
            self._items.move_to_end(fp)
        return logical
