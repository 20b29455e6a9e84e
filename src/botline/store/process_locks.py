"""Leases held in this process: the SQLite backend's LockRepository.

One process owns an SQLite file (docs/deploy.md), so a lease has nobody outside the process to keep
out; keeping it in the file cost a write on every acquire, refresh and release (5 hops to SQLite's
thread per turn, and a write every 5 s per held lease). The same lease rules hold (a token, a TTL on
the monotonic clock, only the holder refreshes or releases), so SessionLocks and the contract suite
see no difference from the Redis leases, which do keep replicas apart.
"""

from __future__ import annotations

import itertools
import time

from botline.store.base import LockRepository


class ProcessLocks(LockRepository):
    immediate = True

    def __init__(self) -> None:
        self._leases: dict[str, tuple[str, float]] = {}
        """name -> (token, monotonic expiry)."""
        self._tokens = itertools.count(1)
        """Tokens only need to differ within this process: a counter, not random bytes."""

    def _held(self, name: str, now: float) -> str | None:
        lease = self._leases.get(name)
        return lease[0] if lease is not None and lease[1] > now else None

    async def acquire(self, name: str, *, ttl_seconds: float) -> str | None:
        now = time.monotonic()
        if self._held(name, now) is not None:
            return None
        token = str(next(self._tokens))
        self._leases[name] = (token, now + ttl_seconds)
        return token

    async def refresh(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        now = time.monotonic()
        if self._held(name, now) != token:
            return False
        self._leases[name] = (token, now + ttl_seconds)
        return True

    async def reclaim(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        now = time.monotonic()
        if self._held(name, now) not in (None, token):
            return False
        self._leases[name] = (token, now + ttl_seconds)
        return True

    async def release(self, name: str, token: str) -> None:
        lease = self._leases.get(name)
        if lease is not None and lease[0] == token:
            del self._leases[name]
