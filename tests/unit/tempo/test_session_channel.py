"""Escrow channel ids, calldata, getChannel decoding and event decoding (checked against eth-abi)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_hash.auto import keccak

from mpp_claude.tempo.escrow import artifact, decode_revert
from mpp_claude.tempo.session import ZERO_ADDRESS, compute_channel_id, decode_channel_state, decode_open
from mpp_claude.tempo.session import channel as ch
from mpp_claude.tempo.session.channel import decode_escrow_log, decode_top_up, escrow_events
from mpp_claude.tempo.session.transactions import open_calls, top_up_calls

PAYER = "0x" + "a1" * 20
PAYEE = "0x" + "b2" * 20
TOKEN = "0x20c0000000000000000000000000000000000000"
SIGNER = "0x" + "c3" * 20
ESCROW = "0x" + "e4" * 20
CID = "0x" + "5d" * 32
SALT = bytes(range(32))


def _sel(sig: str) -> bytes:
    return keccak(sig.encode())[:4]


def _abi_signatures(kind: str) -> set[str]:
    return {f"{i['name']}({','.join(x['type'] for x in i['inputs'])})" for i in artifact()["abi"]
            if i["type"] == kind}


ARGS: dict[str, Any] = dict(payer=PAYER, payee=PAYEE, token=TOKEN, salt=SALT, authorized_signer=SIGNER,
                            escrow=ESCROW, chain_id=1)


class TestChannelId:
    def test_matches_abi_encode(self) -> None:
        """keccak(abi.encode(payer, payee, token, salt, signer, escrow, chainId)), mixed-case in."""
        types = ["address", "address", "address", "bytes32", "address", "address", "uint256"]
        expected = keccak(encode(types, [PAYER, PAYEE, TOKEN, SALT, SIGNER, ESCROW, 42431]))
        got = compute_channel_id(payer=PAYER.upper().replace("0X", "0x"), payee=PAYEE, token=TOKEN, salt=SALT,
                                 authorized_signer=SIGNER, escrow=ESCROW, chain_id=42431)
        assert got == "0x" + expected.hex()

    def test_every_parameter_changes_the_id(self) -> None:
        """Payer, payee, token, salt, signer, escrow and chain all bind the id."""
        args = dict(ARGS)
        base = compute_channel_id(**args)
        for key, value in [("payer", PAYEE), ("payee", PAYER), ("token", ESCROW), ("salt", bytes(32)),
                           ("authorized_signer", ZERO_ADDRESS), ("escrow", TOKEN), ("chain_id", 2)]:
            assert compute_channel_id(**{**args, key: value}) != base, key

    @pytest.mark.parametrize(("key", "value"), [("payer", "0x12"), ("salt", b"short"), ("chain_id", -1),
                                                ("escrow", "e4" * 20)])
    def test_malformed_input_raises_value_error(self, key: str, value: Any) -> None:
        """Malformed addresses, salts and chain ids raise ValueError naming the field."""
        args = dict(ARGS)
        with pytest.raises(ValueError):
            compute_channel_id(**{**args, key: value})


class TestCalldata:
    def test_selectors_exist_in_the_contract_abi(self) -> None:
        """Every selector the core encodes is a function of the committed Escrow ABI."""
        functions = _abi_signatures("function")
        for sig in ["open(address,address,uint128,bytes32,address)", "settle(bytes32,uint128,bytes)",
                    "topUp(bytes32,uint256)", "close(bytes32,uint128,bytes)", "requestClose(bytes32)",
                    "withdraw(bytes32)", "getChannel(bytes32)", "getVoucherDigest(bytes32,uint128)",
                    "computeChannelId(address,address,address,bytes32,address)", "domainSeparator()"]:
            assert sig in functions, sig

    def test_event_topics_match_the_contract_abi(self) -> None:
        """The decoder knows exactly the contract's events."""
        names = {s.split("(")[0] for s in _abi_signatures("event")}
        assert {name for name, _ in ch.EVENT_TOPICS.values()} == names
        for sig in _abi_signatures("event"):
            assert "0x" + keccak(sig.encode()).hex() in ch.EVENT_TOPICS

    def test_open_matches_abi_encode_and_round_trips(self) -> None:
        """open calldata equals eth-abi's and decodes back."""
        data = ch.encode_open(payee=PAYEE, token=TOKEN, deposit=10**7, salt=SALT, authorized_signer=SIGNER)
        assert data == _sel("open(address,address,uint128,bytes32,address)") + encode(
            ["address", "address", "uint128", "bytes32", "address"], [PAYEE, TOKEN, 10**7, SALT, SIGNER])
        call = decode_open(data)
        assert (call.payee, call.token, call.deposit, call.salt, call.authorized_signer) == (
            PAYEE, TOKEN, 10**7, SALT, SIGNER)

    @pytest.mark.parametrize("mutate", [lambda d: d[:-1], lambda d: d + b"\0", lambda d: b"\0" * 4 + d[4:],
                                        lambda d: d[:4] + b"\x01" + d[5:]])
    def test_decode_open_refuses_other_bytes(self, mutate: Any) -> None:
        """Wrong length, selector or dirty address padding is not open calldata."""
        data = ch.encode_open(payee=PAYEE, token=TOKEN, deposit=1, salt=SALT)
        with pytest.raises(ValueError):
            decode_open(mutate(data))

    @pytest.mark.parametrize("sig_len", [65, 64, 0, 100])
    def test_settle_and_close_match_abi_encode(self, sig_len: int) -> None:
        """settle/close calldata (dynamic bytes) equals eth-abi's for any signature length."""
        sig = os.urandom(sig_len)
        for fn, name in ((ch.encode_settle, "settle"), (ch.encode_close, "close")):
            expected = _sel(f"{name}(bytes32,uint128,bytes)") + encode(
                ["bytes32", "uint128", "bytes"], [bytes.fromhex(CID[2:]), 5, sig])
            assert fn(CID, 5, sig) == expected

    def test_top_up_request_close_withdraw(self) -> None:
        """topUp/requestClose/withdraw calldata equals eth-abi's; topUp decodes back."""
        raw = bytes.fromhex(CID[2:])
        assert ch.encode_top_up(CID, 7) == _sel("topUp(bytes32,uint256)") + encode(["bytes32", "uint256"],
                                                                                     [raw, 7])
        assert decode_top_up(ch.encode_top_up(CID, 7)) == (CID, 7)
        assert ch.encode_request_close(CID) == _sel("requestClose(bytes32)") + raw
        assert ch.encode_withdraw(CID) == _sel("withdraw(bytes32)") + raw
        with pytest.raises(ValueError):
            decode_top_up(ch.encode_withdraw(CID))

    @pytest.mark.parametrize(("fn", "args"), [
        (ch.encode_open, dict(payee=PAYEE, token=TOKEN, deposit=0, salt=SALT)),
        (ch.encode_open, dict(payee=PAYEE, token=TOKEN, deposit=2**128, salt=SALT)),
        (ch.encode_top_up, dict(channel_id=CID, additional_deposit=0)),
        (ch.encode_settle, dict(channel_id=CID, cumulative_amount=2**128, signature=b"")),
        (ch.encode_settle, dict(channel_id="0x12", cumulative_amount=1, signature=b"")),
    ])
    def test_out_of_range_values_raise(self, fn: Any, args: dict[str, Any]) -> None:
        """Zero deposits, amounts beyond uint128 and malformed ids raise ValueError."""
        with pytest.raises(ValueError):
            fn(**args)

    def test_payer_transactions_batch_approve_first(self) -> None:
        """open and topUp transactions approve the escrow for exactly the amount, then call it."""
        approve, open_ = open_calls(ESCROW, payee=PAYEE, token=TOKEN, deposit=99, salt=SALT)
        assert approve.to.hex() == TOKEN[2:] and open_.to.hex() == ESCROW[2:]
        assert approve.data == _sel("approve(address,uint256)") + encode(["address", "uint256"], [ESCROW, 99])
        assert decode_open(open_.data).deposit == 99
        approve2, top = top_up_calls(ESCROW, token=TOKEN, channel_id=CID, amount=5)
        assert approve2.data.endswith((5).to_bytes(32, "big")) and decode_top_up(top.data) == (CID, 5)


