"""JSON-RPC client for a Tempo node: the only module in ``tempo/`` that does network I/O.

One pool of kept-alive connections per client object; keep one client per process (a new
connection per call costs ~20 ms, see shared/docs/tempo-chain.md).  The connections are those
of ``tempo._http1`` (a lean HTTP/1.1 POST client, ~40x less CPU per call than ``httpx2``) unless
a proxy is configured for the node's URL or the event loop is not asyncio: then ``httpx2``.
Every poll has a deadline because anvil accepts invalid Tempo transactions,
returns a hash and then drops them without a receipt or an error.

``RpcClient`` (sync) and ``AsyncRpcClient`` are twins: the request/response
shaping is shared in module functions, each class only does its kind of I/O.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import httpx2

from ..errors import ReceiptTimeout, RpcError, RpcUnavailable
from ._http1 import AsyncPool, SyncPool, WireError, use_wire
from .tip20 import decode_uint_result, encode_balance_of

DEFAULT_TIMEOUT = httpx2.Timeout(10.0, connect=5.0)
GAS_PRICE_TTL = 2.0  # seconds a fetched base fee is reused


def _seconds(timeout: float | httpx2.Timeout) -> tuple[float, float]:
    """``(connect, read)`` seconds of a timeout given as a number or an ``httpx2.Timeout``."""
    if isinstance(timeout, httpx2.Timeout):
        read = timeout.read if timeout.read is not None else 10.0
        return (timeout.connect if timeout.connect is not None else read), read
    return float(timeout), float(timeout)


def _asyncio_running() -> bool:
    """True under asyncio (the lean pool's loop); trio and others go through ``httpx2``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _limits() -> httpx2.Limits:
    return httpx2.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30.0)


_compact = json.JSONEncoder(separators=(",", ":")).encode  # one encoder for every call


