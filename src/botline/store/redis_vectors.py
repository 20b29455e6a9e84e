"""The embedded vector index on Redis: per collection a hash of vectors and a hash of its model and generation.

The client decodes answers to str, so a vector is stored as "{version}:{base64 of float32 bytes}". A write
runs as one script (the model check, the version check per document and the generation bump together), so
every replica that reads the new generation reads the new vectors. Searched in memory per replica
(store/vector_cache.py); a matrix is rebuilt by HSCAN, parsed in a worker thread a page at a time.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from itertools import groupby

from redis.asyncio import Redis

from botline.store.keys import RedisKeys
from botline.store.redis_base import _reachable, _reachable_methods, _Repo, _walks
from botline.store.vector_cache import CollectionMatrix, EmbeddedVectors, Generations, MatrixBuilder
from botline.store.vectors import Vector, VectorEntry, VectorHit

PAGE = 2_000
"""Vectors parsed per worker-thread hop while a matrix is rebuilt."""

UPSERT_SCRIPT = """
local model = redis.call('HGET', KEYS[1], 'model')
if model and model ~= ARGV[1] then redis.call('DEL', KEYS[2]) end
for i = 3, #ARGV, 3 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if (not old) or tonumber(string.match(old, '^(%d+):')) <= tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1] .. ':' .. ARGV[i + 2])
  end
end
redis.call('HSET', KEYS[1], 'model', ARGV[1], 'account', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'generation', 1)
"""


def _parse(builder: MatrixBuilder, page: list[tuple[str, str]]) -> None:
    for document_id, value in page:
        version, _, data = value.partition(":")
        builder.add(document_id, int(version), base64.b64decode(data))


@_reachable_methods
class RedisVectors(_Repo, EmbeddedVectors):
    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        _Repo.__init__(self, client, keys)
        EmbeddedVectors.__init__(self)
        self._upsert = self._redis.register_script(UPSERT_SCRIPT)

    async def upsert(self, model_id: str, entries: Sequence[VectorEntry]) -> None:
        for collection_id, group in groupby(sorted(entries, key=lambda e: e.collection_id),
                                            key=lambda e: e.collection_id):
            rows = list(group)
            args: list[str | int] = [model_id, rows[0].account_id]
            for entry in rows:
                args += [entry.document_id, entry.version,
                         base64.b64encode(entry.vector.astype("<f4").tobytes()).decode()]
            await self._upsert(keys=[self._keys.kb_vector_set(collection_id), self._keys.kb_vectors(collection_id)],
                               args=args)

    async def delete(self, collection_id: str, document_ids: Sequence[str]) -> None:
        if not document_ids:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys.kb_vectors(collection_id), *document_ids)
            pipe.hincrby(self._keys.kb_vector_set(collection_id), "generation", 1)
            await pipe.execute()

    async def drop(self, collection_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.kb_vectors(collection_id))
            pipe.hset(self._keys.kb_vector_set(collection_id), "model", "")
            pipe.hincrby(self._keys.kb_vector_set(collection_id), "generation", 1)
            await pipe.execute()

    async def count(self, collection_id: str, model_id: str) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._keys.kb_vector_set(collection_id), "model")
            pipe.hlen(self._keys.kb_vectors(collection_id))
            model, count = await pipe.execute()
        return int(count) if model == model_id else 0

    @_walks
    async def search(
        self, collection_ids: Sequence[str], vector: Vector, model_id: str, *, top: int
    ) -> list[VectorHit]:
        """EmbeddedVectors' search, behind this backend's error mapping."""
        return await EmbeddedVectors.search(self, collection_ids, vector, model_id, top=top)

    @_reachable
    async def _generations(self, collection_ids: Sequence[str]) -> Generations:
        async with self._redis.pipeline(transaction=False) as pipe:
            for collection_id in collection_ids:
                pipe.hmget(self._keys.kb_vector_set(collection_id), "model", "generation")
            answers = await pipe.execute()
        return {c: (model, int(generation)) for c, (model, generation) in zip(collection_ids, answers, strict=True)
                if model is not None and generation is not None}

    async def _load(self, collection_id: str) -> CollectionMatrix:
        key = self._keys.kb_vectors(collection_id)
        generation = await self._redis.hget(self._keys.kb_vector_set(collection_id), "generation")
        builder = MatrixBuilder(collection_id, int(await self._redis.hlen(key)))
        page: list[tuple[str, str]] = []
        async for document_id, value in self._redis.hscan_iter(key, count=PAGE):
            page.append((document_id, value))
            if len(page) >= PAGE:
                await asyncio.to_thread(_parse, builder, page)
                page = []
        await asyncio.to_thread(_parse, builder, page)
        return builder.build(int(generation or 0))
