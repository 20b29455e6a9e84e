"""An account's policies, kept in memory per account (an empty list too), so a turn of an account
without policies costs no Store read; edits drop the copy on every replica (signal), a lost signal
is bounded by the TTL."""

from __future__ import annotations

from botline.domain.policies import Policy
from botline.store.base import Store
from botline.store.signals import Eviction
from botline.ttl_cache import TtlCache


class PolicyCache:
    def __init__(self, store: Store, *, ttl: float) -> None:
        self._store = store
        self._entries: TtlCache[str, list[Policy]] = TtlCache(ttl=ttl)
        self._evictions = Eviction(store.signals, "policy.forget", self._drop)

    async def start(self) -> None:
        await self._evictions.start()

    async def of_account(self, account_id: str) -> list[Policy]:
        found = await self._entries.get(account_id, lambda: self._store.policies.list_for_account(account_id))
        return found or []

    async def forget(self, account_id: str) -> None:
        await self._evictions.evict(account_id)

    def _drop(self, account_id: str) -> None:
        self._entries.forget(lambda policies: not policies or policies[0].account_id == account_id)
