"""Embedding providers: texts in, unit-length float32 vectors out, behind one small interface.

Every provider returns L2-normalised vectors, so a dot product is the cosine. `model_id` names the
model and its dimensions; a stored vector whose model id differs from the configured one is stale
(knowledge/reembedding.py queues its document again).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
"""(texts, dimensions), one unit-length row per text."""


@dataclass(frozen=True)
class Embedded:
    vectors: Matrix
    tokens: int
    """Input tokens the call used (the provider's count, or the local tokenizer's): gateway usage."""


class Embedder(ABC):
    model_id: str
    """The model and its dimensions, e.g. `local:all-MiniLM-L6-v2:384`."""
    model_name: str
    """The name usage records carry."""

    @abstractmethod
    async def embed(self, texts: Sequence[str]) -> Embedded:
        """One vector per text, in order, in batches; raises EmbeddingError when the provider fails."""

    @abstractmethod
    async def close(self) -> None:
        """Releases threads or clients; idempotent."""


class EmbeddingError(Exception):
    """The provider did not give vectors (unreachable, refused, wrong shape)."""


def normalise(vectors: Matrix) -> Matrix:
    """Each row divided by its length (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: Matrix = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit
