"""Redis backend (shared by several replicas): JSON documents plus index keys.

The client must decode replies (checked by RedisStore), hence the `cast(str, ...)` of replies.
Every write that touches more than one key runs in one MULTI/EXEC; writes guarded by a uniqueness
rule or by the current document run under WATCH and are retried when another replica changed a
watched key first, so indexes never disagree with documents. Key names come from `RedisKeys`.
Shared helpers are in `redis_base.py`; chat clients, sessions and messages in `redis_conversations.py`;
inbound channel messages and leases in `redis_inbound.py`; pub/sub signals in `redis_signals.py`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from botline.domain.accounts import Account, ApiKey
from botline.domain.gateways import Gateway
from botline.domain.usage import USAGE_COUNTS, ModelUsage, UsageRecord, UsageTotals
from botline.store.base import (
    AccountRepository,
    ApiKeyRepository,
    ConflictError,
    CounterRepository,
    GatewayRepository,
    Store,
    UsageRepository,
)
from botline.store.changes import AccountChange, BalanceOperation
from botline.store.hours import hour_bucket
from botline.store.keys import RedisKeys, UsageBucket
from botline.store.redis_base import (
    Deadlines,
    _claim,
    _Deadline,
    _dump,
    _fetch,
    _reachable_methods,
    _Repo,
    _repoint,
    _score,
)
from botline.store.redis_batch import RedisBatchJobs, RedisBatchWorkflows
from botline.store.redis_batch_items import RedisBatchItems
from botline.store.redis_coalesce import Coalescer
from botline.store.redis_conversations import RedisChatClients, RedisMessages, RedisSessions
from botline.store.redis_governance import RedisLlmConnections, RedisPolicies
from botline.store.redis_inbound import RedisInbound, RedisLocks
from botline.store.redis_knowledge import RedisCollections, RedisDocuments
from botline.store.redis_media import RedisBlobs, RedisMedia
from botline.store.redis_memories import RedisMemories
from botline.store.redis_pool import WaitingConnectionPool
from botline.store.redis_schedules import RedisSchedules
from botline.store.redis_signals import RedisSignals
from botline.store.redis_skills import RedisSkills
from botline.store.redis_values import RedisReservations, RedisServerValues
from botline.store.redis_vectors import RedisVectors

USAGE_FIELDS = USAGE_COUNTS
LEX_MIN, LEX_MAX = "-", "+"



@_reachable_methods
class RedisAccounts(_Repo, AccountRepository):
    async def create(self, account: Account) -> None:
        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.account(account.id), _dump(account))
            pipe.zadd(self._keys.accounts_index(), {account.id: _score(account.created_at)})

        await self._insert([self._keys.account(account.id)], "account", writes)

    async def get(self, account_id: str) -> Account | None:
        return await self._get(Account, self._keys.account(account_id))

    async def update(self, account: Account) -> None:
        await self._redis.set(self._keys.account(account.id), _dump(account), xx=True)

    async def change(self, account_id: str, change: AccountChange) -> Account | None:
        given = {name: value for name, value in vars(change).items() if value is not None}
        return await self._modify(Account, self._keys.account(account_id),
                                  lambda stored: stored.model_copy(update=given))

    async def adjust_balance(self, account_id: str, operation: BalanceOperation, amount: float) -> float | None:
        def adjusted(stored: Account) -> Account:
            current = stored.balance or 0.0
            balance = {BalanceOperation.ADD: current + amount, BalanceOperation.REMOVE: current - amount,
                       BalanceOperation.SET: amount}[operation]
            return stored.model_copy(update={"balance": float(balance)})

        changed = await self._modify(Account, self._keys.account(account_id), adjusted)
        return None if changed is None else changed.balance

    async def list(self) -> list[Account]:
        return await self._indexed(Account, self._keys.accounts_index(), self._keys.account)


@_reachable_methods
class RedisApiKeys(_Repo, ApiKeyRepository):
    async def create(self, key: ApiKey) -> None:
        unique = [self._keys.api_key(key.id), self._keys.api_key_by_hash(key.key_hash)]
        await self._insert(unique, "API key", lambda pipe: self._queue_create(pipe, key))

    def _queue_create(self, pipe: Pipeline, key: ApiKey) -> None:
        """Inside MULTI: the key's document and its three indexes."""
        pipe.set(self._keys.api_key(key.id), _dump(key))
        pipe.set(self._keys.api_key_by_hash(key.key_hash), key.id)
        pipe.sadd(self._keys.api_keys_all(), key.id)
        pipe.zadd(self._keys.api_keys_of_account(key.account_id), {key.id: _score(key.created_at)})

    async def create_within(self, key: ApiKey, *, limit: int) -> bool:
        """Under WATCH of the account's key index: a key created meanwhile restarts the check."""
        held = self._keys.api_keys_of_account(key.account_id)
        unique = [self._keys.api_key(key.id), self._keys.api_key_by_hash(key.key_hash)]

        async def body(pipe: Pipeline) -> bool:
            if int(await pipe.zcard(held)) >= limit:
                return False
            if await pipe.exists(*unique):
                raise ConflictError("API key already exists")
            pipe.multi()
            self._queue_create(pipe, key)
            return True

        return await self._atomic(body, held, *unique)

    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        return await self._by_pointer(ApiKey, self._keys.api_key_by_hash(key_hash), self._keys.api_key)

    async def list_for_account(self, account_id: str) -> list[ApiKey]:
        return await self._indexed(ApiKey, self._keys.api_keys_of_account(account_id), self._keys.api_key)

    async def delete(self, account_id: str, key_id: str) -> bool:
        doc_key = self._keys.api_key(key_id)

        async def body(pipe: Pipeline) -> bool:
            key = await _fetch(pipe, ApiKey, doc_key)
            if key is None or key.account_id != account_id:
                return False
            pipe.multi()
            pipe.delete(doc_key, self._keys.api_key_by_hash(key.key_hash))
            pipe.srem(self._keys.api_keys_all(), key_id)
            pipe.zrem(self._keys.api_keys_of_account(account_id), key_id)
            return True

        return await self._atomic(body, doc_key)

    async def touch(self, key_id: str, used_at: datetime) -> None:
        # Not watched: touch is the only partial update of a key, so the last toucher may win;
        # XX keeps a key deleted in between from coming back.
        key = await self._get(ApiKey, self._keys.api_key(key_id))
        if key is not None:
            touched = key.model_copy(update={"used_at": used_at})
            await self._redis.set(self._keys.api_key(key_id), _dump(touched), xx=True)

    async def count(self) -> int:
        return int(await self._redis.scard(self._keys.api_keys_all()))


