"""TIP-20 token calls and logs (pure).

TIP-20 tokens are precompiles at ``0x20c0…`` addresses with 6 decimals
(shared/docs/tempo-chain.md §2).  Amounts are integers of base units
everywhere in this package; ``Decimal`` appears only in ``to_display`` /
``from_display`` at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

DECIMALS = 6
UNIT = 10**DECIMALS

PATH_USD = "0x20c0000000000000000000000000000000000000"
ALPHA_USD = "0x20c0000000000000000000000000000000000001"
BETA_USD = "0x20c0000000000000000000000000000000000002"
THETA_USD = "0x20c0000000000000000000000000000000000003"
FEE_MANAGER = "0xfeec000000000000000000000000000000000000"

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
