"""One turn at a time per conversation, within a process and across replicas.

A process-local asyncio.Lock keeps waiters in FIFO order; a lease in the Store (a Redis key; on
SQLite, which one process owns, a lease kept in that process) keeps other replicas out. The lease is
refreshed while held, so a long turn keeps it, and it expires on its own if the holder dies. Losing
the Store for a moment while holding a lease is not the holder's failure: a refresh that fails is
tried again soon, a lease that lapsed meanwhile is taken back when no one else took it, a release
that fails is retried in the background until the Store is back (or the lease has expired anyway),
and the work done under it stands. Only when another holder took the lease is it marked lost: the
holder decides what it must not do any more (`Lease.check`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from botline.store.base import HeldLease, LockRepository, StoreError

log = logging.getLogger(__name__)

LEASE_SECONDS = 15.0
FIRST_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.5
RELEASE_RETRY_SECONDS = 0.5
REFRESH_RETRIES_PER_LEASE = 30
"""A refresh the Store could not take is tried again a lease/30 later (0.5 s for the default lease),
so an outage has to last nearly the whole lease before the lease lapses."""


Taker = Callable[[str, float], Awaitable[str | None]]
"""How `SessionLocks.hold` takes a lease: (name, ttl seconds) -> its token, or None while another holder
has it; `LockRepository.acquire` unless the holder brings its own."""


class LeaseLost(Exception):
    """Another holder took the lease (it lapsed during a Store outage): the work under it may be
    running twice, and whatever must happen once is left to the new holder."""


@dataclass
class Lease:
    """What `SessionLocks.hold` yields: `lost` turns True once another holder has the name."""

    name: str
    token: str = ""
    lost: bool = False
    freed: bool = False
    """Set by the holder once its last write freed the lease (`freeing`): hold() then sends no release."""

    def check(self) -> None:
        """Raises LeaseLost when another holder has the name; call before doing what must happen once."""
        if self.lost:
            raise LeaseLost(f"lost the lease on {self.name} to another holder")

    def freeing(self) -> HeldLease:
        """For the holder's last write under the lease (`add_messages(freeing=...)`), which frees it in
        the same round trip; set `freed` once that write returned. Nothing may follow that write that
        needs the lease: another replica can take it from then on."""
        return HeldLease(self.name, self.token)


class SessionLocks:
    def __init__(self, leases: LockRepository, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self._leases = leases
        self._lease_seconds = lease_seconds
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        """Releases retried after the holder moved on; cancelled by close()."""

    @asynccontextmanager
    async def hold(self, name: str, *, taking: Taker | None = None) -> AsyncIterator[Lease]:
        """`taking`: takes the lease instead of `LockRepository.acquire`, at every attempt; for a holder
        whose first read rides on the same round trip (`SessionRepository.lease_with_messages`). It must
        take the lease as `acquire` does, and on a store whose leases are `immediate` it is called with
        no task to shield it: a cancel landing inside it must give the lease back itself."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._users[name] = self._users.get(name, 0) + 1
        try:
            async with lock:
                token = await self._acquire(name, taking or self._acquire_lease)
                lease = Lease(name, token)
                # Most holds end long before the first refresh is due: a timer, and a refreshing task
                # only once it fires (a task per hold was measurable on the web chat's prompt path).
                refreshers: list[asyncio.Task[None]] = []
                timer = asyncio.get_running_loop().call_later(
                    self._lease_seconds / 3,
                    lambda: refreshers.append(asyncio.create_task(self._refresh(lease, token))),
                )
                try:
                    yield lease
                finally:
                    timer.cancel()
                    for refresher in refreshers:
                        refresher.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await refresher
                    # Freed by the holder's last write already, unless a refresher ran: it may have
                    # found the lease gone and taken it back (releasing twice is harmless, by token).
                    if not lease.freed or refreshers:
                        if self._leases.immediate:
                            await self._release(name, token)
                        else:
                            await asyncio.shield(self._release(name, token))
        finally:
            self._users[name] -= 1
            if not self._users[name]:
                del self._users[name], self._locks[name]

    async def close(self) -> None:
        """Cancels the releases still being retried (a lease left behind expires on its own)."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _acquire_lease(self, name: str, ttl_seconds: float) -> Awaitable[str | None]:
        return self._leases.acquire(name, ttl_seconds=ttl_seconds)

    async def _acquire(self, name: str, taking: Taker) -> str:
        delay = FIRST_POLL_SECONDS
        while (token := await self._take(name, taking)) is None:
            await asyncio.sleep(delay)  # another replica holds it: there is no wake-up signal to wait on
            delay = min(delay * 2, MAX_POLL_SECONDS)
        return token

    async def _take(self, name: str, taking: Taker) -> str | None:
        """Shielded: a cancel landing while the Store takes the lease would lose its token, and the
        name would stay locked for a whole lease; the lease is given back instead. Leases kept in this
        process are taken without a task: nothing can interrupt them (`hold` on `taking`)."""
        if self._leases.immediate:
            return await taking(name, self._lease_seconds)
        attempt = asyncio.ensure_future(taking(name, self._lease_seconds))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(lambda done: self._give_back(name, done))
            raise

    def _give_back(self, name: str, attempt: asyncio.Future[str | None]) -> None:
        if attempt.cancelled() or attempt.exception() is not None:
            return
        token = attempt.result()
        if token is not None:
            self._in_background(self._release(name, token))

    async def _release(self, name: str, token: str) -> None:
        try:
            await self._leases.release(name, token)
        except StoreError as exc:
            # Not waited for: the holder's result (or its 503) must not wait for the Store to return.
            log.warning("could not release the lease on %s (%s); retrying in the background", name, exc)
            self._in_background(self._release_later(name, token))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release_later(self, name: str, token: str) -> None:
        """Without this a chat would stay locked after a Store outage until its lease expired."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._lease_seconds
        while loop.time() < give_up_at:
            await asyncio.sleep(RELEASE_RETRY_SECONDS)
            with contextlib.suppress(StoreError):
                await self._leases.release(name, token)
                return

    async def _refresh(self, lease: Lease, token: str) -> None:
        """Started a third of the lease after acquiring it; refreshes at once, then every third. A
        refresh the Store cannot take is tried again soon, until it can; a lease that lapsed
        meanwhile is taken back, and is lost only if another holder took it."""
        failing = False
        while True:
            _raise_if_cancelling()
            try:
                held = await self._leases.refresh(lease.name, token, ttl_seconds=self._lease_seconds)
                if not held:
                    log.warning("the lease on %s lapsed while held; taking it back", lease.name)
                    held = await self._leases.reclaim(lease.name, token, ttl_seconds=self._lease_seconds)
            except StoreError as exc:
                if not failing:  # once per outage, not every half second
                    log.warning("could not refresh the lease on %s (%s); trying again", lease.name, exc)
                failing = True
                await asyncio.sleep(self._lease_seconds / REFRESH_RETRIES_PER_LEASE)
                continue
            failing = False
            if not held:
                log.error("lost the lease on %s to another holder while holding it", lease.name)
                lease.lost = True
                return
            await asyncio.sleep(self._lease_seconds / 3)


def _raise_if_cancelling() -> None:
    """redis-py can swallow a cancel that lands inside a command (and answer normally): a loop that
    only ends by being cancelled checks for it, or the holder waiting for it at release hangs."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