@_reachable_methods
class RedisGateways(_Repo, GatewayRepository):
    async def create(self, gateway: Gateway) -> None:
        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.gateway(gateway.id), _dump(gateway))
            pipe.set(self._keys.gateway_by_slug(gateway.account_id, gateway.slug), gateway.id)
            pipe.zadd(self._keys.gateways_of_account(gateway.account_id), {gateway.id: _score(gateway.created_at)})

        unique = [self._keys.gateway(gateway.id), self._keys.gateway_by_slug(gateway.account_id, gateway.slug)]
        await self._insert(unique, f"gateway {gateway.id} or slug {gateway.slug!r}", writes)

    async def get(self, account_id: str, gateway_id: str) -> Gateway | None:
        gateway = await self._get(Gateway, self._keys.gateway(gateway_id))
        return gateway if gateway is not None and gateway.account_id == account_id else None

    async def get_by_slug(self, account_id: str, slug: str) -> Gateway | None:
        return await self._by_pointer(Gateway, self._keys.gateway_by_slug(account_id, slug), self._keys.gateway)

    async def list_for_account(self, account_id: str) -> list[Gateway]:
        return await self._indexed(Gateway, self._keys.gateways_of_account(account_id), self._keys.gateway)

    async def update(self, gateway: Gateway) -> None:
        doc_key = self._keys.gateway(gateway.id)

        async def body(pipe: Pipeline) -> None:
            old = await _fetch(pipe, Gateway, doc_key)
            if old is None or old.account_id != gateway.account_id:
                return
            old_slug = self._keys.gateway_by_slug(old.account_id, old.slug)
            new_slug = self._keys.gateway_by_slug(gateway.account_id, gateway.slug)
            await _claim(pipe, old_slug, new_slug, f"gateway slug {gateway.slug!r}")
            pipe.multi()
            _repoint(pipe, old_slug, new_slug, gateway.id)
            pipe.set(doc_key, _dump(gateway))

        await self._atomic(body, doc_key)

    async def delete(self, account_id: str, gateway_id: str) -> bool:
        doc_key = self._keys.gateway(gateway_id)

        async def body(pipe: Pipeline) -> bool:
            gateway = await _fetch(pipe, Gateway, doc_key)
            if gateway is None or gateway.account_id != account_id:
                return False
            pipe.multi()
            pipe.delete(doc_key, self._keys.gateway_by_slug(account_id, gateway.slug))
            pipe.zrem(self._keys.gateways_of_account(account_id), gateway_id)
            return True

        return await self._atomic(body, doc_key)