class TestState:
    def _encoded(self, **over: Any) -> bytes:
        values = dict(finalized=False, closeRequestedAt=0, payer=PAYER, payee=PAYEE, token=TOKEN,
                      authorizedSigner=ZERO_ADDRESS, deposit=10, settled=3)
        values.update(over)
        return encode(["bool", "uint64", "address", "address", "address", "address", "uint128", "uint128"],
                      list(values.values()))

    def test_decode_get_channel(self) -> None:
        """getChannel's tuple decodes; the expected signer falls back to the payer."""
        state = decode_channel_state(self._encoded())
        assert state.exists and not state.finalized and state.available == 7
        assert state.expected_signer == PAYER
        delegated = decode_channel_state(self._encoded(authorizedSigner=SIGNER, finalized=True))
        assert delegated.expected_signer == SIGNER and delegated.finalized

    def test_missing_channel_is_all_zero(self) -> None:
        """A channel that does not exist decodes with exists == False."""
        state = decode_channel_state(bytes(256))
        assert not state.exists

    @pytest.mark.parametrize("data", [b"", bytes(255), bytes(257), b"\0" * 31 + b"\x02" + bytes(224),
                                      bytes(64) + b"\x01" + bytes(191)])
    def test_malformed_results_raise(self, data: bytes) -> None:
        """Wrong length, a bool of 2 and dirty address padding raise ValueError."""
        with pytest.raises(ValueError):
            decode_channel_state(data)


