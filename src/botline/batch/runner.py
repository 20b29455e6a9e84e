"""The batch worker of one process: claims items of Active jobs from the Store's queue, runs each
through `ItemProcessor`, records its result once, and renews the leases of what it holds.

Claims are bounded by `batch.max_concurrent_items` (this process), and by `max_concurrent_per_job`
and `max_concurrent_per_account`, which the Store's claim applies across every replica (this process's
own counts only spare it a claim that could not take anything). A disabled account's jobs are skipped.
Between rounds the loop waits for a slot to free, a `kick` (an import, a resume) or `batch.poll_seconds`.

On SIGTERM (`close`) it claims nothing more, lets running items finish within the grace period and
hands the rest back to the queue (`release`), so another replica or the next start takes them at once;
after a kill -9 their leases run out instead (`batch.lease_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from botline.account_cache import AccountCache
from botline.batch.processor import ItemProcessor
from botline.batch.results import ResultWriter
from botline.config import BatchSettings
from botline.domain.base import new_id
from botline.domain.batch import (
    BatchItem,
    BatchJob,
    ItemResult,
    ItemState,
    JobEvent,
    JobState,
    ResultWrite,
    Workflow,
)
from botline.domain.clock import Clock
from botline.metrics import Metrics
from botline.store.base import Store, StoreError

log = logging.getLogger(__name__)

ERROR_BURST = 5
"""ExecutionErrors in a row in one job that are worth an `ErrorBurst` entry in its log."""
RECORD_ATTEMPTS = 5
STORE_RETRY_SECONDS = 1.0
ONLY_ACTIVE = frozenset({JobState.ACTIVE})


@dataclass(frozen=True)
class _Held:
    job_id: str
    account_id: str
    token: str


class BatchRunner:
    def __init__(
        self, store: Store, processor: ItemProcessor, accounts: AccountCache, clock: Clock, settings: BatchSettings,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._processor = processor
        self._accounts = accounts
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        self._token_prefix = new_id()
        self._claims = itertools.count(1)
        self._held: dict[str, _Held] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._per_job: Counter[str] = Counter()
        self._per_account: Counter[str] = Counter()
        self._errors_in_a_row: Counter[str] = Counter()
        self._results = ResultWriter(store, clock, on_finished=self._forget)
        self._wake = asyncio.Event()
        self._work: list[tuple[BatchJob, Workflow]] | None = None
        self._work_read_at = 0.0
        self._closing = False
        self._loops: list[asyncio.Task[None]] = []

    def _forget(self, job_id: str) -> None:
        """A job finished: its error streak is over."""
        self._errors_in_a_row.pop(job_id, None)

    async def start(self) -> None:
        self._loops = [asyncio.create_task(self._claim_loop(), name="batch-claims"),
                       asyncio.create_task(self._renew_loop(), name="batch-leases")]

    def kick(self) -> None:
        """Look for claimable items now (after an import, a resume or a retry)."""
        self._work = None
        self._wake.set()

    async def close(self, grace_seconds: float) -> None:
        """Claims nothing more; running items get `grace_seconds`, the rest go back to the queue. Idempotent."""
        self._closing = True
        self._wake.set()
        running = list(self._tasks.values())
        if running:
            _, late = await asyncio.wait(running, timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._results.close()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def _claim_loop(self) -> None:
        while not self._closing:
            self._wake.clear()
            claimed = 0
            try:
                claimed = await self._claim_round()
            except StoreError as exc:
                log.warning("batch claims paused: %s", exc)
            except Exception:  # a bug must not stop every batch job of this process: log, try again later
                log.exception("batch claim round failed")
            if claimed and self._free(None, None) > 0:
                continue  # more may be waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.poll_seconds)

    def _free(self, job: BatchJob | None, account_id: str | None) -> int:
        free = self._settings.max_concurrent_items - len(self._tasks)
        if job is not None:
            free = min(free, self._settings.max_concurrent_per_job - self._per_job[job.id])
        if account_id is not None:
            free = min(free, self._settings.max_concurrent_per_account - self._per_account[account_id])
        return free

    async def _active_work(self) -> list[tuple[BatchJob, Workflow]]:
        """Active jobs with their workflows, read again once a poll interval (or after a `kick`): a slot
        freed by a finished item then costs one claim, not four Store reads. A job paused meanwhile is
        safe: the claim itself checks that the job is Active."""
        if self._work is None or time.monotonic() - self._work_read_at > self._settings.poll_seconds:
            work = []
            for job in await self._store.batch_jobs.active():
                workflow = await self._store.batch_workflows.get(job.account_id, job.workflow_id)
                if workflow is not None:
                    work.append((job, workflow))
            self._work, self._work_read_at = work, time.monotonic()
        return self._work

    async def _claim_round(self) -> int:
        claimed = 0
        for job, workflow in await self._active_work():
            if self._closing:
                break
            free = self._free(job, job.account_id)
            if free <= 0 or await self._accounts.active(job.account_id) is None:
                continue
            token = f"{self._token_prefix}:{next(self._claims)}"
            now = self._clock.now()
            items = await self._store.batch_items.claim(
                job.id, token, now=now, lease_until=now + self._lease(), limit=free,
                per_job=self._settings.max_concurrent_per_job, per_account=self._settings.max_concurrent_per_account)
            for item in items:
                self._start(job, workflow, item, token)
            claimed += len(items)
        return claimed

    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.lease_seconds)

    def _start(self, job: BatchJob, workflow: Workflow, item: BatchItem, token: str) -> None:
        self._held[item.id] = _Held(job.id, job.account_id, token)
        self._per_job[job.id] += 1
        self._per_account[job.account_id] += 1
        self._metrics.batch_running.inc()
        task = asyncio.create_task(self._run(job, workflow, item, token), name=f"batch-item:{item.id}")
        self._tasks[item.id] = task
        task.add_done_callback(lambda done: self._finished(item.id, done))

    def _finished(self, item_id: str, task: asyncio.Task[None]) -> None:
        held = self._held.pop(item_id)
        self._tasks.pop(item_id, None)
        self._per_job[held.job_id] -= 1
        self._per_account[held.account_id] -= 1
        self._metrics.batch_running.dec()
        if not task.cancelled() and task.exception() is not None:
            log.error("batch item %s failed", item_id, exc_info=task.exception())
        self._wake.set()

    async def _run(self, job: BatchJob, workflow: Workflow, item: BatchItem, token: str) -> None:
        started = time.perf_counter()
        try:
            result = await self._processor.process(job, workflow, item)
        except asyncio.CancelledError:
            with contextlib.suppress(StoreError):  # else its lease runs out and it is claimed again
                await asyncio.shield(self._store.batch_items.release(job.id, item.id, token))
            raise
        if not await self._record(job, item, token, result):
            return
        self._metrics.batch_items(result.state.value).inc()
        self._metrics.batch_item_seconds.observe(time.perf_counter() - started)
        await self._after(job, workflow, result)

    async def _record(self, job: BatchJob, item: BatchItem, token: str, result: ItemResult) -> bool:
        """Writes the result (compare-and-set on the claim, grouped with others ready at the same time);
        retried while the Store is away. False when the claim was lost (the lease ran out and another
        worker took the item: its result counts)."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                if await self._results.record(ResultWrite(job.id, item.id, token, result)):
                    return True
                log.warning("batch item %s: claim lost before its result was recorded", item.id)
                return False
            except StoreError as exc:
                if attempt == RECORD_ATTEMPTS:
                    log.warning("batch item %s: result not recorded (%s); it will run again", item.id, exc)
                    return False
                await asyncio.sleep(STORE_RETRY_SECONDS)
        return False

    async def _after(self, job: BatchJob, workflow: Workflow, result: ItemResult) -> None:
        """The job's log and state after one more result: error bursts, the error threshold (the end is
        checked by the ResultWriter, once per group of results)."""
        now = self._clock.now()
        if result.state is ItemState.EXECUTION_ERROR:
            self._errors_in_a_row[job.id] += 1
            if self._errors_in_a_row[job.id] == ERROR_BURST:
                reason = result.validation_result.reason if result.validation_result else ""
                await self._store.batch_jobs.add_event(job.id, JobEvent(
                    moment=now, event_type="ErrorBurst",
                    description=f"{ERROR_BURST} items in a row ended ExecutionError; the last: {reason}"[:1000]))
                self._errors_in_a_row[job.id] = 0
            if workflow.error_stop_threshold:
                counts = await self._store.batch_jobs.counts(job.id)
                if counts.execution_errors >= workflow.error_stop_threshold:
                    await self._store.batch_jobs.transition(
                        job.account_id, job.id, JobState.PAUSED, allowed_from=ONLY_ACTIVE, event=JobEvent(
                            moment=now, event_type="ErrorThreshold",
                            description=f"Paused: {counts.execution_errors} items ended ExecutionError "
                                        f"(errorStopThreshold {workflow.error_stop_threshold})."))
        else:
            self._errors_in_a_row.pop(job.id, None)

    async def _renew_loop(self) -> None:
        """Extends the leases of held items every third of a lease, grouped by job and claim."""
        while True:
            await asyncio.sleep(self._settings.lease_seconds / 3)
            groups: dict[tuple[str, str], list[str]] = {}
            for item_id, held in list(self._held.items()):
                groups.setdefault((held.job_id, held.token), []).append(item_id)
            until = self._clock.now() + self._lease()
            for (job_id, token), ids in groups.items():
                try:
                    await self._store.batch_items.extend(job_id, token, ids, until)
                except StoreError as exc:
                    log.warning("batch leases not renewed: %s", exc)
