"""SQLite repositories of batch workflows, jobs and items (rules in store/batch.py).

One process owns an SQLite file, and every write below is one transaction on its one connection, so
a claim (select the next items, mark them held) cannot interleave with another.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from botline.domain.batch import (
    FAILED_STATES,
    BatchItem,
    BatchJob,
    ItemSelection,
    ItemState,
    JobCounts,
    JobEvent,
    JobState,
    ResultWrite,
    Workflow,
    WorkflowSettings,
)
from botline.store.batch import (
    EVENTS_KEPT,
    BatchItemRepository,
    BatchJobRepository,
    BatchWorkflowRepository,
    ItemEdit,
)
from botline.store.sqlite_base import _dump, _load_all, _Repo, json_set_fields, reachable_methods

CHUNK = 500
"""Ids per `IN (...)` list (SQLite allows 32,766 parameters)."""
_COUNT_FIELDS = {
    ItemState.FINISHED: "finished", ItemState.REFUSED: "refused", ItemState.EXECUTION_ERROR: "execution_errors",
    ItemState.VALIDATION_ERROR: "validation_errors", ItemState.CANCELLED: "cancelled",
}


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _delete_jobs(conn: sqlite3.Connection, job_ids: Sequence[str]) -> None:
    for start in range(0, len(job_ids), CHUNK):
        chunk = list(job_ids[start:start + CHUNK])
        marks = _placeholders(chunk)
        conn.execute(f"DELETE FROM batch_items WHERE job_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM batch_job_events WHERE job_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM batch_jobs WHERE id IN ({marks})", chunk)


def _add_event(conn: sqlite3.Connection, job_id: str, event: JobEvent) -> None:
    conn.execute("INSERT INTO batch_job_events (job_id, data) VALUES (?, ?)", (job_id, _dump(event)))
    conn.execute(
        "DELETE FROM batch_job_events WHERE job_id = ? AND id <= (SELECT id FROM batch_job_events WHERE job_id = ?"
        " ORDER BY id DESC LIMIT 1 OFFSET ?)", (job_id, job_id, EVENTS_KEPT),
    )


@reachable_methods
class SqliteBatchWorkflows(_Repo, BatchWorkflowRepository):
    async def create(self, workflow: Workflow) -> None:
        await self._write(
            "INSERT INTO batch_workflows (id, account_id, created_at, data) VALUES (?, ?, ?, ?)",
            (workflow.id, workflow.account_id, workflow.created_at.isoformat(), _dump(workflow)),
        )

    async def get(self, account_id: str, workflow_id: str) -> Workflow | None:
        return await self._one(
            Workflow, "SELECT data FROM batch_workflows WHERE id = ? AND account_id = ?", (workflow_id, account_id)
        )

    async def list_for_account(self, account_id: str) -> list[tuple[Workflow, int]]:
        rows = await self._rows(
            "SELECT w.data, (SELECT count(*) FROM batch_jobs j WHERE j.workflow_id = w.id) FROM batch_workflows w"
            " WHERE w.account_id = ? ORDER BY w.created_at, w.id", (account_id,),
        )
        return [(Workflow.model_validate_json(row[0]), int(row[1])) for row in rows]

    async def change(
        self, account_id: str, workflow_id: str, settings: WorkflowSettings, updated_at: datetime
    ) -> Workflow | None:
        fields = {**settings.wire(), "updatedAt": updated_at.isoformat()}
        expression, params = json_set_fields(fields)
        sql = f"UPDATE batch_workflows SET data = {expression} WHERE id = ? AND account_id = ? RETURNING data"
        row = await self._run(lambda conn: conn.execute(sql, (*params, workflow_id, account_id)).fetchone())
        return None if row is None else Workflow.model_validate_json(row[0])

    async def delete(self, account_id: str, workflow_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            jobs = [row[0] for row in conn.execute(
                "SELECT id FROM batch_jobs WHERE workflow_id = ? AND account_id = ?", (workflow_id, account_id))]
            _delete_jobs(conn, jobs)
            return conn.execute(
                "DELETE FROM batch_workflows WHERE id = ? AND account_id = ?", (workflow_id, account_id)).rowcount > 0

        return await self._run(work)


@reachable_methods
class SqliteBatchJobs(_Repo, BatchJobRepository):
    async def create(self, job: BatchJob, event: JobEvent) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO batch_jobs (id, account_id, workflow_id, state, created_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (job.id, job.account_id, job.workflow_id, job.state.value, job.created_at.isoformat(), _dump(job)),
            )
            _add_event(conn, job.id, event)

        await self._run(work)

    async def get(self, account_id: str, job_id: str) -> BatchJob | None:
        return await self._one(
            BatchJob, "SELECT data FROM batch_jobs WHERE id = ? AND account_id = ?", (job_id, account_id)
        )

    async def list_for_account(self, account_id: str, workflow_id: str | None = None) -> list[BatchJob]:
        if workflow_id is None:
            return await self._all(
                BatchJob, "SELECT data FROM batch_jobs WHERE account_id = ? ORDER BY created_at, id", (account_id,)
            )
        return await self._all(
            BatchJob, "SELECT data FROM batch_jobs WHERE account_id = ? AND workflow_id = ? ORDER BY created_at, id",
            (account_id, workflow_id),
        )

    async def events(self, job_id: str) -> list[JobEvent]:
        return await self._all(JobEvent, "SELECT data FROM batch_job_events WHERE job_id = ? ORDER BY id", (job_id,))

    async def add_event(self, job_id: str, event: JobEvent) -> None:
        await self._run(lambda conn: _add_event(conn, job_id, event))

    async def set_title(self, account_id: str, job_id: str, title: str | None) -> bool:
        return await self._write(
            "UPDATE batch_jobs SET data = json_set(data, '$.title', ?) WHERE id = ? AND account_id = ?",
            (title, job_id, account_id),
        ) > 0

    async def transition(
        self, account_id: str, job_id: str, to: JobState, *, allowed_from: frozenset[JobState], event: JobEvent,
        restarted_at: datetime | None = None,
    ) -> BatchJob | None:
        fields: dict[str, object] = {"state": to.value}
        if restarted_at is not None:
            fields["restartedAt"] = restarted_at.isoformat()
        expression, params = json_set_fields(fields)
        allowed = [state.value for state in allowed_from]
        sql = (f"UPDATE batch_jobs SET state = ?, data = {expression} WHERE id = ? AND account_id = ?"
               f" AND state IN ({_placeholders(allowed)}) RETURNING data")

        def work(conn: sqlite3.Connection) -> BatchJob | None:
            row = conn.execute(sql, (to.value, *params, job_id, account_id, *allowed)).fetchone()
            if row is None:
                return None
            _add_event(conn, job_id, event)
            return BatchJob.model_validate_json(row[0])

        return await self._run(work)

    async def finish_if_drained(self, job_id: str, event: JobEvent) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            left = conn.execute(
                "SELECT 1 FROM batch_items WHERE job_id = ? AND state = ? LIMIT 1", (job_id, ItemState.PENDING.value)
            ).fetchone()
            if left is not None:
                return False
            changed = conn.execute(
                "UPDATE batch_jobs SET state = ?, data = json_set(data, '$.state', ?) WHERE id = ? AND state = ?",
                (JobState.FINISHED.value, JobState.FINISHED.value, job_id, JobState.ACTIVE.value),
            ).rowcount
            if changed:
                _add_event(conn, job_id, event)
            return changed > 0

        return await self._run(work)

    async def delete(self, account_id: str, job_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM batch_jobs WHERE id = ? AND account_id = ?",
                            (job_id, account_id)).fetchone() is None:
                return False
            _delete_jobs(conn, [job_id])
            return True

        return await self._run(work)

    async def active(self) -> list[BatchJob]:
        return await self._all(
            BatchJob, "SELECT data FROM batch_jobs WHERE state = ? ORDER BY created_at, id", (JobState.ACTIVE.value,)
        )

    async def counts(self, job_id: str) -> JobCounts:
        rows = await self._rows(
            "SELECT state, count(*), count(claim_token), total(cost), total(confidence), count(confidence)"
            " FROM batch_items WHERE job_id = ? GROUP BY state", (job_id,),
        )
        counts: dict[str, int] = {"confidence_count": 0}
        cost_sum = confidence_sum = 0.0
        for state, count, held, cost, confidence, confident in rows:
            item_state = ItemState(state)
            if item_state is ItemState.PENDING:
                counts["pending"], counts["running"] = int(count), int(held)
            else:
                counts[_COUNT_FIELDS[item_state]] = int(count)
            cost_sum += float(cost)
            confidence_sum += float(confidence)
            counts["confidence_count"] += int(confident)
        return JobCounts(**counts, total_cost=cost_sum, confidence_sum=confidence_sum)


def _with_running(rows: Sequence[sqlite3.Row]) -> list[tuple[BatchItem, bool]]:
    items = _load_all(BatchItem, rows)
    return [(item, row[1] is not None) for item, row in zip(items, rows, strict=True)]


@reachable_methods
class SqliteBatchItems(_Repo, BatchItemRepository):
    async def add(self, account_id: str, job_id: str, inputs: Sequence[str], inserted_at: datetime) -> int:
        def work(conn: sqlite3.Connection) -> int:
            if conn.execute("SELECT 1 FROM batch_jobs WHERE id = ? AND account_id = ?",
                            (job_id, account_id)).fetchone() is None:
                return 0
            last = conn.execute("SELECT coalesce(max(sequence), 0) FROM batch_items WHERE job_id = ?",
                                (job_id,)).fetchone()[0]
            rows = []
            for offset, text in enumerate(inputs, start=1):
                item = BatchItem(account_id=account_id, parentBatchWorkflowJobId=job_id, sequence=last + offset,
                                 inserted_at=inserted_at, input=text)
                rows.append((item.id, job_id, account_id, item.sequence, 0, ItemState.PENDING.value, _dump(item)))
            conn.executemany(
                "INSERT INTO batch_items (id, job_id, account_id, sequence, priority, state, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", rows,
            )
            return len(rows)

        return await self._run(work)

    async def get(self, account_id: str, job_id: str, item_id: str) -> tuple[BatchItem, bool] | None:
        rows = await self._rows(
            "SELECT data, claim_token FROM batch_items WHERE id = ? AND job_id = ? AND account_id = ?",
            (item_id, job_id, account_id),
        )
        return _with_running(rows)[0] if rows else None

    async def list_for_job(
        self, account_id: str, job_id: str, *, state: ItemState | None = None, offset: int = 0, limit: int = 100,
    ) -> list[tuple[BatchItem, bool]]:
        where, params = "job_id = ? AND account_id = ?", [job_id, account_id]
        if state is not None:
            where += " AND state = ?"
            params.append(state.value)
        rows = await self._rows(
            f"SELECT data, claim_token FROM batch_items WHERE {where} ORDER BY sequence LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return _with_running(rows)

    async def page(self, job_id: str, after_sequence: int, limit: int) -> list[BatchItem]:
        return await self._all(
            BatchItem, "SELECT data FROM batch_items WHERE job_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
            (job_id, after_sequence, limit),
        )

    async def latest(self, job_id: str, limit: int) -> list[BatchItem]:
        return await self._all(
            BatchItem, "SELECT data FROM batch_items WHERE job_id = ? AND processed_ts IS NOT NULL"
            " ORDER BY processed_ts DESC, sequence DESC LIMIT ?", (job_id, limit),
        )

    async def set_priority(self, account_id: str, job_id: str, item_id: str, priority: int) -> BatchItem | None:
        row = await self._run(lambda conn: conn.execute(
            "UPDATE batch_items SET priority = ?, data = json_set(data, '$.priority', ?)"
            " WHERE id = ? AND job_id = ? AND account_id = ? RETURNING data",
            (priority, priority, item_id, job_id, account_id)).fetchone())
        return None if row is None else BatchItem.model_validate_json(row[0])

    def _edit_outcome(self, conn: sqlite3.Connection, account_id: str, job_id: str, item_id: str) -> ItemEdit | None:
        """Why an edit of a pending, unheld item did not apply (None: it is one)."""
        row = conn.execute("SELECT state, claim_token FROM batch_items WHERE id = ? AND job_id = ? AND account_id = ?",
                           (item_id, job_id, account_id)).fetchone()
        if row is None:
            return ItemEdit.MISSING
        if row[1] is not None:
            return ItemEdit.RUNNING
        return None if row[0] == ItemState.PENDING.value else ItemEdit.NOT_PENDING

    async def cancel(self, account_id: str, job_id: str, item_id: str, at: datetime) -> ItemEdit:
        def work(conn: sqlite3.Connection) -> ItemEdit:
            refused = self._edit_outcome(conn, account_id, job_id, item_id)
            if refused is not None:
                return refused
            _cancel(conn, [item_id], at)
            return ItemEdit.DONE

        return await self._run(work)

    async def delete(self, account_id: str, job_id: str, item_id: str) -> ItemEdit:
        def work(conn: sqlite3.Connection) -> ItemEdit:
            refused = self._edit_outcome(conn, account_id, job_id, item_id)
            if refused in (ItemEdit.MISSING, ItemEdit.RUNNING):
                return refused
            conn.execute("DELETE FROM batch_items WHERE id = ?", (item_id,))
            return ItemEdit.DONE

        return await self._run(work)

    async def delete_many(self, account_id: str, job_id: str, which: ItemSelection) -> int:
        states = [state.value for state in which.states()]
        return await self._write(
            f"DELETE FROM batch_items WHERE job_id = ? AND account_id = ? AND claim_token IS NULL"
            f" AND state IN ({_placeholders(states)})", (job_id, account_id, *states),
        )

    async def retry_failed(self, account_id: str, job_id: str) -> int:
        failed = [state.value for state in FAILED_STATES]
        cleared, params = json_set_fields({"state": ItemState.PENDING.value, "output": None, "validationResult": None,
                                           "confidence": None, "processedAt": None})
        return await self._write(
            f"UPDATE batch_items SET state = ?, confidence = NULL, processed_ts = NULL, data = {cleared}"
            f" WHERE job_id = ? AND account_id = ? AND state IN ({_placeholders(failed)})",
            (ItemState.PENDING.value, *params, job_id, account_id, *failed),
        )

    async def cancel_pending(self, job_id: str, at: datetime) -> int:
        def work(conn: sqlite3.Connection) -> int:
            ids = [row[0] for row in conn.execute(
                "SELECT id FROM batch_items WHERE job_id = ? AND state = ? AND claim_token IS NULL",
                (job_id, ItemState.PENDING.value))]
            for start in range(0, len(ids), CHUNK):
                _cancel(conn, ids[start:start + CHUNK], at)
            return len(ids)

        return await self._run(work)

    async def claim(
        self, job_id: str, token: str, *, now: datetime, lease_until: datetime, limit: int,
        per_job: int | None = None, per_account: int | None = None,
    ) -> list[BatchItem]:
        def work(conn: sqlite3.Connection) -> list[BatchItem]:
            job = conn.execute("SELECT account_id FROM batch_jobs WHERE id = ? AND state = ?",
                               (job_id, JobState.ACTIVE.value)).fetchone()
            if job is None:
                return []
            room = limit
            if per_job is not None:
                room = min(room, per_job - _held(conn, job[0], now, job_id))
            if per_account is not None:
                room = min(room, per_account - _held(conn, job[0], now))
            if room <= 0:
                return []
            rows = conn.execute(
                "SELECT id, data FROM batch_items WHERE job_id = ? AND state = ?"
                " AND (claim_token IS NULL OR lease_until <= ?) ORDER BY priority DESC, sequence LIMIT ?",
                (job_id, ItemState.PENDING.value, now.timestamp(), room),
            ).fetchall()
            ids = [row[0] for row in rows]
            if ids:
                conn.execute(
                    f"UPDATE batch_items SET claim_token = ?, lease_until = ? WHERE id IN ({_placeholders(ids)})",
                    (token, lease_until.timestamp(), *ids))
            return [BatchItem.model_validate_json(row[1]) for row in rows]

        return await self._run(work)

    async def extend(self, job_id: str, token: str, item_ids: Sequence[str], lease_until: datetime) -> int:
        if not item_ids:
            return 0
        ids = list(item_ids)
        return await self._write(
            "UPDATE batch_items SET lease_until = ? WHERE job_id = ? AND claim_token = ?"
            f" AND id IN ({_placeholders(ids)})",
            (lease_until.timestamp(), job_id, token, *ids),
        )

    async def record_many(self, writes: Sequence[ResultWrite]) -> list[bool]:
        if not writes:
            return []
        statements = [_record_statement(write) for write in writes]
        return await self._run(lambda conn: [conn.execute(sql, params).rowcount > 0 for sql, params in statements])

    async def release(self, job_id: str, item_id: str, token: str) -> bool:
        return await self._write(
            "UPDATE batch_items SET claim_token = NULL, lease_until = NULL"
            " WHERE id = ? AND job_id = ? AND claim_token = ?",
            (item_id, job_id, token),
        ) > 0


def _record_statement(write: ResultWrite) -> tuple[str, tuple[object, ...]]:
    result = write.result
    expression, params = json_set_fields(result.fields())
    sql = (f"UPDATE batch_items SET state = ?, claim_token = NULL, lease_until = NULL, cost = cost + ?,"
           f" confidence = ?, processed_ts = ?, data = json_set({expression}, '$.totalCost', cost + ?)"
           f" WHERE id = ? AND job_id = ? AND claim_token = ?")
    return sql, (result.state.value, result.cost, result.confidence, result.processed_at.timestamp(), *params,
                 result.cost, write.item_id, write.job_id, write.token)


def _held(conn: sqlite3.Connection, account_id: str, now: datetime, job_id: str | None = None) -> int:
    """Items under a live lease in the account (or one of its jobs): the partial index `batch_items_held`
    holds only claimed items, so this reads what runs, not the job's size."""
    sql = "SELECT count(*) FROM batch_items WHERE account_id = ? AND claim_token IS NOT NULL AND lease_until > ?"
    params: tuple[object, ...] = (account_id, now.timestamp())
    if job_id is not None:
        sql += " AND job_id = ?"
        params += (job_id,)
    return int(conn.execute(sql, params).fetchone()[0])


def _cancel(conn: sqlite3.Connection, ids: Sequence[str], at: datetime) -> None:
    fields = {"state": ItemState.CANCELLED.value, "processedAt": at.isoformat()}
    expression, params = json_set_fields(fields)
    conn.execute(
        f"UPDATE batch_items SET state = ?, processed_ts = ?, data = {expression} WHERE id IN ({_placeholders(ids)})",
        (ItemState.CANCELLED.value, at.timestamp(), *params, *ids),
    )

