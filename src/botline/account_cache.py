"""Accounts as the request paths that carry no API key read them: the public chat API and page,
webhooks, scheduled activations, and the egress layer (which needs to know whether a URL's owner is
an admin account).

Kept for `auth.key_cache_seconds`; an admin's edit drops the cached copy on every replica (a signal
through the Store), and the expiry bounds how long a copy survives a lost signal.
"""

from __future__ import annotations

from botline.domain.accounts import Account
from botline.egress.policy import Trust
from botline.store.base import Store
from botline.store.signals import Eviction
from botline.ttl_cache import TtlCache


class AccountCache:
    def __init__(self, store: Store, *, ttl: float) -> None:
        self._store = store
        self._entries: TtlCache[str, Account] = TtlCache(ttl=ttl)
        self._evictions = Eviction(store.signals, "account.forget", self._drop)

    async def start(self) -> None:
        await self._evictions.start()

    async def get(self, account_id: str) -> Account | None:
        """The account; the same object to every caller within the TTL: do not modify it."""
        return await self._entries.get(account_id, lambda: self._store.accounts.get(account_id))

    async def active(self, account_id: str) -> Account | None:
        """The account when it exists and is not disabled, else None."""
        account = await self.get(account_id)
        return None if account is None or account.disabled else account

    async def trust(self, account_id: str) -> Trust:
        """How far the URLs this account saved may reach: anywhere for admin accounts (the operator's
        own, e.g. a local model), the tenant egress policy for everyone else (and unknown accounts)."""
        account = await self.get(account_id)
        return Trust.of(account is not None and account.is_admin)

    async def forget(self, account_id: str) -> None:
        await self._evictions.evict(account_id)

    def _drop(self, account_id: str) -> None:
        self._entries.forget(lambda account: account.id == account_id)
