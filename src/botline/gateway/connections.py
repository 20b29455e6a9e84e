"""Where a gateway's model calls go: its own baseAddress/apiKey, or the LLM connection it names.

A turn resolves the connection each time (through a short cache), so a rotated key reaches every
gateway using the connection at once on this replica and within `llm.gateway_cache_seconds` on the
others (an edit also signals them to drop their copy, like GatewayCache). The egress trust is the
account's: the connection's URL was saved by that account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from botline.domain.gateways import Gateway
from botline.domain.llm_connections import LlmConnection
from botline.egress import Trust
from botline.gateway.errors import GatewayError
from botline.store.base import Store
from botline.store.signals import Eviction
from botline.ttl_cache import TtlCache


class ConnectionGone(GatewayError):
    """The gateway names an LLM connection that was deleted."""

    status_code = 502

    def __init__(self) -> None:
        super().__init__("The AI gateway's LLM connection no longer exists: choose another one for the gateway.")


class ConnectionCache:
    """Connections by (account, id), kept `ttl` seconds; `forget` drops them on every replica."""

    def __init__(self, store: Store, *, ttl: float) -> None:
        self._store = store
        self._entries: TtlCache[tuple[str, str], LlmConnection] = TtlCache(ttl=ttl)
        self._evictions = Eviction(store.signals, "llm_connection.forget", self._drop)

    async def start(self) -> None:
        await self._evictions.start()

    async def find(self, account_id: str, connection_id: str) -> LlmConnection | None:
        return await self._entries.get(
            (account_id, connection_id), lambda: self._store.llm_connections.get(account_id, connection_id))

    async def forget(self, connection_id: str) -> None:
        await self._evictions.evict(connection_id)

    def _drop(self, connection_id: str) -> None:
        self._entries.forget(lambda connection: connection.id == connection_id)


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible endpoint, its credential and how far it may reach."""

    base_address: str
    api_key: str | None
    trust: Trust
    connection: LlmConnection | None = None


class Upstreams:
    def __init__(self, connections: ConnectionCache, trust_of: Callable[[str], Awaitable[Trust]]) -> None:
        self._connections = connections
        self._trust_of = trust_of

    async def trust(self, account_id: str) -> Trust:
        return await self._trust_of(account_id)

    async def of(self, gateway: Gateway) -> Upstream:
        """The gateway's upstream; raises ConnectionGone when its connection was deleted."""
        params = gateway.parameters
        trust = await self._trust_of(gateway.account_id)
        if params.llm_connection_id is None:
            return Upstream(params.base_address or "", params.api_key, trust)
        connection = await self._connections.find(gateway.account_id, params.llm_connection_id)
        if connection is None:
            raise ConnectionGone()
        return Upstream(connection.endpoint, connection.credential, trust, connection)
