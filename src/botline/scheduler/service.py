"""Our facade over APScheduler 3 (AsyncIOScheduler, in-memory job store).

The Store is the truth; APScheduler only keeps timers for the items due within HORIZON, loaded from
the Store at start and again every `sync_interval_seconds` (so a replica also fires items another
replica created, and 100,000 pending schedules cost a query, not 100,000 timers). Every firing is
claimed in the Store first, so N replicas with the same timers deliver each activation once, and a
crash after the claim never fires it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from botline.account_cache import AccountCache
from botline.config import SchedulerSettings
from botline.domain.clock import Clock
from botline.domain.schedules import ScheduledItem
from botline.periodic import Periodic
from botline.store.base import Store, StoreError

log = logging.getLogger(__name__)


HORIZON = timedelta(minutes=10)
"""Timers are armed for items due within this; later ones are picked up by a later sync."""
STUCK_AFTER = timedelta(minutes=15)
"""A claimed firing still not recorded this long after its time means its replica died mid-activation."""
RECOVERY_SUFFIX = "/recovery"


class Activator(Protocol):
    async def activate(self, item: ScheduledItem, fire_time: datetime) -> None: ...

    async def abandon(self, item: ScheduledItem, fire_time: datetime) -> None:
        """Records a firing whose replica died after claiming it, and moves the item on (nothing is sent)."""


class Scheduler:
    def __init__(
        self, store: Store, activator: Activator, clock: Clock, settings: SchedulerSettings, *,
        accounts: AccountCache,
    ) -> None:
        self._accounts = accounts
        self._firing: set[asyncio.Task[None]] = set()
        self._store = store
        self._activator = activator
        self._clock = clock
        self._settings = settings
        self._aps = AsyncIOScheduler(timezone=UTC)
        self._planned: dict[str, datetime] = {}
        self._attempted: dict[str, datetime] = {}
        """Fire times this replica already tried to claim: they are never armed again."""
        self._syncer = Periodic("schedule-sync", settings.sync_interval_seconds, self.sync)

    async def start(self) -> None:
        self._aps.start()
        await self.sync()
        self._syncer.start()

    async def close(self, grace_seconds: float | None = None) -> None:
        """Stops the timers, then lets firings already under way finish (up to `grace_seconds`; None:
        no limit): a claimed firing that is cut short is never sent, only recorded as missed."""
        await self._syncer.close()
        if self._aps.running:
            self._aps.shutdown(wait=False)
        if self._firing:
            _, late = await asyncio.wait(set(self._firing), timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def sync(self) -> int:
        """Arms timers for the items due within the horizon; drops timers of items gone or moved elsewhere."""
        items = await self._store.schedules.due(self._horizon())
        for item in items:
            self.plan(item)
        for stale in set(self._planned) - {item.id for item in items}:
            self.forget(stale)
        return len(items)

    def plan(self, item: ScheduledItem) -> None:
        """(Re)arms the item's timer for its next activation; an overdue one fires right away, one
        beyond the horizon is left to a later sync."""
        fire_time = item.next_activation
        if not item.active or fire_time is None:
            self.forget(item.id)
            return
        if fire_time > self._horizon():
            self.forget(item.id)
            return
        if self._planned.get(item.id) == fire_time:
            return
        if self._attempted.get(item.id) == fire_time:
            # Claimed here or by another replica and not recorded yet: an activation in progress, or
            # one whose replica died (recovered once it is clearly stuck).
            if self._clock.now() - fire_time > STUCK_AFTER:
                self._aps.add_job(self._recover, args=[item], id=f"{item.id}{RECOVERY_SUFFIX}",
                                  replace_existing=True, misfire_grace_time=None)
            return
        self._planned[item.id] = fire_time
        run_at = max(fire_time, self._clock.now())
        self._aps.add_job(
            self._start_firing, DateTrigger(run_date=run_at, timezone=UTC), args=[item.id, item.account_id, fire_time],
            id=item.id, replace_existing=True, misfire_grace_time=None, coalesce=True,
        )

    def _horizon(self) -> datetime:
        """Far enough ahead that several syncs see an item before it is due."""
        return self._clock.now() + max(HORIZON, timedelta(seconds=4 * self._settings.sync_interval_seconds))

    def forget(self, item_id: str) -> None:
        self._attempted.pop(item_id, None)
        if self._planned.pop(item_id, None) is not None:
            with contextlib.suppress(Exception):  # APScheduler's JobLookupError when it already ran
                self._aps.remove_job(item_id)

    async def _start_firing(self, item_id: str, account_id: str, fire_time: datetime) -> None:
        """APScheduler's job (a coroutine, so it runs on our loop): hands the firing to a task of ours,
        because APScheduler cancels its own job tasks on shutdown."""
        task = asyncio.create_task(self._fire(item_id, account_id, fire_time))
        self._firing.add(task)
        task.add_done_callback(self._firing.discard)

    async def _fire(self, item_id: str, account_id: str, fire_time: datetime) -> None:
        self._planned.pop(item_id, None)
        try:
            if await self._accounts.active(account_id) is None:
                # Disabled: not claimed, so the firing stays pending; every sync arms it again, and
                # once the account is re-enabled it fires (or is recorded missed past the grace).
                log.info("schedule %s not fired: its account is disabled", item_id)
                return
        except StoreError as exc:
            log.warning("schedule %s: account not readable (%s); tried again at the next sync", item_id, exc)
            return
        self._attempted[item_id] = fire_time
        try:
            if await self._store.schedules.claim(item_id, fire_time):
                item = await self._store.schedules.get(account_id, item_id)
                if item is not None and item.active and item.next_activation == fire_time:
                    await self._activator.activate(item, fire_time)
            item = await self._store.schedules.get(account_id, item_id)
        except StoreError as exc:
            log.warning("schedule %s: firing interrupted by the store (%s); recovered if it stays stuck", item_id, exc)
            return
        if item is not None:
            self.plan(item)

    async def _recover(self, item: ScheduledItem) -> None:
        fire_time = item.next_activation
        if fire_time is None:
            return
        try:
            if await self._store.schedules.claim(item.id + RECOVERY_SUFFIX, fire_time):
                await self._activator.abandon(item, fire_time)
            fresh = await self._store.schedules.get(item.account_id, item.id)
        except StoreError as exc:
            log.warning("stuck schedule %s not recovered yet: %s", item.id, exc)
            return
        if fresh is not None:
            self.plan(fresh)
