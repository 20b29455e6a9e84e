"""Chat clients as the web chat reads them on every prompt (the page's settings, limits, gateway).

Read twice per prompt before this cache (the public API's session lookup, and the schedule tools'
check of allowScheduledContinuations). Kept for `webchat.client_cache_seconds`; an edit through the
API drops the cached copy on every replica (a signal through the Store), and the expiry bounds how
long a copy survives a lost signal.
"""

from __future__ import annotations

from botline.domain.chat_clients import ChatClient
from botline.store.base import Store
from botline.store.signals import Eviction
from botline.ttl_cache import TtlCache


class ChatClientCache:
    def __init__(self, store: Store, *, ttl: float) -> None:
        self._store = store
        self._entries: TtlCache[tuple[str, str], ChatClient] = TtlCache(ttl=ttl)
        self._evictions = Eviction(store.signals, "chat_client.forget", self._drop)

    async def start(self) -> None:
        await self._evictions.start()

    async def get(self, account_id: str, client_id: str) -> ChatClient | None:
        """The account's chat client; the same object to every caller within the TTL: do not modify it."""
        return await self._entries.get(
            (account_id, client_id), lambda: self._store.chat_clients.get(account_id, client_id)
        )

    async def forget(self, client_id: str) -> None:
        await self._evictions.evict(client_id)

    def _drop(self, client_id: str) -> None:
        self._entries.forget(lambda client: client.id == client_id)
