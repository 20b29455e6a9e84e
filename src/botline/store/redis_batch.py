"""Redis repositories of batch workflows and jobs (items and their queue: redis_batch_items.py).

Documents are JSON strings; a job's state changes under WATCH (compare-and-set on the document) and
moves it in or out of `batch_jobs_active`, the set workers claim from. Deleting a job removes its
document and indexes first (in one MULTI: no worker claims from it afterwards), then its items in chunks.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from botline.domain.batch import FINAL_STATES, BatchJob, JobCounts, JobEvent, JobState, Workflow, WorkflowSettings
from botline.store.batch import EVENTS_KEPT, BatchJobRepository, BatchWorkflowRepository
from botline.store.keys import BatchJobPart, RedisKeys
from botline.store.redis_base import _dump, _fetch, _reachable_methods, _Repo, _score
from botline.store.redis_batch_items import COUNT_FIELDS, DELETE_CHUNK, TOTALS_COST, TOTALS_SUM, TOTALS_WEIGHT

FINISH_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local job = cjson.decode(raw)
if job.state ~= 'Active' then return 0 end
if redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3]) > 0 then return 0 end
job.state = 'Finished'
redis.call('SET', KEYS[1], cjson.encode(job))
redis.call('ZREM', KEYS[4], job.id)
redis.call('RPUSH', KEYS[5], ARGV[1])
redis.call('LTRIM', KEYS[5], -tonumber(ARGV[2]), -1)
return 1
"""


def _push_event(pipe: Pipeline, key: str, event: JobEvent) -> None:
    pipe.rpush(key, _dump(event))
    pipe.ltrim(key, -EVENTS_KEPT, -1)


@_reachable_methods
class RedisBatchJobs(_Repo, BatchJobRepository):
    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        super().__init__(client, keys)
        self._finish = client.register_script(FINISH_SCRIPT)

    def _part(self, job_id: str, part: BatchJobPart) -> str:
        return self._keys.batch_job_part(job_id, part)

    async def create(self, job: BatchJob, event: JobEvent) -> None:
        def writes(pipe: Pipeline) -> None:
            score = _score(job.created_at)
            pipe.set(self._keys.batch_job(job.id), _dump(job))
            pipe.zadd(self._keys.batch_jobs_of_account(job.account_id), {job.id: score})
            pipe.zadd(self._keys.batch_jobs_of_workflow(job.workflow_id), {job.id: score})
            if job.state is JobState.ACTIVE:
                pipe.zadd(self._keys.batch_jobs_active(), {job.id: score})
            _push_event(pipe, self._part(job.id, BatchJobPart.EVENTS), event)

        await self._insert([self._keys.batch_job(job.id)], f"job {job.id}", writes)

    async def get(self, account_id: str, job_id: str) -> BatchJob | None:
        job = await self._get(BatchJob, self._keys.batch_job(job_id))
        return job if job is not None and job.account_id == account_id else None

    async def list_for_account(self, account_id: str, workflow_id: str | None = None) -> list[BatchJob]:
        if workflow_id is None:
            return await self._indexed(BatchJob, self._keys.batch_jobs_of_account(account_id), self._keys.batch_job)
        jobs = await self._indexed(BatchJob, self._keys.batch_jobs_of_workflow(workflow_id), self._keys.batch_job)
        return [job for job in jobs if job.account_id == account_id]

    async def events(self, job_id: str) -> list[JobEvent]:
        raws = cast(list[str], await self._redis.lrange(self._part(job_id, BatchJobPart.EVENTS), 0, -1))
        return [JobEvent.model_validate_json(raw) for raw in raws]

    async def add_event(self, job_id: str, event: JobEvent) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            _push_event(pipe, self._part(job_id, BatchJobPart.EVENTS), event)
            await pipe.execute()

    async def set_title(self, account_id: str, job_id: str, title: str | None) -> bool:
        changed = await self._modify(
            BatchJob, self._keys.batch_job(job_id),
            lambda stored: stored.model_copy(update={"title": title}) if stored.account_id == account_id else None,
        )
        return changed is not None

    async def transition(
        self, account_id: str, job_id: str, to: JobState, *, allowed_from: frozenset[JobState], event: JobEvent,
        restarted_at: datetime | None = None,
    ) -> BatchJob | None:
        def changed(stored: BatchJob) -> BatchJob | None:
            if stored.account_id != account_id or stored.state not in allowed_from:
                return None
            update: dict[str, object] = {"state": to}
            if restarted_at is not None:
                update["restarted_at"] = restarted_at
            return stored.model_copy(update=update)

        def also(pipe: Pipeline, job: BatchJob) -> None:
            if to is JobState.ACTIVE:
                pipe.zadd(self._keys.batch_jobs_active(), {job.id: _score(job.created_at)})
            else:
                pipe.zrem(self._keys.batch_jobs_active(), job.id)
            _push_event(pipe, self._part(job.id, BatchJobPart.EVENTS), event)

        return await self._modify(BatchJob, self._keys.batch_job(job_id), changed, also)

    async def finish_if_drained(self, job_id: str, event: JobEvent) -> bool:
        keys = [self._keys.batch_job(job_id), self._part(job_id, BatchJobPart.QUEUE),
                self._part(job_id, BatchJobPart.RUNNING), self._keys.batch_jobs_active(),
                self._part(job_id, BatchJobPart.EVENTS)]
        return bool(await self._finish(keys=keys, args=[_dump(event), EVENTS_KEPT]))

    async def delete(self, account_id: str, job_id: str) -> bool:
        key = self._keys.batch_job(job_id)

        async def body(pipe: Pipeline) -> BatchJob | None:
            stored = await _fetch(pipe, BatchJob, key)
            pipe.multi()
            if stored is None or stored.account_id != account_id:
                return None
            pipe.delete(key)
            pipe.zrem(self._keys.batch_jobs_of_account(account_id), job_id)
            pipe.zrem(self._keys.batch_jobs_of_workflow(stored.workflow_id), job_id)
            pipe.zrem(self._keys.batch_jobs_active(), job_id)
            return stored

        if await self._atomic(body, key) is None:
            return False
        items = self._part(job_id, BatchJobPart.ITEMS)
        while ids := cast(list[str], await self._redis.zrange(items, 0, DELETE_CHUNK - 1)):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(*[self._keys.batch_item(item_id) for item_id in ids])
                pipe.zrem(items, *ids)
                await pipe.execute()
        await self._redis.delete(
            *[self._part(job_id, part) for part in BatchJobPart],
            *[self._keys.batch_job_state(job_id, state.value) for state in FINAL_STATES],
        )
        return True

    async def active(self) -> list[BatchJob]:
        jobs = await self._indexed(BatchJob, self._keys.batch_jobs_active(), self._keys.batch_job)
        return [job for job in jobs if job.state is JobState.ACTIVE]

    async def counts(self, job_id: str) -> JobCounts:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zcard(self._part(job_id, BatchJobPart.QUEUE))
            pipe.zcard(self._part(job_id, BatchJobPart.RUNNING))
            for state in COUNT_FIELDS:
                pipe.scard(self._keys.batch_job_state(job_id, state.value))
            pipe.hgetall(self._part(job_id, BatchJobPart.TOTALS))
            queued, running, *finals, totals = await pipe.execute()
        totals = cast(dict[str, str], totals)
        return JobCounts(
            pending=int(queued) + int(running), running=int(running),
            **{field: int(count) for field, count in zip(COUNT_FIELDS.values(), finals, strict=True)},
            total_cost=max(0.0, float(totals.get(TOTALS_COST, 0))),
            confidence_sum=float(totals.get(TOTALS_SUM, 0)), confidence_count=int(float(totals.get(TOTALS_WEIGHT, 0))),
        )


