"""Redis repository of batch items: the claim queue shared by every replica (rules in store/batch.py).

A pending item nobody holds sits in the job's `queue` zset, scored so ZPOPMIN gives the highest
priority first, then import order. `claim` (a Lua script: atomic across replicas) checks that the job
is Active, takes items whose lease ran out from `running` first (their holder died), then pops the
queue, and records each item's deadline in `running` and its token in `claims`. `record` writes the
result only while `claims` still holds the caller's token. Final items are in one set per state, and
`totals` sums cost and confidence, so a job's counters are read without touching its items. Every
held item of an account is also in the account's `batch_running` zset (by lease deadline), which
`claim` counts against `per_account`; an entry whose lease ran out no longer counts.

The scripts that walk many items build their keys from ids (`batch_item_prefix`): fine on one Redis
or a replicated one, not on Redis Cluster (which botline does not support).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from botline.domain.batch import (
    FAILED_STATES,
    PRIORITY_MAX,
    BatchItem,
    ItemSelection,
    ItemState,
    JobState,
    ResultWrite,
)
from botline.store.batch import BatchItemRepository, ItemEdit
from botline.store.keys import BatchJobPart, RedisKeys
from botline.store.redis_base import _dump, _reachable_methods, _Repo, _walks

SEQUENCE_SCALE = 1_000_000_000
"""Queue score = (PRIORITY_MAX - priority) * SEQUENCE_SCALE + sequence: exact below 2**53."""
DELETE_CHUNK = 500
SCAN_CHUNK = 1000
TOTALS_COST, TOTALS_SUM, TOTALS_WEIGHT = "cost", "confidenceSum", "confidenceCount"
COUNT_FIELDS = {
    ItemState.FINISHED: "finished", ItemState.REFUSED: "refused", ItemState.EXECUTION_ERROR: "execution_errors",
    ItemState.VALIDATION_ERROR: "validation_errors", ItemState.CANCELLED: "cancelled",
}
FINAL_ORDER = list(COUNT_FIELDS)
"""The final-state sets, in the order the scripts receive their keys."""

# Shared Lua: the queue score of a decoded item, and forgetting an item's confidence in the totals.
_LUA_HELPERS = """
local function score(item, pmax, scale)
    return (pmax - item.priority) * scale + item.sequence
end
local function forget_confidence(totals, item)
    if item.confidence ~= nil and item.confidence ~= cjson.null then
        redis.call('HINCRBYFLOAT', totals, 'confidenceSum', -item.confidence)
        redis.call('HINCRBY', totals, 'confidenceCount', -1)
    end
end
"""
# KEYS: job, queue, running, claims; ARGV: limit, now, lease until, token, Active, per job (0: none),
# per account (0: none), the account's running key before and after the account id.
CLAIM_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {} end
local job = cjson.decode(raw)
if job.state ~= ARGV[5] then return {} end
local account = ARGV[8] .. job.accountId .. ARGV[9]
redis.call('ZREMRANGEBYSCORE', account, '-inf', ARGV[2])
local n = tonumber(ARGV[1])
local per_job, per_account = tonumber(ARGV[6]), tonumber(ARGV[7])
if per_job > 0 then n = math.min(n, per_job - redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')) end
if per_account > 0 then n = math.min(n, per_account - redis.call('ZCARD', account)) end
if n <= 0 then return {} end
local taken = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[2], 'LIMIT', 0, n)
if #taken < n then
    local popped = redis.call('ZPOPMIN', KEYS[2], n - #taken)
    for i = 1, #popped, 2 do table.insert(taken, popped[i]) end
end
for _, id in ipairs(taken) do
    redis.call('ZADD', KEYS[3], ARGV[3], id)
    redis.call('HSET', KEYS[4], id, ARGV[4])
    redis.call('ZADD', account, ARGV[3], id)
end
return taken
"""
# KEYS: running, claims, job; ARGV: lease until, token, the account's running key before and after the id, ids...
EXTEND_SCRIPT = """
local raw = redis.call('GET', KEYS[3])
local account = raw and (ARGV[3] .. cjson.decode(raw).accountId .. ARGV[4])
local count = 0
for i = 5, #ARGV do
    if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[2] then
        redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
        if account then redis.call('ZADD', account, 'XX', ARGV[1], ARGV[i]) end
        count = count + 1
    end
end
return count
"""
RECORD_SCRIPT = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local item = cjson.decode(raw)
redis.call('ZREM', ARGV[6] .. item.accountId .. ARGV[7], ARGV[1])
for key, value in pairs(cjson.decode(ARGV[3])) do item[key] = value end
local cost = tonumber(ARGV[4])
local before = item.totalCost
if before == nil or before == cjson.null then before = 0 end
item.totalCost = before + cost
redis.call('SET', KEYS[1], cjson.encode(item))
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[5], 'cost', cost)
if item.confidence ~= cjson.null and item.confidence ~= nil then
    redis.call('HINCRBYFLOAT', KEYS[5], 'confidenceSum', item.confidence)
    redis.call('HINCRBY', KEYS[5], 'confidenceCount', 1)