def _payload(ids: itertools.count[int], method: str, params: list[Any]) -> bytes:
    return _compact({"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params}).encode()


def _result(method: str, status: int, body: bytes) -> Any:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise RpcUnavailable(f"{method}: non-JSON answer (HTTP {status})") from exc
    if not isinstance(data, dict):
        raise RpcUnavailable(f"{method}: unexpected answer (HTTP {status})")
    err = data.get("error")
    if err is not None:
        if isinstance(err, dict):
            raise RpcError(method, int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
        raise RpcError(method, 0, str(err))
    if status >= 400:
        raise RpcUnavailable(f"{method}: HTTP {status}")
    return data.get("result")


def hex_int(value: Any) -> int:
    """Parse a JSON-RPC quantity (``"0x1a"``) into an int."""
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcUnavailable(f"expected a hex quantity, got {value!r}")
    return int(value, 16)


def _uint(result: str) -> int:
    try:
        return decode_uint_result(result)
    except ValueError as exc:
        raise RpcUnavailable(f"eth_call: {exc}") from None


class _Cache:
    """Chain id forever, base fee for ``GAS_PRICE_TTL`` seconds."""

    def __init__(self) -> None:
        self.chain_id: int | None = None
        self.base_fee: tuple[float, int] | None = None

    def fresh_base_fee(self) -> int | None:
        if self.base_fee and time.monotonic() - self.base_fee[0] < GAS_PRICE_TTL:
            return self.base_fee[1]
        return None


class RpcClient:
    """Synchronous JSON-RPC client with a pooled connection.

    Args:
        url: the node's HTTP endpoint.
        timeout: per-request timeout (seconds or an ``httpx2.Timeout``).
    Raises (from every call): ``RpcError`` for a JSON-RPC error object,
    ``RpcUnavailable`` for transport failures and timeouts.
    """

    def __init__(self, url: str, *, timeout: float | httpx2.Timeout = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self._timeout = timeout
        connect, read = _seconds(timeout)
        self._wire = SyncPool(url, connect=connect, read=read) if use_wire(url) else None
        self._http: httpx2.Client | None = None
        self._ids = itertools.count(1)
        self._cache = _Cache()

    def call(self, method: str, params: list[Any] | None = None) -> Any:
        body = _payload(self._ids, method, params or [])
        if self._wire is not None:
            try:
                status, content = self._wire.post(body)
            except WireError as exc:
                raise RpcUnavailable(f"{method}: {exc} ({self.url})") from exc
            return _result(method, status, content)
        if self._http is None:
            self._http = httpx2.Client(timeout=self._timeout, limits=_limits(),
                                       headers={"content-type": "application/json"})
        try:
            resp = self._http.post(self.url, content=body)
        except httpx2.HTTPError as exc:
            raise RpcUnavailable(f"{method}: {type(exc).__name__}: {exc} ({self.url})") from exc
        return _result(method, resp.status_code, resp.content)

    def chain_id(self) -> int:
        if self._cache.chain_id is None:
            self._cache.chain_id = hex_int(self.call("eth_chainId"))
        return self._cache.chain_id

    def base_fee(self) -> int:
        """Latest block's ``baseFeePerGas`` (cached briefly; anvil's drifts block by block)."""
        cached = self._cache.fresh_base_fee()
        if cached is not None:
            return cached
        block = self.call("eth_getBlockByNumber", ["latest", False])
        fee = hex_int(block.get("baseFeePerGas", "0x0"))
        self._cache.base_fee = (time.monotonic(), fee)
        return fee

    def nonce(self, address: str, block: str = "pending") -> int:
        return hex_int(self.call("eth_getTransactionCount", [address, block]))

    def send_raw(self, raw: bytes | str) -> str:
        data = raw if isinstance(raw, str) else "0x" + raw.hex()
        return str(self.call("eth_sendRawTransaction", [data]))

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        result = self.call("eth_getTransactionReceipt", [tx_hash])
        return result if isinstance(result, dict) else None

    def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        """``eth_getTransactionByHash``: the transaction (pending or mined), or ``None`` if unknown."""
        result = self.call("eth_getTransactionByHash", [tx_hash])
        return result if isinstance(result, dict) else None

    def send_raw_sync(self, raw: bytes | str) -> dict[str, Any]:
        """``eth_sendRawTransactionSync`` (EIP-7966): broadcast and return the receipt in one call.

        Only ``[raw]`` is sent: anvil 1.7.1 rejects the optional timeout parameter.
        """
        data = raw if isinstance(raw, str) else "0x" + raw.hex()
        return dict(self.call("eth_sendRawTransactionSync", [data]))

    def eth_call(self, request: dict[str, Any], block: str = "latest",
                 block_overrides: dict[str, Any] | None = None) -> str:
        """``eth_call``; ``block_overrides`` (e.g. ``{"time": hex}``) is the 4th parameter."""
        params: list[Any] = [request, block]
        if block_overrides is not None:
            params += [{}, block_overrides]
        return str(self.call("eth_call", params))

    def estimate_gas(self, request: dict[str, Any]) -> int:
        """``eth_estimateGas``.  On anvil pass ``nonce`` (else +250k) and one call at a time."""
        return hex_int(self.call("eth_estimateGas", [request]))

    def gas_price(self) -> int:
        """``eth_gasPrice`` in attodollars per gas."""
        return hex_int(self.call("eth_gasPrice"))

    def balance_of(self, token: str, owner: str, block: str = "latest") -> int:
        """TIP-20 ``balanceOf(owner)`` in base units."""
        return _uint(self.eth_call({"to": token, "data": "0x" + encode_balance_of(owner).hex()}, block))

    def wait_for_receipt(self, tx_hash: str, *, timeout: float = 10.0, poll: float = 0.002
                         ) -> dict[str, Any]:
        """Poll until the receipt exists; ``ReceiptTimeout`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = poll
        while True:
            rec = self.receipt(tx_hash)
            if rec is not None:
                return rec
            if time.monotonic() >= deadline:
                raise ReceiptTimeout(tx_hash, timeout)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> RpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRpcClient:
    """Asynchronous twin of ``RpcClient`` (same methods, awaitable)."""

    def __init__(self, url: str, *, timeout: float | httpx2.Timeout = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self._timeout = timeout
        connect, read = _seconds(timeout)
        self._wire = AsyncPool(url, connect=connect, read=read) if use_wire(url) else None
        self._http: httpx2.AsyncClient | None = None
        self._ids = itertools.count(1)
        self._cache = _Cache()

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        body = _payload(self._ids, method, params or [])
        if self._wire is not None and _asyncio_running():
            try:
                status, content = await self._wire.post(body)
            except WireError as exc:
                raise RpcUnavailable(f"{method}: {exc} ({self.url})") from exc
            return _result(method, status, content)
        if self._http is None:
            self._http = httpx2.AsyncClient(timeout=self._timeout, limits=_limits(),
                                            headers={"content-type": "application/json"})
        try:
            resp = await self._http.post(self.url, content=body)
        except httpx2.HTTPError as exc:
            raise RpcUnavailable(f"{method}: {type(exc).__name__}: {exc} ({self.url})") from exc
        return _result(method, resp.status_code, resp.content)

    async def chain_id(self) -> int:
        if self._cache.chain_id is None:
            self._cache.chain_id = hex_int(await self.call("eth_chainId"))
        return self._cache.chain_id

    async def base_fee(self) -> int:
        cached = self._cache.fresh_base_fee()
        if cached is not None:
            return cached
        block = await self.call("eth_getBlockByNumber", ["latest", False])
        fee = hex_int(block.get("baseFeePerGas", "0x0"))
        self._cache.base_fee = (time.monotonic(), fee)
        return fee

    async def nonce(self, address: str, block: str = "pending") -> int:
        return hex_int(await self.call("eth_getTransactionCount", [address, block]))

    async def send_raw(self, raw: bytes | str) -> str:
        data = raw if isinstance(raw, str) else "0x" + raw.hex()
        return str(await self.call("eth_sendRawTransaction", [data]))

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        result = await self.call("eth_getTransactionReceipt", [tx_hash])
        return result if isinstance(result, dict) else None

    async def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        result = await self.call("eth_getTransactionByHash", [tx_hash])
        return result if isinstance(result, dict) else None

    async def send_raw_sync(self, raw: bytes | str) -> dict[str, Any]:
        data = raw if isinstance(raw, str) else "0x" + raw.hex()
        return dict(await self.call("eth_sendRawTransactionSync", [data]))

    async def eth_call(self, request: dict[str, Any], block: str = "latest",
                       block_overrides: dict[str, Any] | None = None) -> str:
        params: list[Any] = [request, block]
        if block_overrides is not None:
            params += [{}, block_overrides]
        return str(await self.call("eth_call", params))

    async def estimate_gas(self, request: dict[str, Any]) -> int:
        return hex_int(await self.call("eth_estimateGas", [request]))

    async def gas_price(self) -> int:
        return hex_int(await self.call("eth_gasPrice"))

    async def balance_of(self, token: str, owner: str, block: str = "latest") -> int:
        data = "0x" + encode_balance_of(owner).hex()
        return _uint(await self.eth_call({"to": token, "data": data}, block))

    async def wait_for_receipt(self, tx_hash: str, *, timeout: float = 10.0, poll: float = 0.002
                               ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        delay = poll
        while True:
            rec = await self.receipt(tx_hash)
            if rec is not None:
                return rec
            if time.monotonic() >= deadline:
                raise ReceiptTimeout(tx_hash, timeout)
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    async def aclose(self) -> None:
        if self._wire is not None and _asyncio_running():
            await self._wire.aclose()
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncRpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
