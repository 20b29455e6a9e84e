"""The batch part of the Store contract: workflows, jobs, items and the claim queue, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from botline.domain.batch import (
    BatchJob,
    ItemResult,
    ItemSelection,
    ItemState,
    JobEvent,
    JobState,
    ResultWrite,
    ValidationResult,
    Workflow,
    WorkflowOptions,
    WorkflowSettings,
)
from botline.store import Store
from botline.store.batch import ItemEdit

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALICE, BOB = "account-alice", "account-bob"
SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
LEASE = timedelta(seconds=30)
EVERY = frozenset(JobState)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def workflow(account_id: str = ALICE, title: str = "Tickets", created_at: datetime = T0) -> Workflow:
    return Workflow(account_id=account_id, title=title, model_name="support",
                    options=WorkflowOptions(instruction="Classify.", result_schema=SCHEMA), created_at=created_at)


def event(kind: str = "Created") -> JobEvent:
    return JobEvent(moment=T0, event_type=kind, description=kind.lower())


async def new_job(store: Store, inputs: list[str], account_id: str = ALICE) -> BatchJob:
    flow = workflow(account_id)
    await store.batch_workflows.create(flow)
    job = BatchJob(account_id=account_id, workflow_id=flow.id, created_at=T0)
    await store.batch_jobs.create(job, event())
    assert await store.batch_items.add(account_id, job.id, inputs, T0) == len(inputs)
    return job


def done(state: ItemState = ItemState.FINISHED, *, cost: float = 0.5, confidence: float | None = 0.8) -> ItemResult:
    return ItemResult(state=state, processed_at=at(1), output='{"label": "x"}', cost=cost, confidence=confidence,
                      validation_result=None if state is ItemState.FINISHED else ValidationResult(passed=False,
                                                                                                  reason="bad"))


async def claim(store: Store, job: BatchJob, token: str, limit: int = 10, now: float = 0, **caps: int) -> list[str]:
    items = await store.batch_items.claim(job.id, token, now=at(now), lease_until=at(now) + LEASE, limit=limit,
                                          **caps)
    return [item.input for item in items]


async def item_id(store: Store, job: BatchJob, text: str) -> str:
    return next(item.id for item, _ in await store.batch_items.list_for_job(job.account_id, job.id)
                if item.input == text)


class TestWorkflows:
    async def test_create_list_with_job_counts_change_and_isolation(self, store: Store) -> None:
        flow = workflow()
        await store.batch_workflows.create(flow)
        await store.batch_workflows.create(workflow(BOB))
        await store.batch_jobs.create(BatchJob(account_id=ALICE, workflow_id=flow.id), event())
        [(listed, jobs)] = await store.batch_workflows.list_for_account(ALICE)
        assert (listed.id, jobs) == (flow.id, 1)
        assert await store.batch_workflows.get(BOB, flow.id) is None
        settings = WorkflowSettings.model_validate({**flow.settings(), "title": "Renamed", "maxRetries": 5})
        changed = await store.batch_workflows.change(ALICE, flow.id, settings, at(60))
        assert changed is not None
        assert (changed.title, changed.max_retries, changed.updated_at) == ("Renamed", 5, at(60))
        assert await store.batch_workflows.change(BOB, flow.id, settings, at(60)) is None

    async def test_deleting_a_workflow_deletes_its_jobs_and_items(self, store: Store) -> None:
        job = await new_job(store, ["a", "b"])
        assert not await store.batch_workflows.delete(BOB, job.workflow_id)
        assert await store.batch_workflows.delete(ALICE, job.workflow_id)
        assert await store.batch_jobs.get(ALICE, job.id) is None
        assert await store.batch_items.list_for_job(ALICE, job.id) == []
        assert await store.batch_jobs.list_for_account(ALICE) == []


class TestJobs:
    async def test_transitions_are_compare_and_set_and_logged(self, store: Store) -> None:
        job = await new_job(store, ["a"])
        paused = await store.batch_jobs.transition(ALICE, job.id, JobState.PAUSED,
                                                   allowed_from=frozenset({JobState.ACTIVE}), event=event("Paused"))
        assert paused is not None and paused.state is JobState.PAUSED
        assert await store.batch_jobs.active() == []
        again = await store.batch_jobs.transition(ALICE, job.id, JobState.PAUSED,
                                                  allowed_from=frozenset({JobState.ACTIVE}), event=event("Paused"))
        assert again is None
        resumed = await store.batch_jobs.transition(ALICE, job.id, JobState.ACTIVE, allowed_from=EVERY,
                                                    event=event("Resumed"), restarted_at=at(5))
        assert resumed is not None and resumed.restarted_at == at(5)
        assert [j.id for j in await store.batch_jobs.active()] == [job.id]
        assert [e.event_type for e in await store.batch_jobs.events(job.id)] == ["Created", "Paused", "Resumed"]
        assert await store.batch_jobs.transition(BOB, job.id, JobState.PAUSED, allowed_from=EVERY,
                                                 event=event()) is None

    async def test_a_job_finishes_only_once_nothing_is_pending_or_running(self, store: Store) -> None:
        job = await new_job(store, ["a"])
        assert not await store.batch_jobs.finish_if_drained(job.id, event("Finished"))
        [item] = await store.batch_items.claim(job.id, "t1", now=T0, lease_until=T0 + LEASE, limit=1)
        assert not await store.batch_jobs.finish_if_drained(job.id, event("Finished"))
        assert await store.batch_items.record(job.id, item.id, "t1", done())
        assert await store.batch_jobs.finish_if_drained(job.id, event("Finished"))
        stored = await store.batch_jobs.get(ALICE, job.id)
        assert stored is not None and stored.state is JobState.FINISHED

    async def test_counts_cover_every_state_cost_and_confidence(self, store: Store) -> None:
        job = await new_job(store, ["a", "b", "c", "d", "e"])
        items = await store.batch_items.claim(job.id, "t", now=T0, lease_until=T0 + LEASE, limit=3)
        await store.batch_items.record(job.id, items[0].id, "t", done(cost=0.25, confidence=0.5))
        await store.batch_items.record(job.id, items[1].id, "t", done(ItemState.REFUSED, cost=0.5, confidence=None))
        pending = await store.batch_items.list_for_job(ALICE, job.id, state=ItemState.PENDING)
        assert await store.batch_items.cancel(ALICE, job.id, pending[-1][0].id, at(2)) is ItemEdit.DONE
        counts = await store.batch_jobs.counts(job.id)
        assert (counts.pending, counts.running, counts.finished, counts.refused, counts.cancelled) == (2, 1, 1, 1, 1)
        assert counts.total_cost == 0.75 and counts.confidence_count == 1 and counts.confidence_sum == 0.5
        assert counts.total == 5

    async def test_the_event_log_is_kept_per_job(self, store: Store) -> None:
        job = await new_job(store, [])
        await store.batch_jobs.add_event(job.id, event("ErrorBurst"))
        assert [e.event_type for e in await store.batch_jobs.events(job.id)] == ["Created", "ErrorBurst"]
        assert await store.batch_jobs.set_title(ALICE, job.id, "Q4 tickets")
        assert not await store.batch_jobs.set_title(BOB, job.id, "theirs")
        stored = await store.batch_jobs.get(ALICE, job.id)
        assert stored is not None and stored.title == "Q4 tickets"


class TestQueue:
    async def test_claims_follow_priority_then_import_order_and_take_each_item_once(self, store: Store) -> None:
        job = await new_job(store, ["a", "b", "c", "d"])
        [(c, _)] = [pair for pair in await store.batch_items.list_for_job(ALICE, job.id) if pair[0].input == "c"]
        await store.batch_items.set_priority(ALICE, job.id, c.id, 5)
        assert await claim(store, job, "w1", limit=2) == ["c", "a"]
        assert await claim(store, job, "w2", limit=5) == ["b", "d"]
        assert await claim(store, job, "w3") == []

    async def test_concurrent_claims_never_share_an_item(self, store: Store) -> None:
        job = await new_job(store, [f"input {n}" for n in range(60)])
        batches = await asyncio.gather(*(claim(store, job, f"w{n}", limit=7) for n in range(12)))
        taken = [text for batch in batches for text in batch]
        assert sorted(taken) == sorted(f"input {n}" for n in range(60))

    async def test_caps_count_the_live_leases_of_the_job_and_the_account_whoever_holds_them(
        self, store: Store
    ) -> None:
        first, second = await new_job(store, ["a", "b", "c", "d"]), await new_job(store, ["e", "f", "g"])
        bobs = await new_job(store, ["x", "y"], account_id=BOB)
        caps = {"per_job": 2, "per_account": 3}
        assert await claim(store, first, "w1", **caps) == ["a", "b"]
        assert await claim(store, first, "w2", **caps) == []  # the job's two run (under another claimer)
        assert await claim(store, second, "w2", **caps) == ["e"]  # the account's third
        assert await claim(store, bobs, "w3", **caps) == ["x", "y"]  # another account counts apart
        assert await store.batch_items.record(first.id, await item_id(store, first, "a"), "w1", done())
        assert await claim(store, second, "w2", **caps) == ["f"]
        assert await store.batch_items.release(first.id, await item_id(store, first, "b"), "w1")
        assert await claim(store, first, "w4", **caps) == ["b"]
        ids = [await item_id(store, second, text) for text in ("e", "f")]
        assert await store.batch_items.extend(second.id, "w2", ids, at(90)) == 2
        # at 31 s, b's lease ran out (it no longer counts, and is claimed again); e and f were renewed
        assert await claim(store, first, "w5", now=31, **caps) == ["b"]
        assert await claim(store, second, "w5", now=31, **caps) == []
        assert await claim(store, first, "w5", now=31, limit=1) == ["c"]  # no caps given: none apply

    async def test_a_paused_or_finished_job_gives_nothing(self, store: Store) -> None:
        job = await new_job(store, ["a"])
        await store.batch_jobs.transition(ALICE, job.id, JobState.PAUSED, allowed_from=EVERY, event=event())
        assert await claim(store, job, "w") == []
        await store.batch_jobs.transition(ALICE, job.id, JobState.ACTIVE, allowed_from=EVERY, event=event())
        assert await claim(store, job, "w") == ["a"]

    async def test_an_expired_lease_is_claimed_again_and_the_first_holder_cannot_record(self, store: Store) -> None:
        job = await new_job(store, ["a"])
        [item] = await store.batch_items.claim(job.id, "dead", now=T0, lease_until=at(30), limit=1)
        assert await claim(store, job, "alive", now=29) == []
        assert await claim(store, job, "alive", now=31) == ["a"]
        assert not await store.batch_items.record(job.id, item.id, "dead", done())
        assert await store.batch_items.record(job.id, item.id, "alive", done())
        assert not await store.batch_items.record(job.id, item.id, "alive", done())
        stored = await store.batch_items.get(ALICE, job.id, item.id)
        assert stored is not None and stored[0].state is ItemState.FINISHED and not stored[1]
        assert (await store.batch_jobs.counts(job.id)).finished == 1

    async def test_extend_keeps_a_lease_and_release_hands_the_item_back(self, store: Store) -> None:
        job = await new_job(store, ["a"])
        [item] = await store.batch_items.claim(job.id, "w", now=T0, lease_until=at(30), limit=1)
        assert await store.batch_items.extend(job.id, "w", [item.id], at(90)) == 1
        assert await store.batch_items.extend(job.id, "other", [item.id], at(900)) == 0
        assert await claim(store, job, "x", now=60) == []
        assert await store.batch_items.release(job.id, item.id, "w")
        assert await claim(store, job, "x", now=60) == ["a"]

    async def test_record_many_writes_each_result_whose_claim_still_holds(self, store: Store) -> None:
        job = await new_job(store, ["a", "b", "c"])
        a, b, c = await store.batch_items.claim(job.id, "w", now=T0, lease_until=at(30), limit=3)
        writes = [ResultWrite(job.id, a.id, "w", done()), ResultWrite(job.id, b.id, "stale", done()),
                  ResultWrite(job.id, c.id, "w", done(ItemState.REFUSED, cost=0.25))]
        assert await store.batch_items.record_many(writes) == [True, False, True]
        assert await store.batch_items.record_many([]) == []
        counts = await store.batch_jobs.counts(job.id)
        assert (counts.finished, counts.refused, counts.running, counts.total_cost) == (1, 1, 1, 0.75)
        stored = await store.batch_items.get(ALICE, job.id, b.id)
        assert stored is not None and stored[0].state is ItemState.PENDING and stored[1]

    async def test_a_recorded_result_is_stored_on_the_item(self, store: Store) -> None:
        job = await new_job(store, ["a"])
        [item] = await store.batch_items.claim(job.id, "w", now=T0, lease_until=at(30), limit=1)
        await store.batch_items.record(job.id, item.id, "w", done(ItemState.VALIDATION_ERROR, cost=0.1))
        found = await store.batch_items.get(ALICE, job.id, item.id)
        assert found is not None
        stored = found[0]
        assert stored.state is ItemState.VALIDATION_ERROR and stored.output == '{"label": "x"}'
        assert stored.validation_result == ValidationResult(passed=False, reason="bad")
        assert stored.processed_at == at(1) and stored.total_cost == 0.1 and stored.confidence == 0.8
        assert [i.id for i in await store.batch_items.latest(job.id, 5)] == [item.id]


class TestItems:
    async def test_listing_paging_state_filter_and_export_pages(self, store: Store) -> None:
        job = await new_job(store, [f"n{n}" for n in range(7)])
        page = await store.batch_items.list_for_job(ALICE, job.id, offset=2, limit=3)
        assert [item.input for item, _ in page] == ["n2", "n3", "n4"]
        assert await store.batch_items.list_for_job(BOB, job.id) == []
        [first] = await store.batch_items.claim(job.id, "w", now=T0, lease_until=at(30), limit=1)
        await store.batch_items.record(job.id, first.id, "w", done())
        finished = await store.batch_items.list_for_job(ALICE, job.id, state=ItemState.FINISHED)
        assert [item.input for item, _ in finished] == ["n0"]
        pending = await store.batch_items.list_for_job(ALICE, job.id, state=ItemState.PENDING, offset=1, limit=2)
        assert [item.input for item, _ in pending] == ["n2", "n3"]
        exported = await store.batch_items.page(job.id, 0, 4)
        exported += await store.batch_items.page(job.id, exported[-1].sequence, 4)
        assert [item.input for item in exported] == [f"n{n}" for n in range(7)]

    async def test_running_items_cannot_be_cancelled_or_deleted(self, store: Store) -> None:
        job = await new_job(store, ["a", "b"])
        [held] = await store.batch_items.claim(job.id, "w", now=T0, lease_until=at(30), limit=1)
        assert await store.batch_items.cancel(ALICE, job.id, held.id, at(1)) is ItemEdit.RUNNING
        assert await store.batch_items.delete(ALICE, job.id, held.id) is ItemEdit.RUNNING
        running = await store.batch_items.get(ALICE, job.id, held.id)
        assert running is not None and running[1]
        assert await store.batch_items.cancel(BOB, job.id, held.id, at(1)) is ItemEdit.MISSING
        await store.batch_items.record(job.id, held.id, "w", done())
        assert await store.batch_items.cancel(ALICE, job.id, held.id, at(1)) is ItemEdit.NOT_PENDING
        assert await store.batch_items.delete(ALICE, job.id, held.id) is ItemEdit.DONE
        assert await store.batch_items.delete(ALICE, job.id, held.id) is ItemEdit.MISSING
        assert (await store.batch_jobs.counts(job.id)).total == 1

    async def test_delete_many_by_selection_skips_running_items(self, store: Store) -> None:
        job = await new_job(store, ["ok", "bad", "held", "waiting"])
        items = await store.batch_items.claim(job.id, "w", now=T0, lease_until=at(30), limit=3)
        await store.batch_items.record(job.id, items[0].id, "w", done())
        await store.batch_items.record(job.id, items[1].id, "w", done(ItemState.EXECUTION_ERROR))
        assert await store.batch_items.delete_many(ALICE, job.id, ItemSelection.FAILED) == 1
        assert await store.batch_items.delete_many(ALICE, job.id, ItemSelection.SUCCESSFUL) == 1
        assert await store.batch_items.delete_many(BOB, job.id, ItemSelection.ALL) == 0
        assert await store.batch_items.delete_many(ALICE, job.id, ItemSelection.ALL) == 1
        assert [item.input for item, _ in await store.batch_items.list_for_job(ALICE, job.id)] == ["held"]
        counts = await store.batch_jobs.counts(job.id)
        assert (counts.total, counts.total_cost) == (1, 0.0)

    async def test_retry_moves_failed_items_back_keeping_their_cost(self, store: Store) -> None:
        job = await new_job(store, ["a", "b"])
        items = await store.batch_items.claim(job.id, "w", now=T0, lease_until=at(30), limit=2)
        await store.batch_items.record(job.id, items[0].id, "w", done(ItemState.VALIDATION_ERROR, cost=0.5))
        await store.batch_items.record(job.id, items[1].id, "w", done(cost=0.25))
        assert await store.batch_items.retry_failed(BOB, job.id) == 0
        assert await store.batch_items.retry_failed(ALICE, job.id) == 1
        found = await store.batch_items.get(ALICE, job.id, items[0].id)
        assert found is not None
        item = found[0]
        assert (item.state, item.output, item.validation_result) == (ItemState.PENDING, None, None)
        assert item.confidence is None
        assert item.total_cost == 0.5
        counts = await store.batch_jobs.counts(job.id)
        assert (counts.pending, counts.validation_errors, counts.confidence_count) == (1, 0, 1)
        assert await claim(store, job, "again") == ["a"]

    async def test_cancel_pending_leaves_running_items_to_finish(self, store: Store) -> None:
        job = await new_job(store, ["a", "b", "c"])
        [held] = await store.batch_items.claim(job.id, "w", now=T0, lease_until=at(30), limit=1)
        assert await store.batch_items.cancel_pending(job.id, at(1)) == 2
        assert await store.batch_items.record(job.id, held.id, "w", done())
        counts = await store.batch_jobs.counts(job.id)
        assert (counts.pending, counts.cancelled, counts.finished) == (0, 2, 1)

    async def test_items_are_not_added_to_another_accounts_job(self, store: Store) -> None:
        job = await new_job(store, [])
        assert await store.batch_items.add(BOB, job.id, ["x"], T0) == 0
        assert await store.batch_items.add(ALICE, "no-such-job", ["x"], T0) == 0
