"""The vector index: document vectors per collection, searched by cosine similarity.

One interface, three backends: the Store's own (SQLite table or Redis hashes, searched in memory by
store/vector_cache.py) and Qdrant (knowledge/qdrant_vectors.py). Each collection's vectors come from
one embedding model: a write from another model first drops the collection's old vectors, and a search
with another model's query vector finds nothing in it (lexical search goes on meanwhile). A vector
carries its document's version; callers drop hits whose document is gone or has another version
(knowledge/search.py), so a deleted or replaced document is never returned even before its vector goes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class VectorEntry:
    account_id: str
    collection_id: str
    document_id: str
    version: int
    vector: Vector
    """Unit length (knowledge/embeddings.py)."""


@dataclass(frozen=True)
class VectorHit:
    collection_id: str
    document_id: str
    version: int
    score: float
    """The cosine similarity, negative values as 0: 0–1."""


def score(cosine: float) -> float:
    """The 0–1 score of a cosine similarity (opposite directions are as unrelated as orthogonal ones)."""
    return min(1.0, max(0.0, cosine))


class VectorIndex(ABC):
    @abstractmethod
    async def upsert(self, model_id: str, entries: Sequence[VectorEntry]) -> None:
        """Writes the vectors `model_id` made, replacing each document's older version (a vector of an
        older version than the stored one is ignored); a collection's vectors of another model go first."""

    @abstractmethod
    async def delete(self, collection_id: str, document_ids: Sequence[str]) -> None: ...

    @abstractmethod
    async def drop(self, collection_id: str) -> None:
        """Removes every vector of the collection."""

    @abstractmethod
    async def count(self, collection_id: str, model_id: str) -> int:
        """Vectors `model_id` made in the collection (0 when they come from another model)."""

    @abstractmethod
    async def search(
        self, collection_ids: Sequence[str], vector: Vector, model_id: str, *, top: int
    ) -> list[VectorHit]:
        """The `top` most similar vectors of the collections (those of `model_id`), best first."""

    @abstractmethod
    async def close(self) -> None:
        """Releases clients; idempotent."""