@_reachable_methods
class RedisUsage(_Repo, UsageRepository):
    """One hash per (account, gateway, model, hour) plus a per-account lex index of the buckets.

    `record` adds up a batch per bucket first: the commands of a flush follow its buckets, not its
    calls (five per call were 6 % of a web-chat prompt's CPU at 600 prompts/s)."""

    async def record(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        sums: dict[tuple[str, UsageBucket], list[int]] = {}
        for record in records:  # a flush holds every call of the last second: mostly one bucket
            bucket = UsageBucket(hour=hour_bucket(record.at), gateway_id=record.gateway_id, model=record.model)
            amounts = sums.setdefault((record.account_id, bucket), [0] * len(USAGE_FIELDS))
            for i, count in enumerate(record.counts()):
                amounts[i] += count
        async with self._redis.pipeline(transaction=True) as pipe:
            for (account_id, bucket), amounts in sums.items():
                key = self._keys.usage_bucket(account_id, bucket)
                for field, amount in zip(USAGE_FIELDS, amounts, strict=True):
                    if amount:
                        pipe.hincrby(key, field, amount)
                pipe.zadd(self._keys.usage_index(account_id), {bucket.member(): 0})
            await pipe.execute()

    async def _counts(
        self, account_id: str, gateway_id: str | None, since: datetime | None
    ) -> list[tuple[str, list[int]]]:
        """(model, counts in USAGE_FIELDS order) of each bucket matching the filters."""
        low = LEX_MIN if since is None else UsageBucket.lex_from_hour(hour_bucket(since))
        members = cast(list[str], await self._redis.zrangebylex(self._keys.usage_index(account_id), low, LEX_MAX))
        buckets = [b for b in map(UsageBucket.from_member, members) if gateway_id in (None, b.gateway_id)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.hmget(self._keys.usage_bucket(account_id, bucket), USAGE_FIELDS)
            rows = await pipe.execute()
        return [(b.model, [int(v or 0) for v in row]) for b, row in zip(buckets, rows, strict=True)]

    async def totals(
        self, account_id: str, *, gateway_id: str | None = None, since: datetime | None = None
    ) -> UsageTotals:
        return UsageTotals(**_sum(counts for _, counts in await self._counts(account_id, gateway_id, since)))

    async def by_model(self, account_id: str, *, since: datetime | None = None) -> list[ModelUsage]:
        per_model: dict[str, list[list[int]]] = defaultdict(list)
        for model, counts in await self._counts(account_id, None, since):
            per_model[model].append(counts)
        return [ModelUsage(model=model, **_sum(per_model[model])) for model in sorted(per_model)]


ADD_SCRIPT = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
return total
"""
"""counters.add (and increment, by 1): the count, and an expiry set only where the key has none, in one
command; a MULTI of the two was four commands and four replies to parse, on every prompt with an
hourly limit."""


@_reachable_methods
class RedisCounters(_Repo, CounterRepository):
    def __init__(self, client: Redis, keys: RedisKeys, coalescer: Coalescer) -> None:
        super().__init__(client, keys)
        self._coalescer = coalescer
        self._add_script = client.register_script(ADD_SCRIPT)

    async def increment(self, key: str, *, ttl_seconds: int) -> int:
        return await self._add(key, 1, ttl_seconds)

    async def add(self, key: str, amount: int, *, ttl_seconds: int) -> int:
        return await self._add(key, amount, ttl_seconds)

    async def _add(self, key: str, amount: int, ttl_seconds: int) -> int:
        return int(cast(int, await self._coalescer.script(self._add_script, [self._keys.counter(key)],
                                                          [amount, ttl_seconds])))

    async def values(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        found = await self._redis.mget([self._keys.counter(key) for key in keys])
        return [int(value or 0) for value in found]


def _sum(rows: Iterable[list[int]]) -> dict[str, int]:
    sums = [0] * len(USAGE_FIELDS)
    for row in rows:
        sums = [total + count for total, count in zip(sums, row, strict=True)]
    return dict(zip(USAGE_FIELDS, sums, strict=True))


@_reachable_methods
class RedisStore(Store, _Deadline):
    """A Store over one `redis.asyncio.Redis` client, which must decode responses to str.

    `deadline_seconds` bounds each Store call (all of its commands together); None leaves it to the
    client's own socket timeouts, as a caller who passes its own client configured them."""

    def __init__(
        self, client: Redis, prefix: str = "botline", *, owns_client: bool = False,
        deadline_seconds: float | None = None,
    ) -> None:
        if not client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("RedisStore needs a client built with decode_responses=True")
        keys = RedisKeys(prefix)
        self._redis = client
        self._owns_client = owns_client
        self._closed = False
        self.keys = keys
        self.accounts = RedisAccounts(client, keys)
        self.api_keys = RedisApiKeys(client, keys)
        self.gateways = RedisGateways(client, keys)
        self.llm_connections = RedisLlmConnections(client, keys)
        self.policies = RedisPolicies(client, keys)
        self.chat_clients = RedisChatClients(client, keys)
        self._coalescer = Coalescer(client, deadline_seconds)
        self.sessions = RedisSessions(client, keys, self._coalescer)
        self.messages = RedisMessages(client, keys)
        self.usage = RedisUsage(client, keys)
        self.counters = RedisCounters(client, keys, self._coalescer)
        self.inbound = RedisInbound(client, keys)
        self.locks = RedisLocks(client, keys)
        self.server_values = RedisServerValues(client, keys)
        self.reservations = RedisReservations(client, keys)
        self.memories = RedisMemories(client, keys)
        self.schedules = RedisSchedules(client, keys)
        self.batch_jobs = RedisBatchJobs(client, keys)
        self.batch_workflows = RedisBatchWorkflows(client, keys, self.batch_jobs)
        self.batch_items = RedisBatchItems(client, keys)
        self.collections = RedisCollections(client, keys)
        self.documents = RedisDocuments(client, keys)
        self.skills = RedisSkills(client, keys)
        self.media = RedisMedia(client, keys)
        self.blobs = RedisBlobs(client, keys)
        self.vectors = RedisVectors(client, keys)
        self.signals = RedisSignals(client, keys)
        deadlines = None if deadline_seconds is None else Deadlines(deadline_seconds)
        for part in (self, *vars(self).values()):
            if isinstance(part, _Deadline):
                part.deadlines = deadlines

    @classmethod
    async def from_url(
        cls, url: str, *, prefix: str = "botline", max_connections: int = 200, timeout_seconds: float = 5.0
    ) -> RedisStore:
        """A store owning a new client for `url` (redis://, rediss:// or unix://); connects lazily.

        `timeout_seconds` bounds a connect and each Store call as a whole (its deadline), so a Redis
        that stops answering (frozen, partitioned) costs a request that long, then a 503; a stopped
        Redis refuses connections and fails at once. No per-command socket timeout: redis-py arms a
        task and timers for every command with one, which was ~14 % of the web chat's CPU on Redis
        (docs/decisions.md "One deadline per Store call"). The pool blocks when every connection is
        busy (redis-py's default pool fails at once instead, which under load turned into 503s on
        webhooks; redis_pool.py); that wait is part of the call, so the same deadline bounds it. Idle
        pooled connections to a host that vanished are noticed by TCP keepalive.
        """
        pool = WaitingConnectionPool.from_url(
            url, max_connections=max_connections, decode_responses=True,
            socket_timeout=None, socket_connect_timeout=timeout_seconds, socket_keepalive=True,
        )
        return cls(Redis(connection_pool=pool), prefix, owns_client=True, deadline_seconds=timeout_seconds)

    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.signals.close()
            if self._owns_client:
                await self._redis.aclose()