def _log(sig: str, data: bytes, address: str = ESCROW, index: str = "0x3") -> dict[str, Any]:
    return {"address": address, "topics": ["0x" + keccak(sig.encode()).hex(), CID,
                                           "0x" + bytes.fromhex(PAYER[2:]).rjust(32, b"\0").hex(),
                                           "0x" + bytes.fromhex(PAYEE[2:]).rjust(32, b"\0").hex()],
            "data": "0x" + data.hex(), "logIndex": index}


class TestEvents:
    def test_decode_each_event(self) -> None:
        """Each escrow event decodes with its indexed and data fields."""
        sig = "ChannelOpened(bytes32,address,address,address,address,bytes32,uint256)"
        opened = decode_escrow_log(_log(sig, encode(["address", "address", "bytes32", "uint256"],
                                                    [TOKEN, SIGNER, SALT, 77])))
        assert opened is not None and opened.name == "ChannelOpened" and opened.channel_id == CID
        assert (opened.payer, opened.payee, opened.log_index) == (PAYER, PAYEE, 3)
        assert opened.values == {"token": TOKEN, "authorizedSigner": SIGNER, "salt": "0x" + SALT.hex(),
                                 "deposit": 77}
        settled = decode_escrow_log(_log("Settled(bytes32,address,address,uint256,uint256,uint256)",
                                         encode(["uint256"] * 3, [5, 2, 5])))
        assert settled is not None
        assert settled.values == {"cumulativeAmount": 5, "deltaPaid": 2, "newSettled": 5}
        cancelled = decode_escrow_log(_log("CloseRequestCancelled(bytes32,address,address)", b""))
        assert cancelled is not None and cancelled.values == {}

    @pytest.mark.parametrize("log", [
        _log("Transfer(address,address,uint256)", bytes(32)),
        _log("TopUp(bytes32,address,address,uint256,uint256)", bytes(32)),
        _log("CloseRequested(bytes32,address,address,uint256)", b"zz"),
        {"topics": [], "data": "0x"},
        {"topics": ["0x12", "0x34"], "data": "0x"},
    ])
    def test_other_or_malformed_logs_are_skipped(self, log: dict[str, Any]) -> None:
        """Foreign events, wrong data lengths and malformed topics decode to None."""
        assert decode_escrow_log(log) is None

    def test_escrow_events_filters_by_emitter(self) -> None:
        """Only logs emitted by the given escrow are returned (a look-alike contract is ignored)."""
        sig = "CloseRequested(bytes32,address,address,uint256)"
        logs = [_log(sig, encode(["uint256"], [1]), address="0x" + "99" * 20),
                _log(sig, encode(["uint256"], [2]))]
        events = escrow_events(logs, ESCROW.upper().replace("0X", "0x"))
        assert [e.values["closeGraceEnd"] for e in events] == [2]


def test_decode_revert_names_custom_errors() -> None:
    """Revert data of a custom error maps to its name; unknown data to None."""
    assert decode_revert("0x" + _sel("AmountNotIncreasing()").hex()) == "AmountNotIncreasing"
    assert decode_revert(_sel("ChannelFinalized()")) == "ChannelFinalized"
    assert decode_revert("0x12") is None and decode_revert(None) is None and decode_revert("0xzz") is None
