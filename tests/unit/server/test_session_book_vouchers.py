"""A channel record keeps only the vouchers a settlement can still use, and settles as if it kept all."""

from __future__ import annotations

import random
from dataclasses import replace

from mpp_claude.server.sessions.book import ChannelRecord
from mpp_claude.server.sessions.settle import settle_voucher
from mpp_claude.tempo.session.accounting import ChannelAccount


def test_long_channel_record_stays_small_and_settles_the_same() -> None:
    rng = random.Random(7)
    account = ChannelAccount("0x" + "ab" * 32, deposit=10**12)
    record = ChannelRecord(account)
    every: list[int] = []  # every voucher ever accepted
    for i in range(3000):
        quote = rng.randint(100, 5000)
        voucher = account.spent + quote  # a voucher for what this request may cost
        if voucher > account.accepted_cumulative:
            account = replace(account, accepted_cumulative=voucher, voucher_signature=i.to_bytes(65, "big"))
            every.append(voucher)
        record = record.with_account(account)
        account = replace(account, spent=account.spent + rng.randint(0, quote))  # the exact usage
        if i % 500 == 499:  # settle now and then, as the sweeper does
            best = max(v for v in every if v <= account.spent)
            account = replace(account, settled=best)
        record = record.with_account(account)
        expected = max((v for v in every if account.settled < v <= account.spent), default=None)
        got = settle_voucher(record)
        assert (got[0] if got else None) == expected
        assert len(record.vouchers) <= 12, len(record.vouchers)  # bounded: does not grow with i
    assert record.vouchers[-1][0] == account.accepted_cumulative  # the latest is always kept
