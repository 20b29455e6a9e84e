"""The vector index on Qdrant (`knowledge.vector_store: qdrant`), through qdrant-client.

One Qdrant collection per botline collection and embedding model, named `{prefix}_{collection}_{model}`
(the model part a hash of its id), cosine distance; a point's id is the document's id and its payload
the document's version. Vectors of another model live in another Qdrant collection: the first write
with a new model deletes the old ones, and a search only reads the configured model's. Qdrant is
infrastructure the operator runs (like the Store's Redis), so the client talks to it directly, not
through the egress layer. Without `knowledge.qdrant.url`, qdrant-client's local mode keeps the points
in `knowledge.qdrant.path` (one process; for trying Qdrant out, not for replicas).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from itertools import groupby

from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from botline.store.base import StoreUnavailable
from botline.store.vectors import Vector, VectorEntry, VectorHit, VectorIndex, score


@contextlib.asynccontextmanager
async def _reached() -> AsyncIterator[None]:
    """Qdrant's failures (HTTP, gRPC, its local mode's ValueError) as StoreUnavailable: the indexer pauses
    and retries, a search goes on lexically."""
    try:
        yield
    except Exception as exc:
        raise StoreUnavailable(f"Qdrant: {type(exc).__name__}: {exc}") from exc


class QdrantVectors(VectorIndex):
    def __init__(self, client: AsyncQdrantClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._ready: set[str] = set()
        """Qdrant collections this process created or found (and whose older models it removed)."""

    def _name(self, collection_id: str, model_id: str) -> str:
        return f"{self._family(collection_id)}{hashlib.sha256(model_id.encode()).hexdigest()[:16]}"

    def _family(self, collection_id: str) -> str:
        return f"{self._prefix}_{collection_id}_"

    async def _names_of(self, collection_id: str) -> list[str]:
        family = self._family(collection_id)
        return [c.name for c in (await self._client.get_collections()).collections if c.name.startswith(family)]

    async def _prepare(self, collection_id: str, model_id: str, dimensions: int) -> str:
        name = self._name(collection_id, model_id)
        if name in self._ready:
            return name
        for other in await self._names_of(collection_id):
            if other != name:
                await self._client.delete_collection(other)
        if not await self._client.collection_exists(name):
            await self._client.create_collection(
                name, vectors_config=models.VectorParams(size=dimensions, distance=models.Distance.COSINE))
        self._ready.add(name)
        return name

    async def upsert(self, model_id: str, entries: Sequence[VectorEntry]) -> None:
        async with _reached():
            for collection_id, group in groupby(sorted(entries, key=lambda e: e.collection_id),
                                                key=lambda e: e.collection_id):
                rows = list(group)
                points = [models.PointStruct(id=e.document_id, vector=e.vector.tolist(),
                                             payload={"version": e.version}) for e in rows]
                name = await self._prepare(collection_id, model_id, int(rows[0].vector.shape[0]))
                try:
                    await self._client.upsert(name, points=points)
                except (UnexpectedResponse, ValueError):  # dropped by another replica since: made again, once
                    self._ready.discard(name)
                    await self._client.upsert(
                        await self._prepare(collection_id, model_id, int(rows[0].vector.shape[0])), points=points)

    async def delete(self, collection_id: str, document_ids: Sequence[str]) -> None:
        if not document_ids:
            return
        async with _reached():
            for name in await self._names_of(collection_id):
                await self._client.delete(name, points_selector=models.PointIdsList(points=list(document_ids)))

    async def drop(self, collection_id: str) -> None:
        async with _reached():
            for name in await self._names_of(collection_id):
                await self._client.delete_collection(name)
                self._ready.discard(name)

    async def count(self, collection_id: str, model_id: str) -> int:
        name = self._name(collection_id, model_id)
        async with _reached():
            if not await self._client.collection_exists(name):
                return 0
            return (await self._client.count(name, exact=True)).count

    async def search(
        self, collection_ids: Sequence[str], vector: Vector, model_id: str, *, top: int
    ) -> list[VectorHit]:
        hits: list[VectorHit] = []
        query = vector.tolist()
        async with _reached():
            for collection_id in dict.fromkeys(collection_ids):
                name = self._name(collection_id, model_id)
                if not await self._client.collection_exists(name):  # another replica may have dropped it
                    continue
                answer = await self._client.query_points(name, query=query, limit=top, with_payload=["version"])
                hits.extend(VectorHit(collection_id, str(p.id), int((p.payload or {}).get("version", 0)),
                                      score(p.score)) for p in answer.points)
        hits.sort(key=lambda h: (-h.score, h.document_id))
        return hits[:top]

    async def close(self) -> None:
        await self._client.close()
