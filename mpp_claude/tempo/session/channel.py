"""Escrow channels (protocol v1): identity, calldata, on-chain state and events (pure).

Everything here is ABI bytes in, typed values out, for the v1 escrow interface
(draft-tempo-session-00 "Channel Escrow Contract"; the deployed ``TempoStreamChannel``
ABI, which ``mpp_claude/tempo/escrow/Escrow.sol`` implements)::

    open(address payee, address token, uint128 deposit, bytes32 salt, address authorizedSigner)
    settle(bytes32 channelId, uint128 cumulativeAmount, bytes signature)
    topUp(bytes32 channelId, uint256 additionalDeposit)
    close(bytes32 channelId, uint128 cumulativeAmount, bytes signature)
    requestClose(bytes32 channelId)        withdraw(bytes32 channelId)
    getChannel(bytes32) -> (bool finalized, uint64 closeRequestedAt, address payer, address payee,
                            address token, address authorizedSigner, uint128 deposit, uint128 settled)

``channelId = keccak(abi.encode(payer, payee, token, salt, authorizedSigner, escrow, chainId))``
(mpp-protocol.md §4.2), where the payer is the account that sends ``open``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .._keccak import keccak
from ._abi import address_word, channel_id_bytes, normalize_address, uint_word

ZERO_ADDRESS = "0x" + "00" * 20
CLOSE_GRACE_PERIOD = 15 * 60  # seconds, the v1 contract's CLOSE_GRACE_PERIOD
MAX_UINT128 = 2**128 - 1


def _selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


SEL_OPEN = _selector("open(address,address,uint128,bytes32,address)")
SEL_SETTLE = _selector("settle(bytes32,uint128,bytes)")
SEL_TOP_UP = _selector("topUp(bytes32,uint256)")
SEL_CLOSE = _selector("close(bytes32,uint128,bytes)")
SEL_REQUEST_CLOSE = _selector("requestClose(bytes32)")
SEL_WITHDRAW = _selector("withdraw(bytes32)")
SEL_GET_CHANNEL = _selector("getChannel(bytes32)")
SEL_COMPUTE_CHANNEL_ID = _selector("computeChannelId(address,address,address,bytes32,address)")
SEL_GET_VOUCHER_DIGEST = _selector("getVoucherDigest(bytes32,uint128)")
SEL_DOMAIN_SEPARATOR = _selector("domainSeparator()")
SEL_APPROVE = _selector("approve(address,uint256)")


def _salt(salt: bytes) -> bytes:
    if not isinstance(salt, bytes) or len(salt) != 32:
        raise ValueError("salt must be exactly 32 bytes")
    return salt


# --- identity ----------------------------------------------------------------------------------


def compute_channel_id(*, payer: str, payee: str, token: str, salt: bytes, authorized_signer: str,
                       escrow: str, chain_id: int) -> str:
    """The v1 channel id, exactly as the escrow's ``computeChannelId`` (lower-case ``0x`` hex).

    Args:
        authorized_signer: the delegated voucher signer, or ``ZERO_ADDRESS`` when the payer signs.
    Raises:
        ValueError: a malformed address, salt or chain id.
    """
    words = (address_word(payer, "payer") + address_word(payee, "payee") + address_word(token, "token")
             + _salt(salt) + address_word(authorized_signer, "authorized_signer")
             + address_word(escrow, "escrow") + uint_word(chain_id, 256, "chain_id"))
    return "0x" + keccak(words).hex()


# --- calldata ----------------------------------------------------------------------------------


def _bytes_tail(data: bytes) -> bytes:
    padded = data + b"\0" * (-len(data) % 32)
    return len(data).to_bytes(32, "big") + padded


def encode_approve(spender: str, amount: int) -> bytes:
    """TIP-20 ``approve(spender, amount)`` calldata (the escrow pulls the deposit with transferFrom)."""
    return SEL_APPROVE + address_word(spender, "spender") + uint_word(amount, 256, "amount")


def encode_open(*, payee: str, token: str, deposit: int, salt: bytes, authorized_signer: str = ZERO_ADDRESS
                ) -> bytes:
    """``open(payee, token, deposit, salt, authorizedSigner)`` calldata."""
    if deposit <= 0:
        raise ValueError("deposit must be positive")
    return (SEL_OPEN + address_word(payee, "payee") + address_word(token, "token")
            + uint_word(deposit, 128, "deposit") + _salt(salt)
            + address_word(authorized_signer, "authorized_signer"))


def _voucher_call(selector: bytes, channel_id: str | bytes, cumulative_amount: int, signature: bytes
                  ) -> bytes:
    head = channel_id_bytes(channel_id) + uint_word(cumulative_amount, 128, "cumulative_amount")
    return selector + head + (96).to_bytes(32, "big") + _bytes_tail(signature)


def encode_settle(channel_id: str | bytes, cumulative_amount: int, signature: bytes) -> bytes:
    """``settle(channelId, cumulativeAmount, signature)`` calldata (payee only)."""
    return _voucher_call(SEL_SETTLE, channel_id, cumulative_amount, signature)


def encode_close(channel_id: str | bytes, cumulative_amount: int, signature: bytes) -> bytes:
    """``close(channelId, cumulativeAmount, signature)`` calldata (payee only)."""
    return _voucher_call(SEL_CLOSE, channel_id, cumulative_amount, signature)


def encode_top_up(channel_id: str | bytes, additional_deposit: int) -> bytes:
    """``topUp(channelId, additionalDeposit)`` calldata (payer only)."""
    if additional_deposit <= 0:
        raise ValueError("additional deposit must be positive")
    amount = uint_word(additional_deposit, 256, "additional_deposit")
    return SEL_TOP_UP + channel_id_bytes(channel_id) + amount


def encode_request_close(channel_id: str | bytes) -> bytes:
    """``requestClose(channelId)`` calldata (payer only)."""
    return SEL_REQUEST_CLOSE + channel_id_bytes(channel_id)


def encode_withdraw(channel_id: str | bytes) -> bytes:
    """``withdraw(channelId)`` calldata (payer only, after the grace period)."""
    return SEL_WITHDRAW + channel_id_bytes(channel_id)


def encode_get_channel(channel_id: str | bytes) -> bytes:
    """``getChannel(channelId)`` calldata for ``eth_call``."""
    return SEL_GET_CHANNEL + channel_id_bytes(channel_id)


@dataclass(frozen=True, slots=True)
class OpenCall:
    """The arguments of an ``open`` call, decoded from calldata (addresses lower-case)."""

    payee: str
    token: str
    deposit: int
    salt: bytes
    authorized_signer: str


def _word_address(word: bytes, name: str) -> str:
    if any(word[:12]):
        raise ValueError(f"{name}: address word has non-zero padding")
    return "0x" + word[12:].hex()


def _word_uint(word: bytes, bits: int, name: str) -> int:
    value = int.from_bytes(word, "big")
    if value >= 2**bits:
        raise ValueError(f"{name}: value does not fit uint{bits}")
    return value


def decode_open(data: bytes) -> OpenCall:
    """Decode ``open`` calldata (exact static ABI encoding required).

    Raises:
        ValueError: another selector, wrong length or dirty padding.
    """
    if data[:4] != SEL_OPEN or len(data) != 4 + 5 * 32:
        raise ValueError("not open(address,address,uint128,bytes32,address) calldata")
    w = [data[4 + 32 * i: 36 + 32 * i] for i in range(5)]
    return OpenCall(_word_address(w[0], "payee"), _word_address(w[1], "token"),
                    _word_uint(w[2], 128, "deposit"), w[3], _word_address(w[4], "authorizedSigner"))


def decode_top_up(data: bytes) -> tuple[str, int]:
    """Decode ``topUp`` calldata into ``(channelId, additionalDeposit)``.

    Raises:
        ValueError: another selector or wrong length.
    """
    if data[:4] != SEL_TOP_UP or len(data) != 4 + 2 * 32:
        raise ValueError("not topUp(bytes32,uint256) calldata")
    return "0x" + data[4:36].hex(), int.from_bytes(data[36:68], "big")


# --- on-chain state ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelState:
    """A channel as the escrow reports it (``getChannel``); all-zero when it does not exist."""

    finalized: bool
    close_requested_at: int
    payer: str
    payee: str
    token: str
    authorized_signer: str
    deposit: int
    settled: int

    @property
    def exists(self) -> bool:
        return self.payer != ZERO_ADDRESS

    @property
    def expected_signer(self) -> str:
        """Who must sign vouchers: the delegated signer, or the payer when none was set."""
        return self.payer if self.authorized_signer == ZERO_ADDRESS else self.authorized_signer

    @property
    def available(self) -> int:
        """Deposit not yet settled to the payee."""
        return self.deposit - self.settled


def decode_channel_state(result: bytes) -> ChannelState:
    """Decode the 256-byte return data of ``getChannel``.

    Raises:
        ValueError: wrong length or values outside their ABI types.
    """
    if len(result) != 8 * 32:
        raise ValueError(f"getChannel returns 256 bytes, got {len(result)}")
    w = [result[32 * i: 32 * (i + 1)] for i in range(8)]
    finalized = _word_uint(w[0], 8, "finalized")
    if finalized > 1:
        raise ValueError("finalized: not a bool")
    return ChannelState(
        finalized=bool(finalized), close_requested_at=_word_uint(w[1], 64, "closeRequestedAt"),
        payer=_word_address(w[2], "payer"), payee=_word_address(w[3], "payee"),
        token=_word_address(w[4], "token"), authorized_signer=_word_address(w[5], "authorizedSigner"),
        deposit=_word_uint(w[6], 128, "deposit"), settled=_word_uint(w[7], 128, "settled"))


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EscrowEvent:
    """One decoded escrow log.  ``name`` is the event name; ``values`` its non-indexed fields
    (ints, lower-case addresses, ``0x`` hex for bytes32) under their ABI names."""

    name: str
    channel_id: str
    payer: str
    payee: str
    values: Mapping[str, Any]
    log_index: int | None = None


# name -> (non-indexed field names and kinds); all events index (channelId, payer, payee)
_EVENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "ChannelOpened(bytes32,address,address,address,address,bytes32,uint256)": (
        ("token", "address"), ("authorizedSigner", "address"), ("salt", "bytes32"), ("deposit", "uint")),
    "Settled(bytes32,address,address,uint256,uint256,uint256)": (
        ("cumulativeAmount", "uint"), ("deltaPaid", "uint"), ("newSettled", "uint")),
    "TopUp(bytes32,address,address,uint256,uint256)": (("additionalDeposit", "uint"), ("newDeposit", "uint")),
    "CloseRequested(bytes32,address,address,uint256)": (("closeGraceEnd", "uint"),),
    "CloseRequestCancelled(bytes32,address,address)": (),
    "ChannelClosed(bytes32,address,address,uint256,uint256)": (
        ("settledToPayee", "uint"), ("refundedToPayer", "uint")),
}
EVENT_TOPICS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "0x" + keccak(sig.encode()).hex(): (sig.split("(")[0], fields) for sig, fields in _EVENTS.items()}
TOPIC_BY_NAME: dict[str, str] = {name: topic for topic, (name, _) in EVENT_TOPICS.items()}


def _hex_bytes(value: Any) -> bytes | None:
    if not isinstance(value, str) or value[:2] != "0x":
        return None
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        return None


def decode_escrow_log(log: Mapping[str, Any]) -> EscrowEvent | None:
    """Decode one JSON-RPC log object if it is a v1 escrow event, else ``None``.

    The caller filters by emitter (``log["address"]`` must be the escrow it trusts).
    """
    topics = log.get("topics") or []
    if len(topics) != 4 or not isinstance(topics[0], str):
        return None
    spec = EVENT_TOPICS.get(topics[0].lower())
    data = _hex_bytes(log.get("data", "0x"))
    raw_topics = [_hex_bytes(t) for t in topics[1:]]
    if spec is None or data is None or any(t is None or len(t) != 32 for t in raw_topics):
        return None
    name, fields = spec
    if len(data) != 32 * len(fields):
        return None
    cid, payer, payee = (t or b"" for t in raw_topics)
    try:
        values: dict[str, Any] = {}
        for i, (field, kind) in enumerate(fields):
            word = data[32 * i: 32 * (i + 1)]
            if kind == "address":
                values[field] = _word_address(word, field)
            elif kind == "bytes32":
                values[field] = "0x" + word.hex()
            else:
                values[field] = int.from_bytes(word, "big")
        payer_addr, payee_addr = _word_address(payer, "payer"), _word_address(payee, "payee")
    except ValueError:
        return None
    index = log.get("logIndex")
    return EscrowEvent(name, "0x" + cid.hex(), payer_addr, payee_addr, values,
                       int(index, 16) if isinstance(index, str) and index[:2] == "0x" else None)


def escrow_events(logs: Iterable[Mapping[str, Any]], escrow: str) -> list[EscrowEvent]:
    """The escrow events among a receipt's ``logs`` that were emitted by ``escrow``, in order."""
    want = normalize_address(escrow)
    out = []
    for log in logs:
        if str(log.get("address", "")).lower() != want:
            continue
        event = decode_escrow_log(log)
        if event is not None:
            out.append(event)
    return out
