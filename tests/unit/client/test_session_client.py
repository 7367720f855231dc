"""Client-side session pieces without a network: the SSE payment-frame filter and the channel store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpp_claude.client._sse_filter import SseFilter
from mpp_claude.client.channels import ChannelStore, MemoryChannelStore, StoredChannel
from mpp_claude.tempo.session import PayerChannel

NEED = b'event: payment-need-voucher\ndata: {"channelId":"0x01"}\n\n'
RECEIPT = b'event: payment-receipt\ndata: {"spent":"5"}\n\n'
CHUNK = b'data: {"object":"chat.completion.chunk"}\n\n'
DONE = b"data: [DONE]\n\n"


def run(chunks: list[bytes]) -> tuple[bytes, list[str]]:
    f = SseFilter()
    out, names = b"", []
    for c in chunks:
        data, events = f.feed(c)
        out += data
        names += [e.event for e in events]
    return out + f.flush(), names


def test_payment_frames_are_removed_in_order() -> None:
    out, names = run([CHUNK, NEED + CHUNK, CHUNK + RECEIPT + DONE])
    assert out == CHUNK * 3 + DONE
    assert names == ["payment-need-voucher", "payment-receipt"]


def test_receipt_data_is_kept_whole() -> None:
    f = SseFilter()
    _, events = f.feed(RECEIPT)
    assert json.loads(events[0].data) == {"spent": "5"}


def test_crlf_frames() -> None:
    out, names = run([(CHUNK + RECEIPT + DONE).replace(b"\n", b"\r\n")])
    assert out == CHUNK + DONE and names == ["payment-receipt"]


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=12))
def test_any_split_gives_the_same_result(cuts: list[int]) -> None:
    stream = CHUNK + NEED + CHUNK + CHUNK + RECEIPT + DONE
    chunks, pos = [], 0
    for n in cuts:
        chunks.append(stream[pos:pos + n])
        pos += n
    chunks.append(stream[pos:])
    out, names = run([c for c in chunks if c])
    assert out == CHUNK * 3 + DONE
    assert names == ["payment-need-voucher", "payment-receipt"]


def _stored(signed: int = 10) -> StoredChannel:
    channel = PayerChannel("0x" + "11" * 32, "0x" + "22" * 20, 31337, "0x" + "33" * 20, "0x" + "44" * 20,
                           deposit=100, signed_cumulative=signed)
    return StoredChannel(channel, "0x" + "55" * 20, "http://127.0.0.1:1", "/v1/chat/completions", "ab", 7)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_channel_store_survives_reopen_and_evicts(kind: str, tmp_path: Path) -> None:
    def make() -> ChannelStore | MemoryChannelStore:
        return ChannelStore(tmp_path / "c.sqlite3") if kind == "sqlite" else memory

    memory = MemoryChannelStore()
    store = make()
    store.save(_stored(), now=1.0)
    store.save(_stored(signed=20), now=2.0)
    store.close()
    again = make()
    (found,) = again.open_channels("0x" + "55" * 20, "http://127.0.0.1:1")
    assert found.channel.signed_cumulative == 20 and found.spent == 7 and found.signature == "ab"
    assert found.matches(payee="0x" + "33" * 20, escrow="0x" + "22" * 20, chain_id=31337,
                         token="0x" + "44" * 20)
    again.set_status(found.channel_id, "evicted", now=3.0)
    assert again.open_channels("0x" + "55" * 20) == []
    got = again.get(found.channel_id)
    assert got is not None and got.status == "evicted"


def test_channel_store_forced_close_fields_and_old_files(tmp_path: Path) -> None:
    """An older channel store file gains the forced-close columns; they round-trip."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    cols = ("channel_id TEXT PRIMARY KEY, wallet TEXT, origin TEXT, path TEXT, escrow TEXT, chain_id INT, "
            "payee TEXT, token TEXT, deposit TEXT, signed TEXT, signature TEXT, spent TEXT, status TEXT, "
            "updated_at REAL")
    db.execute(f"CREATE TABLE session_channels ({cols})")
    ids = ("0x" + "01" * 32, "0x" + "02" * 20, "0x" + "03" * 20, "0x" + "04" * 20)
    db.execute("INSERT INTO session_channels VALUES (?, 'w', 'https://a.test', '/v1', ?, 1, ?, ?, '10', '4', "
               "'', '3', 'open', 1.0)", ids)
    db.commit()
    db.close()
    store = ChannelStore(path)
    (old,) = store.channels("w")
    assert (old.status, old.close_requested_at, old.withdrawable_at, old.refunded) == ("open", 0, 0, None)
    from dataclasses import replace

    new = replace(old, status="withdrawn", close_requested_at=100, withdrawable_at=1000, refunded=6)
    store.save(new, now=2.0)
    for again in (ChannelStore(path), store):
        assert again.get(old.channel_id) == new
    assert store.open_channels("w") == [] and store.channels("other") == []
    memory = MemoryChannelStore()
    memory.save(replace(old, status="closing"), now=1.0)
    assert [s.status for s in memory.channels()] == ["closing"] and memory.open_channels("w") == []