end
return 1
"""
RELEASE_SCRIPT = _LUA_HELPERS + """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
local raw = redis.call('GET', KEYS[4])
if not raw then return 0 end
local item = cjson.decode(raw)
redis.call('ZREM', ARGV[5] .. item.accountId .. ARGV[6], ARGV[1])
redis.call('ZADD', KEYS[3], score(item, tonumber(ARGV[3]), tonumber(ARGV[4])), ARGV[1])
return 1
"""
PRIORITY_SCRIPT = _LUA_HELPERS + """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local item = cjson.decode(raw)
if item.accountId ~= ARGV[1] or item.parentBatchWorkflowJobId ~= ARGV[2] then return false end
item.priority = tonumber(ARGV[3])
local encoded = cjson.encode(item)
redis.call('SET', KEYS[1], encoded)
if redis.call('ZSCORE', KEYS[2], item.id) then
    redis.call('ZADD', KEYS[2], score(item, tonumber(ARGV[4]), tonumber(ARGV[5])), item.id)
end
return encoded
"""
# KEYS: queue, claims, processed, cancelled set; ARGV: item prefix, account, job, at (iso), at (epoch s), ids...
CANCEL_SCRIPT = """
local done, running, other = 0, 0, 0
for i = 6, #ARGV do
    local id = ARGV[i]
    local raw = redis.call('GET', ARGV[1] .. id)
    local item = raw and cjson.decode(raw)
    if not item or item.accountId ~= ARGV[2] or item.parentBatchWorkflowJobId ~= ARGV[3] then
        other = other + 1
    elseif redis.call('HEXISTS', KEYS[2], id) == 1 then
        running = running + 1
    elseif redis.call('ZREM', KEYS[1], id) == 1 then
        item.state = 'Cancelled'
        item.processedAt = ARGV[4]
        redis.call('SET', ARGV[1] .. id, cjson.encode(item))
        redis.call('SADD', KEYS[4], id)
        redis.call('ZADD', KEYS[3], ARGV[5], id)
        done = done + 1
    else
        other = other + 1
    end
end
return {done, running, other}
"""
# KEYS: items, queue, claims, processed, totals, the five final-state sets (FINAL_ORDER);
# ARGV: item prefix, account, job, JSON list of the states that may go, ids...
DELETE_SCRIPT = _LUA_HELPERS + """
local allowed = {}
for _, state in ipairs(cjson.decode(ARGV[4])) do allowed[state] = true end
local done, running = 0, 0
for i = 5, #ARGV do
    local id = ARGV[i]
    local raw = redis.call('GET', ARGV[1] .. id)
    local item = raw and cjson.decode(raw)
    if item and item.accountId == ARGV[2] and item.parentBatchWorkflowJobId == ARGV[3] then
        if redis.call('HEXISTS', KEYS[3], id) == 1 then
            running = running + 1
        elseif allowed[item.state] then
            redis.call('DEL', ARGV[1] .. id)
            redis.call('ZREM', KEYS[1], id)
            redis.call('ZREM', KEYS[2], id)
            redis.call('ZREM', KEYS[4], id)
            for k = 6, 10 do redis.call('SREM', KEYS[k], id) end
            local cost = item.totalCost
            if cost ~= nil and cost ~= cjson.null then redis.call('HINCRBYFLOAT', KEYS[5], 'cost', -cost) end
            forget_confidence(KEYS[5], item)
            done = done + 1
        end
    end
