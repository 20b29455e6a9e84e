"""Item results written in groups: one Store round trip for every result that is ready.

Items of a job tend to end together (they started together, and the upstream takes about as long for
each), and one write per item queues them behind each other on the Store: with 100 items in flight,
the last result of a burst waited for 99 writes, its slot idle all along. Here a result that arrives
while a write is under way waits for it and goes in the next one, with all the others that arrived
meanwhile; a result that arrives when nothing is being written goes at once (no added delay).

After each group, every job that had a result in it is checked once for the end (`finish_if_drained`),
instead of once per item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from botline.domain.batch import JobEvent, ResultWrite
from botline.domain.clock import Clock
from botline.store.base import Store, StoreError

log = logging.getLogger(__name__)


class ResultWriter:
    def __init__(self, store: Store, clock: Clock, on_finished: Callable[[str], None]) -> None:
        """`on_finished(job_id)` is told when a group's results finished a job."""
        self._store = store
        self._clock = clock
        self._on_finished = on_finished
        self._waiting: list[tuple[ResultWrite, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, write: ResultWrite) -> bool:
        """Whether the result was recorded (False: the claim was lost); StoreError when the write failed."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((write, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="batch-results")
        return await future

    async def close(self) -> None:
        """Waits for the group being written (the results it holds are recorded or refused)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    async def _write_all(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                written = await self._store.batch_items.record_many([write for write, _ in group])
            except StoreError as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), done in zip(group, written, strict=True):
                if not future.done():  # its item may have been cancelled meanwhile (shutdown)
                    future.set_result(done)
            jobs = dict.fromkeys(write.job_id for (write, _), done in zip(group, written, strict=True) if done)
            for job_id in jobs:
                await self._finish_if_drained(job_id)

    async def _finish_if_drained(self, job_id: str) -> None:
        event = JobEvent(moment=self._clock.now(), event_type="Finished", description="Every item was processed.")
        try:
            if await self._store.batch_jobs.finish_if_drained(job_id, event):
                self._on_finished(job_id)
        except StoreError as exc:  # the job's next result, import or resume checks again
            log.warning("batch job %s: end not checked: %s", job_id, exc)
