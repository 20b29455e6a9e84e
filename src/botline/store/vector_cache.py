"""The embedded vector index's search: each collection's vectors as one float32 matrix per replica.

A collection's matrix is read from the Store once and kept with the collection's generation, a counter
the Store bumps in the same transaction as every write to the collection's vectors. Each search reads
the generations (one small query) and rebuilds only the matrices whose generation moved, so after an
acknowledged write every replica answers from the same vectors. A rebuild tags the matrix with the
generation read before the vectors, so a write landing meanwhile only causes one more rebuild. Scoring
is brute force (one matrix-vector product and a partial sort), exact, in a worker thread past
INLINE_ROWS vectors.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from botline.store.vectors import Vector, VectorHit, VectorIndex, score

INLINE_ROWS = 8_192
"""Vectors scored on the event loop itself (about 0.3 ms for 384 dimensions): a thread hop costs more under
load; bigger searches run in a worker thread."""

Generations = dict[str, tuple[str, int]]
"""collection id -> (model id, generation) of the collections that have vectors (model "" once dropped)."""


@dataclass(frozen=True)
class CollectionMatrix:
    collection_id: str
    generation: int
    ids: list[str]
    versions: npt.NDArray[np.int64]
    matrix: npt.NDArray[np.float32]
    """(documents, dimensions), unit rows."""


class MatrixBuilder:
    """Fills a matrix row by row as the Store streams the vectors (no second copy of them all)."""

    def __init__(self, collection_id: str, expected: int) -> None:
        self._collection_id = collection_id
        self._rows = 0
        self._ids: list[str] = []
        self._versions: list[int] = []
        self._matrix: npt.NDArray[np.float32] | None = None
        self._expected = max(1, expected)

    def add(self, document_id: str, version: int, vector: bytes) -> None:
        row = np.frombuffer(vector, dtype="<f4")
        if self._matrix is None:
            self._matrix = np.empty((self._expected, row.shape[0]), dtype=np.float32)
        elif row.shape[0] != self._matrix.shape[1]:
            return  # another model's length: cannot happen within one collection, never searched if it does
        if self._rows == self._matrix.shape[0]:
            self._matrix = np.concatenate([self._matrix, np.empty_like(self._matrix)])
        self._matrix[self._rows] = row
        self._ids.append(document_id)
        self._versions.append(version)
        self._rows += 1

    def build(self, generation: int) -> CollectionMatrix:
        if self._matrix is None:
            matrix = np.empty((0, 0), dtype=np.float32)
        elif self._rows == self._matrix.shape[0]:
            matrix = self._matrix
        else:
            matrix = self._matrix[:self._rows].copy()  # the doubled-up rows are not kept
        versions = np.array(self._versions, dtype=np.int64)
        return CollectionMatrix(self._collection_id, generation, self._ids, versions, matrix)


def best(matrices: Sequence[CollectionMatrix], vector: Vector, top: int) -> list[VectorHit]:
    """The `top` rows most similar to `vector` across `matrices`, best first (blocking: run in a thread)."""
    candidates: list[VectorHit] = []
    for m in matrices:
        if m.matrix.shape[0] == 0 or m.matrix.shape[1] != vector.shape[0]:
            continue
        cosines = m.matrix @ vector
        k = min(top, cosines.shape[0])
        rows = np.argpartition(-cosines, k - 1)[:k] if k < cosines.shape[0] else np.arange(cosines.shape[0])
        candidates.extend(VectorHit(m.collection_id, m.ids[r], int(m.versions[r]), score(float(cosines[r])))
                          for r in rows)
    candidates.sort(key=lambda h: (-h.score, h.document_id))
    seen: set[str] = set()
    unique = []
    for hit in candidates:  # a Redis scan may give a vector twice
        if hit.document_id not in seen:
            seen.add(hit.document_id)
            unique.append(hit)
    return unique[:top]


class VectorCache:
    """The matrices one replica holds, with a lock per collection so one rebuild serves every waiter."""

    def __init__(self) -> None:
        self._matrices: dict[str, CollectionMatrix] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def current(self, collection_id: str, generation: int) -> CollectionMatrix | None:
        held = self._matrices.get(collection_id)
        return held if held is not None and held.generation == generation else None

    def lock(self, collection_id: str) -> asyncio.Lock:
        return self._locks.setdefault(collection_id, asyncio.Lock())

    def keep(self, collection_id: str, matrix: CollectionMatrix) -> None:
        self._matrices[collection_id] = matrix

    def forget(self, collection_id: str) -> None:
        """A matrix no search can use any more (the collection dropped, or its vectors of another model)."""
        self._matrices.pop(collection_id, None)


class EmbeddedVectors(VectorIndex):
    """The search shared by the Store backends: read generations, rebuild what moved, score in a thread.

    A dropped collection keeps its generation (model "", bumped): a collection that gets vectors again
    never repeats a generation a replica may still hold. A replica lets go of a matrix when a search
    finds its collection dropped or re-embedding (one never searched again stays until restart)."""

    def __init__(self) -> None:
        self._cache = VectorCache()

    @abstractmethod
    async def _generations(self, collection_ids: Sequence[str]) -> Generations: ...

    @abstractmethod
    async def _load(self, collection_id: str) -> CollectionMatrix:
        """The collection's vectors, tagged with the generation read before them."""

    async def _matrix(self, collection_id: str, generation: int) -> CollectionMatrix:
        held = self._cache.current(collection_id, generation)
        if held is not None:
            return held
        async with self._cache.lock(collection_id):
            held = self._cache.current(collection_id, generation)
            if held is None:
                held = await self._load(collection_id)
                self._cache.keep(collection_id, held)
            return held

    async def close(self) -> None:
        """The Store owns the connection; the matrices go with this object."""

    async def search(
        self, collection_ids: Sequence[str], vector: Vector, model_id: str, *, top: int
    ) -> list[VectorHit]:
        wanted = list(dict.fromkeys(collection_ids))
        generations = await self._generations(wanted)
        matrices = []
        for collection_id in wanted:
            model, generation = generations.get(collection_id, ("", 0))
            if model == model_id:
                matrices.append(await self._matrix(collection_id, generation))
            else:
                self._cache.forget(collection_id)
        if not matrices:
            return []
        if sum(m.matrix.shape[0] for m in matrices) <= INLINE_ROWS:
            return best(matrices, vector, top)
        return await asyncio.to_thread(best, matrices, vector, top)
