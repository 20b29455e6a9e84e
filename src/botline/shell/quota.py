"""Shell quotas that hold under concurrency: usage counted from storage plus bytes reserved by writes in flight.

A write first reserves the bytes it may take, under a lease on the account (the Store's leases, so across
replicas too): the check and the reservation happen together, so two uploads that fit alone but not
together cannot both pass. A reservation is released when the write ends, without the lease: a check
reads the reservations before it walks the storage, so a finished write is counted at least once (as a
reservation, a file, or both) whatever it does meanwhile. A reservation a dead replica left behind
expires after RESERVATION_SECONDS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from botline.domain.base import random_hex
from botline.domain.clock import Clock
from botline.engine.locks import SessionLocks
from botline.shell.settings import ShellSettings
from botline.shell.storage import FileStore, QuotaExceeded, UserRoot
from botline.store.base import ReservationRepository

ACCOUNT_WALK_FACTOR = 100
"""An account's quota walk reads up to this many times `max_entries`."""
RESERVATION_SECONDS = 3600
"""How long a reservation holds when its write never ends (its replica died): longer than any upload."""


class Quotas:
    def __init__(self, store: FileStore, settings: ShellSettings, reservations: ReservationRepository,
                 leases: SessionLocks, clock: Clock) -> None:
        self._store = store
        self._s = settings
        self._reservations = reservations
        self._leases = leases
        self._clock = clock

    @staticmethod
    def _scopes(root: UserRoot) -> tuple[str, str]:
        account = f"shell:{root.account_segment}"
        return account, f"{account}:{root.user_segment}"

    async def remaining(self, root: UserRoot) -> int:
        """Bytes one more file may take: the smallest of the file cap and what both quotas leave once the
        writes in flight are counted."""
        s = self._s
        now = self._clock.now()
        account_scope, user_scope = self._scopes(root)
        reserved_account = await self._reservations.total(account_scope, now=now)
        reserved_user = await self._reservations.total(user_scope, now=now)
        user = await self._store.usage(root, root.account_id, limit=s.max_entries)
        account = await self._store.usage(None, root.account_id, limit=s.max_entries * ACCOUNT_WALK_FACTOR)
        return min(s.max_file_bytes, s.user_quota_bytes - user - reserved_user,
                   s.account_quota_bytes - account - reserved_account)

    @asynccontextmanager
    async def reserve(self, root: UserRoot, at_least: int, at_most: int | None) -> AsyncIterator[int]:
        """Reserves room for one write of at least `at_least` bytes and yields how many it may take (up to
        `at_most`, or all the room when the size is unknown); QuotaExceeded when there is less room."""
        account_scope, user_scope = self._scopes(root)
        reservation = random_hex(8)
        async with self._leases.hold(account_scope):
            room = await self.remaining(root)
            if room <= 0 or at_least > room:
                raise QuotaExceeded(self.message(room))
            amount = room if at_most is None else min(room, at_most)
            now = self._clock.now()
            for scope in (account_scope, user_scope):
                await self._reservations.add(scope, reservation, amount, now=now, ttl_seconds=RESERVATION_SECONDS)
        try:
            yield amount
        finally:
            await asyncio.shield(self._release((account_scope, user_scope), reservation))

    async def _release(self, scopes: tuple[str, ...], reservation: str) -> None:
        for scope in scopes:
            await self._reservations.release(scope, reservation)

    def message(self, room: int) -> str:
        return (f"Not enough storage left for this shell user ({max(room, 0)} bytes free; the quotas are "
                f"{self._s.user_quota_bytes} bytes per user and {self._s.account_quota_bytes} "
                f"per account). Delete files first.")
