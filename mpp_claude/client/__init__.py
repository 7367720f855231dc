"""The paying client SDK: httpx/httpx2 clients and transports that answer MPP 402 challenges.

Public surface (everything else in this package is private)::

    MppClient, AsyncMppClient          httpx2 clients for OpenAI(http_client=...) / AsyncOpenAI
    MppTransport, AsyncMppTransport    the same as bare transports wrapping any inner transport
    Wallet                             where the key comes from
    Policy, Budget, BudgetScope        what may be paid; spending limits; scoped sub-budgets
    spending_limit                     ``with spending_limit("0.20"):`` for any client
    Ledger, MemoryLedger               the spend ledger (SQLite / in memory)
    Hooks, Quote, PaymentReceipt       observers, prices, receipts; receipt_of(response)
    BudgetAlert, LowBalance            what Hooks(on_budget=..., on_low_balance=...) receive
    openai_client, async_openai_client convenience constructors
    spend_report                       the ``mpp-claude spend`` report
    SessionPolicy, session_receipt_of  the session intent (payment channels), opt-in
    ReclaimStatus                      a channel's forced close (client.request_close / withdraw / reclaim)

The legacy ``httpx`` twins are in :mod:`mpp_claude.httpx`.
"""

from __future__ import annotations

from ._httpx2 import AsyncMppClient, AsyncMppTransport, MppClient, MppTransport
from ._openai import async_openai_client, openai_client
from ._session_reclaim import ReclaimStatus
from .alerts import BudgetAlert, LowBalance
from .budget import Budget, BudgetScope, spending_limit
from .hooks import Hooks
from .ledger import Ledger, MemoryLedger
from .policy import UNSAFE_SWITCHES, Policy, UnsafePolicyWarning
from .receipts import PaymentReceipt, Quote, receipt_of
from .report import spend_report
from .session import SessionPolicy, SessionReceipt, session_receipt_of
from .wallet import Wallet

__all__ = [
    "UNSAFE_SWITCHES",
    "AsyncMppClient",
    "AsyncMppTransport",
    "Budget",
    "BudgetAlert",
    "BudgetScope",
    "Hooks",
    "Ledger",
    "LowBalance",
    "MemoryLedger",
    "MppClient",
    "MppTransport",
    "PaymentReceipt",
    "Policy",
    "Quote",
    "ReclaimStatus",
    "SessionPolicy",
    "SessionReceipt",
    "UnsafePolicyWarning",
    "Wallet",
    "async_openai_client",
    "openai_client",
    "receipt_of",
    "session_receipt_of",
    "spend_report",
    "spending_limit",
]
