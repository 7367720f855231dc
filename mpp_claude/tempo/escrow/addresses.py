"""Where the session escrow lives on each Tempo chain (configuration data, pure).

Sources (shared/docs/mpp-protocol.md §4.1; mppx ``src/tempo/internal/defaults.ts``):

* mainnet 4217: ``0x33b901018174DDabE4841042ab76ba85D4e24f25`` (mppx default escrow, v1)
* Moderato 42431: ``0xe1c4d3dce17bc111181ddf716f75bae49e61a336`` (mppx default escrow, v1);
  the draft's appendix names ``0x9d136eEa063eDE5418A6BC7bEafF009bBb6CFa70`` (an earlier v1
  deployment), accepted as a known v1 escrow but not chosen by default.
* v2 (TIP-1034 precompile, T5+): ``0x4d50500000000000000000000000000000000000`` on every chain;
  not usable on anvil 1.7.1 (T4) and not spoken by this package yet.

A local devnet has no canonical escrow: ``Devnet.escrow_address`` deploys ``Escrow.sol``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import ConfigError

#: chain id -> the v1 escrow a client or server uses by default
CANONICAL_ESCROWS: Mapping[int, str] = {
    4217: "0x33b901018174ddabe4841042ab76ba85d4e24f25",
    42431: "0xe1c4d3dce17bc111181ddf716f75bae49e61a336",
}

#: chain id -> every v1 escrow recognised as canonical (a client may accept an offer naming one)
KNOWN_V1_ESCROWS: Mapping[int, frozenset[str]] = {
    4217: frozenset({"0x33b901018174ddabe4841042ab76ba85d4e24f25"}),
    42431: frozenset({"0xe1c4d3dce17bc111181ddf716f75bae49e61a336",
                      "0x9d136eea063ede5418a6bc7beaff009bbb6cfa70"}),
}

V2_CHANNEL_RESERVE = "0x4d50500000000000000000000000000000000000"


def resolve_escrow(chain_id: int, overrides: Mapping[int, str] | None = None) -> str:
    """The escrow address to use on ``chain_id``: ``overrides`` first, then the canonical table.

    Args:
        chain_id: the Tempo chain id.
        overrides: chain id -> address (e.g. ``{31337: devnet.escrow_address}``).
    Returns:
        The lower-case ``0x`` address.
    Raises:
        ConfigError: no escrow is known for ``chain_id``, or an override is malformed.
    """
    address = (overrides or {}).get(chain_id) or CANONICAL_ESCROWS.get(chain_id)
    if address is None:
        raise ConfigError(f"no session escrow known for chain {chain_id}: configure one "
                          "(on a devnet use Devnet.escrow_address)")
    text = address.lower()
    if len(text) != 42 or not text.startswith("0x") or any(c not in "0123456789abcdef" for c in text[2:]):
        raise ConfigError(f"escrow address for chain {chain_id} is not a 0x + 40 hex address: {address!r}")
    return text
