"""The Store's batch repositories: workflows, jobs (with their event log) and items, whose pending
ones form a durable claim queue shared by every replica.

Queue rules every backend keeps (tests/store/test_batch_contract.py):
- `claim` takes up to `limit` items of an Active job, highest priority first, then in import order,
  each for exactly one caller: a pending item nobody holds, or one whose lease ran out (its holder
  died). A Paused or Finished job gives nothing. With `per_job` / `per_account`, it takes no more
  than leaves that many items under a live lease in the job / the job's account, counted across
  every caller (every replica) in the same atomic step.
- `record` writes a result only while the caller's claim token still holds the item (compare-and-set),
  so a result is recorded once even when a lease ran out and another worker took the item;
  `record_many` does so for several items in one round trip.
- `extend` renews leases still held; `release` hands an item back unprocessed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from botline.domain.batch import (
    BatchItem,
    BatchJob,
    ItemResult,
    ItemSelection,
    ItemState,
    JobCounts,
    JobEvent,
    JobState,
    ResultWrite,
    Workflow,
    WorkflowSettings,
)

EVENTS_KEPT = 1000
"""A job's event log keeps its newest this many entries."""


class ItemEdit(StrEnum):
    """What an edit of one item found."""

    DONE = "done"
    RUNNING = "running"
    """A worker holds it: it cannot be cancelled or deleted until its result is recorded."""
    NOT_PENDING = "not-pending"
    MISSING = "missing"


class BatchWorkflowRepository(ABC):
    @abstractmethod
    async def create(self, workflow: Workflow) -> None: ...

    @abstractmethod
    async def get(self, account_id: str, workflow_id: str) -> Workflow | None: ...

    @abstractmethod
    async def list_for_account(self, account_id: str) -> list[tuple[Workflow, int]]:
        """The account's workflows, oldest first, each with how many jobs it has."""

    @abstractmethod
    async def change(
        self, account_id: str, workflow_id: str, settings: WorkflowSettings, updated_at: datetime
    ) -> Workflow | None:
        """Sets every settings field (and updatedAt) in place; None when unknown."""

    @abstractmethod
    async def delete(self, account_id: str, workflow_id: str) -> bool:
        """Deletes the workflow with its jobs and their items."""


class BatchJobRepository(ABC):
    @abstractmethod
    async def create(self, job: BatchJob, event: JobEvent) -> None:
        """Stores the job with `event` as the first entry of its log."""

    @abstractmethod
    async def get(self, account_id: str, job_id: str) -> BatchJob | None: ...

    @abstractmethod
    async def list_for_account(self, account_id: str, workflow_id: str | None = None) -> list[BatchJob]:
        """The account's jobs (of one workflow, or all), oldest first."""

    @abstractmethod
    async def events(self, job_id: str) -> list[JobEvent]:
        """The job's log, oldest first (the newest EVENTS_KEPT)."""

    @abstractmethod
    async def add_event(self, job_id: str, event: JobEvent) -> None: ...

    @abstractmethod
    async def set_title(self, account_id: str, job_id: str, title: str | None) -> bool: ...

    @abstractmethod
    async def transition(
        self, account_id: str, job_id: str, to: JobState, *, allowed_from: frozenset[JobState], event: JobEvent,
        restarted_at: datetime | None = None,
    ) -> BatchJob | None:
        """Compare-and-set of the state: moves to `to` (setting restartedAt when given) and logs `event`
        only from a state in `allowed_from`; the job as stored afterwards, or None (nothing written)."""

    @abstractmethod
    async def finish_if_drained(self, job_id: str, event: JobEvent) -> bool:
        """Active -> Finished (logging `event`) when no item is pending or running, checked and written at once."""

    @abstractmethod
    async def delete(self, account_id: str, job_id: str) -> bool:
        """Deletes the job and its items."""

    @abstractmethod
    async def active(self) -> list[BatchJob]:
        """Every Active job of every account, oldest first (what workers claim from)."""

    @abstractmethod
    async def counts(self, job_id: str) -> JobCounts: ...


class BatchItemRepository(ABC):
    @abstractmethod
    async def add(self, account_id: str, job_id: str, inputs: Sequence[str], inserted_at: datetime) -> int:
        """Appends one Pending item (priority 0) per input, in order; how many (0 when the job is gone)."""

    @abstractmethod
    async def get(self, account_id: str, job_id: str, item_id: str) -> tuple[BatchItem, bool] | None:
        """The item and whether a worker holds it."""

    @abstractmethod
    async def list_for_job(
        self, account_id: str, job_id: str, *, state: ItemState | None = None, offset: int = 0, limit: int = 100,
    ) -> list[tuple[BatchItem, bool]]:
        """Items in import order (of one state, or all), each with whether a worker holds it."""

    @abstractmethod
    async def page(self, job_id: str, after_sequence: int, limit: int) -> list[BatchItem]:
        """Up to `limit` items whose sequence is above `after_sequence`, in import order (export)."""

    @abstractmethod
    async def latest(self, job_id: str, limit: int) -> list[BatchItem]:
        """The most recently processed items, newest first."""

    @abstractmethod
    async def set_priority(self, account_id: str, job_id: str, item_id: str, priority: int) -> BatchItem | None: ...

    @abstractmethod
    async def cancel(self, account_id: str, job_id: str, item_id: str, at: datetime) -> ItemEdit:
        """A pending item nobody holds becomes Cancelled."""

    @abstractmethod
    async def delete(self, account_id: str, job_id: str, item_id: str) -> ItemEdit: ...

    @abstractmethod
    async def delete_many(self, account_id: str, job_id: str, which: ItemSelection) -> int:
        """Deletes the selected items nobody holds; how many."""

    @abstractmethod
    async def retry_failed(self, account_id: str, job_id: str) -> int:
        """Refused, ExecutionError and ValidationError items back to Pending (output, validation result,
        confidence and processedAt cleared; totalCost kept); how many."""

    @abstractmethod
    async def cancel_pending(self, job_id: str, at: datetime) -> int:
        """Every pending item nobody holds becomes Cancelled; how many."""

    @abstractmethod
    async def claim(
        self, job_id: str, token: str, *, now: datetime, lease_until: datetime, limit: int,
        per_job: int | None = None, per_account: int | None = None,
    ) -> list[BatchItem]:
        """See the module docstring."""

    @abstractmethod
    async def extend(self, job_id: str, token: str, item_ids: Sequence[str], lease_until: datetime) -> int:
        """Renews the leases `token` still holds; how many."""

    async def record(self, job_id: str, item_id: str, token: str, result: ItemResult) -> bool:
        """Writes `result` if `token` still holds the item, and frees it; False (nothing written) otherwise."""
        return (await self.record_many([ResultWrite(job_id, item_id, token, result)]))[0]

    @abstractmethod
    async def record_many(self, writes: Sequence[ResultWrite]) -> list[bool]:
        """`record` for each write, in one round trip (one SQLite transaction; one Redis pipeline, each
        write atomic on its own); whether each was written, in order."""

    @abstractmethod
    async def release(self, job_id: str, item_id: str, token: str) -> bool:
        """Frees the item unprocessed (Pending, claimable at once) if `token` still holds it."""
