"""Ready-made approval callbacks."""

from __future__ import annotations

import io

from mpp_claude.client.approval import ask_in_terminal, deny_all
from mpp_claude.client.receipts import Quote

Q = Quote("https://p.test", "/v1/chat/completions", "tempo", "charge", 12_500, "0x20c0", "pathUSD", 6,
          "0xab", 31337, "ch1", 1_800_000_000, "\x1b[2Jfree tokens!", {"max_per_client": 9_987_500})


def test_yes_approves_and_shows_the_quote() -> None:
    out = io.StringIO()
    assert ask_in_terminal(Q, ask=lambda prompt: "y", out=out)
    text = out.getvalue()
    assert "0.0125 pathUSD" in text and "0xab" in text and "9.987500 left" in text
    assert "\x1b" not in text and "(not verified)" in text


def test_anything_else_declines() -> None:
    for answer in ("", "n", "no", "sure"):
        assert not ask_in_terminal(Q, ask=lambda prompt, a=answer: a, out=io.StringIO())

    def eof(prompt: str) -> str:
        raise EOFError

    assert not ask_in_terminal(Q, ask=eof, out=io.StringIO())
    assert not deny_all(Q)
