"""Redis repositories of governance: LLM connections (a document, an account index, a unique name
pointer) and their counters (one hash per connection, HINCRBY)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from redis.asyncio.client import Pipeline

from botline.domain.llm_connections import STAT_FIELDS, ConnectionStats, LlmConnection
from botline.domain.policies import Policy, Violation, ViolationQuery
from botline.store.base import LlmConnectionRepository, PolicyRepository
from botline.store.changes import ConnectionChange, PolicyChange
from botline.store.documents import load_many
from botline.store.redis_base import _claim, _dump, _fetch, _reachable_methods, _Repo, _repoint, _score


@_reachable_methods
class RedisLlmConnections(_Repo, LlmConnectionRepository):
    async def create(self, connection: LlmConnection) -> None:
        name_key = self._keys.llm_connection_by_name(connection.account_id, connection.name)

        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.llm_connection(connection.id), _dump(connection))
            pipe.set(name_key, connection.id)
            pipe.zadd(self._keys.llm_connections_of_account(connection.account_id),
                      {connection.id: _score(connection.created_at)})

        await self._insert([self._keys.llm_connection(connection.id), name_key],
                           f"LLM connection {connection.name!r}", writes)

    async def get(self, account_id: str, connection_id: str) -> LlmConnection | None:
        connection = await self._get(LlmConnection, self._keys.llm_connection(connection_id))
        return connection if connection is not None and connection.account_id == account_id else None

    async def list_for_account(self, account_id: str) -> list[LlmConnection]:
        return await self._indexed(LlmConnection, self._keys.llm_connections_of_account(account_id),
                                   self._keys.llm_connection)

    async def change(self, account_id: str, connection_id: str, change: ConnectionChange) -> LlmConnection | None:
        doc_key = self._keys.llm_connection(connection_id)

        async def body(pipe: Pipeline) -> LlmConnection | None:
            stored = await _fetch(pipe, LlmConnection, doc_key)
            if stored is None or stored.account_id != account_id:
                return None
            changed = stored.model_copy(update=dict(change.values))
            old_name = self._keys.llm_connection_by_name(account_id, stored.name)
            new_name = self._keys.llm_connection_by_name(account_id, changed.name)
            await _claim(pipe, old_name, new_name, f"LLM connection {changed.name!r}")
            pipe.multi()
            _repoint(pipe, old_name, new_name, connection_id)
            pipe.set(doc_key, _dump(changed))
            return changed

        return await self._atomic(body, doc_key)

    async def delete(self, account_id: str, connection_id: str) -> bool:
        doc_key = self._keys.llm_connection(connection_id)

        async def body(pipe: Pipeline) -> bool:
            stored = await _fetch(pipe, LlmConnection, doc_key)
            if stored is None or stored.account_id != account_id:
                return False
            pipe.multi()
            pipe.delete(doc_key, self._keys.llm_connection_by_name(account_id, stored.name),
                        self._keys.llm_connection_stats(connection_id))
            pipe.zrem(self._keys.llm_connections_of_account(account_id), connection_id)
            pipe.srem(self._keys.llm_connection_stats_of_account(account_id), connection_id)
            return True

        return await self._atomic(body, doc_key)

    async def add_stats(self, deltas: Mapping[tuple[str, str], ConnectionStats]) -> None:
        if not deltas:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for (account_id, connection_id), delta in deltas.items():
                key = self._keys.llm_connection_stats(connection_id)
                for name in STAT_FIELDS:
                    if amount := getattr(delta, name):
                        pipe.hincrby(key, name, amount)
                pipe.sadd(self._keys.llm_connection_stats_of_account(account_id), connection_id)
            await pipe.execute()

    async def stats(self, account_id: str) -> dict[str, ConnectionStats]:
        ids = sorted(cast(set[str], await self._redis.smembers(self._keys.llm_connection_stats_of_account(account_id))))
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for connection_id in ids:
                pipe.hmget(self._keys.llm_connection_stats(connection_id), STAT_FIELDS)
            rows = await pipe.execute()
        return {
            connection_id: _counters(row)
            for connection_id, row in zip(ids, rows, strict=True)
        }


def _counters(row: list[str | None]) -> ConnectionStats:
    return ConnectionStats(**{name: int(value or 0) for name, value in zip(STAT_FIELDS, row, strict=True)})


@_reachable_methods
class RedisPolicies(_Repo, PolicyRepository):
    async def create(self, policy: Policy) -> None:
        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.policy(policy.id), _dump(policy))
            pipe.zadd(self._keys.policies_of_account(policy.account_id), {policy.id: _score(policy.created_at)})

        await self._insert([self._keys.policy(policy.id)], f"policy {policy.id}", writes)

    async def get(self, account_id: str, policy_id: str) -> Policy | None:
        policy = await self._get(Policy, self._keys.policy(policy_id))
        return policy if policy is not None and policy.account_id == account_id else None

    async def list_for_account(self, account_id: str) -> list[Policy]:
        return await self._indexed(Policy, self._keys.policies_of_account(account_id), self._keys.policy)

    async def change(self, account_id: str, policy_id: str, change: PolicyChange) -> Policy | None:
        return await self._modify(Policy, self._keys.policy(policy_id), lambda stored: (
            stored.model_copy(update=dict(change.values)) if stored.account_id == account_id else None))

    async def delete(self, account_id: str, policy_id: str) -> bool:
        doc_key = self._keys.policy(policy_id)

        async def body(pipe: Pipeline) -> bool:
            stored = await _fetch(pipe, Policy, doc_key)
            if stored is None or stored.account_id != account_id:
                return False
            pipe.multi()
            pipe.delete(doc_key)
            pipe.zrem(self._keys.policies_of_account(account_id), policy_id)
            return True

        return await self._atomic(body, doc_key)

    async def add_violations(self, violations: Sequence[Violation]) -> None:
        if not violations:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for violation in violations:
                pipe.set(self._keys.violation(violation.id), _dump(violation))
                pipe.zadd(self._keys.violations_of_account(violation.account_id),
                          {violation.id: _score(violation.timestamp)})
            await pipe.execute()

    async def violations(self, account_id: str, query: ViolationQuery) -> tuple[list[Violation], int]:
        """The time range from the index; the other filters in Python over that range."""
        high = "+inf" if query.until is None else _score(query.until)
        low = "-inf" if query.since is None else _score(query.since)
        ids = cast(list[str], await self._redis.zrevrangebyscore(self._keys.violations_of_account(account_id),
                                                                 high, low))
        if not ids:
            return [], 0
        raws = cast(list[str | None], await self._redis.mget([self._keys.violation(i) for i in ids]))
        loaded = load_many(Violation, (raw for raw in raws if raw is not None))
        matching = sorted((v for v in loaded if query.matches(v)), key=lambda v: (v.timestamp, v.id), reverse=True)
        return matching[query.skip:query.skip + query.take], len(matching)
