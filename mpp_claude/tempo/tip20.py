"""TIP-20 token calls and logs (pure).

TIP-20 tokens are precompiles at ``0x20c0…`` addresses with 6 decimals
(shared/docs/tempo-chain.md §2).  Amounts are integers of base units
everywhere in this package; ``Decimal`` appears only in ``to_display`` /
``from_display`` at the edges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

DECIMALS = 6
UNIT = 10**DECIMALS

PATH_USD = "0x20c0000000000000000000000000000000000000"
ALPHA_USD = "0x20c0000000000000000000000000000000000001"
BETA_USD = "0x20c0000000000000000000000000000000000002"
THETA_USD = "0x20c0000000000000000000000000000000000003"
FEE_MANAGER = "0xfeec000000000000000000000000000000000000"
#: T6+ (TIP-1028): a transfer the recipient's receive policy refuses succeeds into this guard.
RECEIVE_POLICY_GUARD = "0xb10c000000000000000000000000000000000000"

SEL_TRANSFER = bytes.fromhex("a9059cbb")
SEL_TRANSFER_WITH_MEMO = bytes.fromhex("95777d59")
SEL_BALANCE_OF = bytes.fromhex("70a08231")

TOPIC_TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TOPIC_TRANSFER_WITH_MEMO = "0x57bc7354aa85aed339e000bccffabbc529466af35f0772c8f8ee1145927de7f0"


@dataclass(frozen=True)
class Token:
    symbol: str
    address: str
    chain_id: int
    decimals: int = DECIMALS


#: Known tokens per chain id: devnet (anvil 31337), Tempo mainnet 4217, Moderato testnet 42431.
KNOWN_TOKENS: dict[int, tuple[Token, ...]] = {
    31337: (Token("pathUSD", PATH_USD, 31337), Token("AlphaUSD", ALPHA_USD, 31337),
            Token("BetaUSD", BETA_USD, 31337), Token("ThetaUSD", THETA_USD, 31337)),
    4217: (Token("USDC.e", "0x20c000000000000000000000b9537d11c60e8b50", 4217),
           Token("pathUSD", PATH_USD, 4217)),
    42431: (Token("pathUSD", PATH_USD, 42431), Token("AlphaUSD", ALPHA_USD, 42431),
            Token("USDC.e", "0x20c0000000000000000000009e8d7eb59b783726", 42431)),
}


def token_symbol(chain_id: int, address: str) -> str:
    """The symbol of a known token, or the address itself."""
    for tok in KNOWN_TOKENS.get(chain_id, ()):
        if tok.address.lower() == address.lower():
            return tok.symbol
    return address


def _addr_word(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"address must be 20 bytes, got {len(raw)}: {address!r}")
    return raw.rjust(32, b"\0")


def _uint_word(value: int) -> bytes:
    if not 0 <= value < 2**256:
        raise ValueError(f"uint256 out of range: {value}")
    return value.to_bytes(32, "big")


def encode_transfer(to: str, amount: int) -> bytes:
    """Calldata of ``transfer(address,uint256)``."""
    return SEL_TRANSFER + _addr_word(to) + _uint_word(amount)


def encode_transfer_with_memo(to: str, amount: int, memo: bytes) -> bytes:
    """Calldata of ``transferWithMemo(address,uint256,bytes32)``; ``memo`` is exactly 32 bytes."""
    if len(memo) != 32:
        raise ValueError(f"memo must be exactly 32 bytes, got {len(memo)}")
    return SEL_TRANSFER_WITH_MEMO + _addr_word(to) + _uint_word(amount) + memo


def encode_balance_of(owner: str) -> bytes:
    """Calldata of ``balanceOf(address)``."""
    return SEL_BALANCE_OF + _addr_word(owner)


def to_display(amount: int, decimals: int = DECIMALS) -> Decimal:
    """Base units -> a Decimal amount of the token (display edge only)."""
    return Decimal(amount).scaleb(-decimals)


def from_display(value: str | Decimal, decimals: int = DECIMALS) -> int:
    """A decimal string such as ``"0.25"`` -> base units; refuses sub-unit precision."""
    dec = Decimal(value)
    units = dec.scaleb(decimals)
    if units != units.to_integral_value() or units < 0:
        raise ValueError(f"{value!r} is not a non-negative amount with at most {decimals} decimals")
    return int(units)


# --- decoding (calldata of payment calls, logs, call results) -----------------------------------------


@dataclass(frozen=True, slots=True)
class TransferCall:
    """A decoded ``transfer`` / ``transferWithMemo`` calldata; ``memo`` is ``None`` for ``transfer``."""

    to: str
    amount: int
    memo: bytes | None


def decode_transfer_call(data: bytes) -> TransferCall | None:
    """Decode TIP-20 ``transfer`` (68 bytes) or ``transferWithMemo`` (100 bytes) calldata.

    Returns ``None`` for any other calldata, including the right selector with the wrong
    length or a non-zero address padding (an exact static ABI encoding is required).
    """
    sel = data[:4]
    if sel == SEL_TRANSFER and len(data) == 68:
        memo = None
    elif sel == SEL_TRANSFER_WITH_MEMO and len(data) == 100:
        memo = data[68:100]
    else:
        return None
    if any(data[4:16]):
        return None
    return TransferCall("0x" + data[16:36].hex(), int.from_bytes(data[36:68], "big"), memo)


@dataclass(frozen=True, slots=True)
class TransferLog:
    """A decoded ``Transfer`` or ``TransferWithMemo`` log (addresses lower-case hex)."""

    token: str
    sender: str
    to: str
    amount: int
    memo: bytes | None
    log_index: int | None = None


def _topic_address(topic: str) -> str | None:
    raw = bytes.fromhex(topic[2:]) if topic[:2] == "0x" else b""
    if len(raw) != 32 or any(raw[:12]):
        return None
    return "0x" + raw[12:].hex()


def decode_transfer_log(log: Mapping[str, Any]) -> TransferLog | None:
    """Decode a receipt log if it is a TIP-20 ``Transfer`` or ``TransferWithMemo``, else ``None``.

    ``TransferWithMemo(address indexed from, address indexed to, uint256 amount,
    bytes32 indexed memo)``: topics ``[sig, from, to, memo]``, data = amount.
    Malformed entries (wrong topic count, non-hex, bad lengths) give ``None``.
    """
    try:
        topics = [str(t).lower() for t in log.get("topics", ())]
        if not topics:
            return None
        sig = topics[0]
        if sig == TOPIC_TRANSFER and len(topics) == 3:
            memo = None
        elif sig == TOPIC_TRANSFER_WITH_MEMO and len(topics) == 4:
            memo = bytes.fromhex(topics[3][2:])
            if len(memo) != 32:
                return None
        else:
            return None
        data = bytes.fromhex(str(log.get("data", "0x"))[2:])
        sender, to = _topic_address(topics[1]), _topic_address(topics[2])
        if sender is None or to is None or len(data) != 32:
            return None
        index = log.get("logIndex")
        return TransferLog(str(log.get("address", "")).lower(), sender, to, int.from_bytes(data, "big"),
                           memo, int(str(index), 16) if isinstance(index, str) else None)
    except (ValueError, TypeError, AttributeError):
        return None


def transfer_logs(receipt: Mapping[str, Any]) -> list[TransferLog]:
    """Every decodable ``Transfer``/``TransferWithMemo`` log of a receipt, in order."""
    logs = receipt.get("logs")
    if not isinstance(logs, list):
        return []
    return [t for t in (decode_transfer_log(lg) for lg in logs if isinstance(lg, Mapping)) if t is not None]


def fees_paid(receipt: Mapping[str, Any]) -> list[TransferLog]:
    """The fee transfers of a receipt: ``Transfer(payer -> FeeManager)`` logs, in the fee token."""
    return [t for t in transfer_logs(receipt) if t.memo is None and t.to == FEE_MANAGER]


def decode_uint_result(result: str) -> int:
    """The ``uint256`` returned by an ``eth_call`` (``"0x…"`` hex of 32 bytes)."""
    raw = bytes.fromhex(result[2:] if result[:2] == "0x" else result)
    if len(raw) != 32:
        raise ValueError(f"expected a 32-byte uint256 result, got {len(raw)} bytes")
    return int.from_bytes(raw, "big")