@_reachable_methods
class RedisBatchWorkflows(_Repo, BatchWorkflowRepository):

    def __init__(self, client: Redis, keys: RedisKeys, jobs: RedisBatchJobs) -> None:
        super().__init__(client, keys)
        self._jobs = jobs

    async def create(self, workflow: Workflow) -> None:
        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.batch_workflow(workflow.id), _dump(workflow))
            pipe.zadd(self._keys.batch_workflows_of_account(workflow.account_id),
                      {workflow.id: _score(workflow.created_at)})

        await self._insert([self._keys.batch_workflow(workflow.id)], f"workflow {workflow.id}", writes)

    async def get(self, account_id: str, workflow_id: str) -> Workflow | None:
        workflow = await self._get(Workflow, self._keys.batch_workflow(workflow_id))
        return workflow if workflow is not None and workflow.account_id == account_id else None

    async def list_for_account(self, account_id: str) -> list[tuple[Workflow, int]]:
        workflows = await self._indexed(Workflow, self._keys.batch_workflows_of_account(account_id),
                                        self._keys.batch_workflow)
        async with self._redis.pipeline(transaction=False) as pipe:
            for workflow in workflows:
                pipe.zcard(self._keys.batch_jobs_of_workflow(workflow.id))
            counts = cast(list[int], await pipe.execute())
        return list(zip(workflows, counts, strict=True))

    async def change(
        self, account_id: str, workflow_id: str, settings: WorkflowSettings, updated_at: datetime
    ) -> Workflow | None:
        given = {name: getattr(settings, name) for name in WorkflowSettings.model_fields}

        def changed(stored: Workflow) -> Workflow | None:
            if stored.account_id != account_id:
                return None
            return stored.model_copy(update={**given, "updated_at": updated_at})

        return await self._modify(Workflow, self._keys.batch_workflow(workflow_id), changed)

    async def delete(self, account_id: str, workflow_id: str) -> bool:
        if await self.get(account_id, workflow_id) is None:
            return False
        for job_id in cast(list[str], await self._redis.zrange(self._keys.batch_jobs_of_workflow(workflow_id), 0, -1)):
            await self._jobs.delete(account_id, job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.batch_workflow(workflow_id), self._keys.batch_jobs_of_workflow(workflow_id))
            pipe.zrem(self._keys.batch_workflows_of_account(account_id), workflow_id)
            await pipe.execute()
        return True