end
return {done, running}
"""
# KEYS: queue, processed, totals, the three failed sets; ARGV: item prefix, pmax, scale, ids...
RETRY_SCRIPT = _LUA_HELPERS + """
local count = 0
for i = 4, #ARGV do
    local id = ARGV[i]
    local moved = 0
    for k = 4, 6 do moved = moved + redis.call('SREM', KEYS[k], id) end
    local raw = redis.call('GET', ARGV[1] .. id)
    if moved > 0 and raw then
        local item = cjson.decode(raw)
        forget_confidence(KEYS[3], item)
        item.state = 'Pending'
        item.output = cjson.null
        item.validationResult = cjson.null
        item.confidence = cjson.null
        item.processedAt = cjson.null
        redis.call('SET', ARGV[1] .. id, cjson.encode(item))
        redis.call('ZREM', KEYS[2], id)
        redis.call('ZADD', KEYS[1], score(item, tonumber(ARGV[2]), tonumber(ARGV[3])), id)
        count = count + 1
    end
end
return count
"""


def queue_score(item: BatchItem) -> int:
    return (PRIORITY_MAX - item.priority) * SEQUENCE_SCALE + item.sequence


@_reachable_methods
class RedisBatchItems(_Repo, BatchItemRepository):
    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        super().__init__(client, keys)
        self._claim = client.register_script(CLAIM_SCRIPT)
        self._extend = client.register_script(EXTEND_SCRIPT)
        self._record = client.register_script(RECORD_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)
        self._priority = client.register_script(PRIORITY_SCRIPT)
        self._cancel = client.register_script(CANCEL_SCRIPT)
        self._delete = client.register_script(DELETE_SCRIPT)
        self._retry = client.register_script(RETRY_SCRIPT)

    def _part(self, job_id: str, part: BatchJobPart) -> str:
        return self._keys.batch_job_part(job_id, part)

    def _finals(self, job_id: str, states: Sequence[ItemState]) -> list[str]:
        return [self._keys.batch_job_state(job_id, state.value) for state in states]

    async def _load(self, ids: Sequence[str]) -> list[BatchItem]:
        if not ids:
            return []
        raws = cast(list[str | None], await self._redis.mget([self._keys.batch_item(i) for i in ids]))
        return [BatchItem.model_validate_json(raw) for raw in raws if raw is not None]

    async def _with_running(self, job_id: str, items: list[BatchItem]) -> list[tuple[BatchItem, bool]]:
        if not items:
            return []
        held = cast(list[str | None], await self._redis.hmget(self._part(job_id, BatchJobPart.CLAIMS),
                                                               [item.id for item in items]))
        return [(item, token is not None) for item, token in zip(items, held, strict=True)]

    async def add(self, account_id: str, job_id: str, inputs: Sequence[str], inserted_at: datetime) -> int:
        job_key = self._keys.batch_job(job_id)

        async def body(pipe: Pipeline) -> int:
            raw = cast(str | None, await pipe.get(job_key))
            if raw is None or orjson.loads(raw).get("accountId") != account_id:
                return 0
            last = int(await pipe.incrby(self._part(job_id, BatchJobPart.SEQUENCE), len(inputs)))
            first = last - len(inputs)
            items = [BatchItem(account_id=account_id, parentBatchWorkflowJobId=job_id, sequence=first + offset,
                               inserted_at=inserted_at, input=text) for offset, text in enumerate(inputs, start=1)]
            pipe.multi()
            pipe.mset({self._keys.batch_item(item.id): _dump(item) for item in items})
            pipe.zadd(self._part(job_id, BatchJobPart.ITEMS), {item.id: item.sequence for item in items})
            pipe.zadd(self._part(job_id, BatchJobPart.QUEUE), {item.id: queue_score(item) for item in items})
            return len(items)

        if not inputs:
            return 0
        return await self._atomic(body, job_key)

    async def get(self, account_id: str, job_id: str, item_id: str) -> tuple[BatchItem, bool] | None:
        item = await self._get(BatchItem, self._keys.batch_item(item_id))
        if item is None or item.account_id != account_id or item.job_id != job_id:
            return None
        return (await self._with_running(job_id, [item]))[0]

    async def list_for_job(
        self, account_id: str, job_id: str, *, state: ItemState | None = None, offset: int = 0, limit: int = 100,
    ) -> list[tuple[BatchItem, bool]]:
        index = self._part(job_id, BatchJobPart.ITEMS)
        if state is None:
            items = await self._load(cast(list[str], await self._redis.zrange(index, offset, offset + limit - 1)))
        else:  # walks the job in import order, keeping that state's items
            items, skipped, start = [], 0, 0
            while len(items) < limit:
                ids = cast(list[str], await self._redis.zrange(index, start, start + SCAN_CHUNK - 1))
                chunk = await self._load(ids)
                if not chunk:
                    break
                start += SCAN_CHUNK
                for item in chunk:
                    if item.state is state:
                        if skipped < offset:
                            skipped += 1
                        elif len(items) < limit:
                            items.append(item)
        return await self._with_running(job_id, [item for item in items if item.account_id == account_id])

    async def page(self, job_id: str, after_sequence: int, limit: int) -> list[BatchItem]:
        ids = cast(list[str], await self._redis.zrangebyscore(
            self._part(job_id, BatchJobPart.ITEMS), f"({after_sequence}", "+inf", start=0, num=limit))
        return await self._load(ids)

    async def latest(self, job_id: str, limit: int) -> list[BatchItem]:
        return await self._load(cast(list[str], await self._redis.zrevrange(
            self._part(job_id, BatchJobPart.PROCESSED), 0, limit - 1)))

    async def set_priority(self, account_id: str, job_id: str, item_id: str, priority: int) -> BatchItem | None:
        raw = await self._priority(
            keys=[self._keys.batch_item(item_id), self._part(job_id, BatchJobPart.QUEUE)],
            args=[account_id, job_id, priority, PRIORITY_MAX, SEQUENCE_SCALE],
        )
        return None if not raw else BatchItem.model_validate_json(cast(str, raw))

    async def _cancel_ids(self, account_id: str, job_id: str, ids: Sequence[str], at: datetime) -> list[int]:
        keys = [self._part(job_id, BatchJobPart.QUEUE), self._part(job_id, BatchJobPart.CLAIMS),
                self._part(job_id, BatchJobPart.PROCESSED), *self._finals(job_id, [ItemState.CANCELLED])]
        args: list[str | float] = [self._keys.batch_item_prefix(), account_id, job_id, at.isoformat(), at.timestamp(),
                                   *ids]
        return [int(n) for n in cast(list[int], await self._cancel(keys=keys, args=args))]

    async def cancel(self, account_id: str, job_id: str, item_id: str, at: datetime) -> ItemEdit:
        if await self.get(account_id, job_id, item_id) is None:
            return ItemEdit.MISSING
        done, running, _ = await self._cancel_ids(account_id, job_id, [item_id], at)
        return ItemEdit.DONE if done else ItemEdit.RUNNING if running else ItemEdit.NOT_PENDING

    async def _delete_ids(
        self, account_id: str, job_id: str, ids: Sequence[str], states: frozenset[ItemState]
    ) -> tuple[int, int]:
        keys = [self._part(job_id, part) for part in (BatchJobPart.ITEMS, BatchJobPart.QUEUE, BatchJobPart.CLAIMS,
                                                      BatchJobPart.PROCESSED, BatchJobPart.TOTALS)]
        keys += self._finals(job_id, FINAL_ORDER)
        args = [self._keys.batch_item_prefix(), account_id, job_id,
                orjson.dumps(sorted(state.value for state in states)).decode(), *ids]
        done, running = cast(list[int], await self._delete(keys=keys, args=args))
        return int(done), int(running)

    async def delete(self, account_id: str, job_id: str, item_id: str) -> ItemEdit:
        done, running = await self._delete_ids(account_id, job_id, [item_id], frozenset(ItemState))
        return ItemEdit.DONE if done else ItemEdit.RUNNING if running else ItemEdit.MISSING

    @_walks
    async def delete_many(self, account_id: str, job_id: str, which: ItemSelection) -> int:
        states = which.states()
        candidates: list[str] = []
        if ItemState.PENDING in states:
            candidates += cast(list[str], await self._redis.zrange(self._part(job_id, BatchJobPart.QUEUE), 0, -1))
        for key in self._finals(job_id, [s for s in FINAL_ORDER if s in states]):
            candidates += cast(list[str], await self._redis.smembers(key))
        deleted = 0
        for start in range(0, len(candidates), DELETE_CHUNK):
            done, _ = await self._delete_ids(account_id, job_id, candidates[start:start + DELETE_CHUNK], states)
            deleted += done
        return deleted

    @_walks
    async def retry_failed(self, account_id: str, job_id: str) -> int:
        raw = await self._redis.get(self._keys.batch_job(job_id))
        if raw is None or orjson.loads(raw).get("accountId") != account_id:
            return 0
        failed = self._finals(job_id, [s for s in FINAL_ORDER if s in FAILED_STATES])
        ids: list[str] = []
        for key in failed:
            ids += cast(list[str], await self._redis.smembers(key))
        keys = [self._part(job_id, BatchJobPart.QUEUE), self._part(job_id, BatchJobPart.PROCESSED),
                self._part(job_id, BatchJobPart.TOTALS), *failed]
        moved = 0
        for start in range(0, len(ids), DELETE_CHUNK):
            moved += int(cast(int, await self._retry(
                keys=keys, args=[self._keys.batch_item_prefix(), PRIORITY_MAX, SEQUENCE_SCALE,
                                 *ids[start:start + DELETE_CHUNK]])))
        return moved

    async def cancel_pending(self, job_id: str, at: datetime) -> int:
        raw = await self._redis.get(self._keys.batch_job(job_id))
        if raw is None:
            return 0
        account_id = str(orjson.loads(raw)["accountId"])
        cancelled = 0
        while ids := cast(list[str], await self._redis.zrange(self._part(job_id, BatchJobPart.QUEUE), 0,
                                                              DELETE_CHUNK - 1)):
            done, _, _ = await self._cancel_ids(account_id, job_id, ids, at)
            cancelled += done
        return cancelled

    async def claim(
        self, job_id: str, token: str, *, now: datetime, lease_until: datetime, limit: int,
        per_job: int | None = None, per_account: int | None = None,
    ) -> list[BatchItem]:
        keys = [self._keys.batch_job(job_id), self._part(job_id, BatchJobPart.QUEUE),
                self._part(job_id, BatchJobPart.RUNNING), self._part(job_id, BatchJobPart.CLAIMS)]
        ids = cast(list[str], await self._claim(keys=keys, args=[
            limit, now.timestamp(), lease_until.timestamp(), token, JobState.ACTIVE.value, per_job or 0,
            per_account or 0, *self._keys.batch_running_of_account_parts()]))
        return await self._load(ids)

    async def extend(self, job_id: str, token: str, item_ids: Sequence[str], lease_until: datetime) -> int:
        if not item_ids:
            return 0
        keys = [self._part(job_id, BatchJobPart.RUNNING), self._part(job_id, BatchJobPart.CLAIMS),
                self._keys.batch_job(job_id)]
        args: list[str | float] = [lease_until.timestamp(), token, *self._keys.batch_running_of_account_parts(),
                                   *item_ids]
        return int(cast(int, await self._extend(keys=keys, args=args)))

    async def record_many(self, writes: Sequence[ResultWrite]) -> list[bool]:
        if not writes:
            return []
        account_parts = self._keys.batch_running_of_account_parts()
        async with self._redis.pipeline(transaction=False) as pipe:
            for write in writes:
                job_id, result = write.job_id, write.result
                keys = [self._keys.batch_item(write.item_id), self._part(job_id, BatchJobPart.RUNNING),
                        self._part(job_id, BatchJobPart.CLAIMS), self._keys.batch_job_state(job_id, result.state.value),
                        self._part(job_id, BatchJobPart.TOTALS), self._part(job_id, BatchJobPart.PROCESSED)]
                args: list[str | float] = [write.item_id, write.token, orjson.dumps(result.fields()).decode(),
                                           result.cost, result.processed_at.timestamp(), *account_parts]
                await self._record(keys=keys, args=args, client=pipe)
            return [bool(written) for written in await pipe.execute()]

    async def release(self, job_id: str, item_id: str, token: str) -> bool:
        keys = [self._part(job_id, BatchJobPart.RUNNING), self._part(job_id, BatchJobPart.CLAIMS),
                self._part(job_id, BatchJobPart.QUEUE), self._keys.batch_item(item_id)]
        return bool(await self._release(keys=keys, args=[item_id, token, PRIORITY_MAX, SEQUENCE_SCALE,
                                                          *self._keys.batch_running_of_account_parts()]))

