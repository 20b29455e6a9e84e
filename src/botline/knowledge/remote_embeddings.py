"""Embeddings from an OpenAI-compatible `/embeddings` endpoint (OpenAI, Ollama, TEI, vLLM, LM Studio).

Called through the openai SDK on the shared client pool, so the request goes through the egress layer
(operator trust: the operator configured the address, a local server must keep working) and its answer
is capped like every model response. Texts go in batches of `batch_size`; vectors are normalised here
(not every server does), and an answer with the wrong count or mixed lengths is an EmbeddingError.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import openai

from botline.config import EmbeddingsSettings
from botline.egress import Trust
from botline.gateway.llm import ClientPool
from botline.knowledge.embeddings import Embedded, Embedder, EmbeddingError, Matrix, normalise

MAX_TEXT_CHARS = 32_000
"""Characters of one text sent (a document is at most knowledge.max_document_chars anyway)."""


class RemoteEmbedder(Embedder):
    def __init__(self, settings: EmbeddingsSettings, clients: ClientPool) -> None:
        if not settings.base_address or not settings.model:
            raise ValueError("knowledge.embeddings needs base_address and model with provider openai")
        self._base = settings.base_address
        self._key = settings.api_key.get_secret_value() if settings.api_key else None
        self._settings = settings
        self._clients = clients
        self.model_name = settings.model
        origin = hashlib.sha256(self._base.rstrip("/").encode()).hexdigest()[:8]
        self.model_id = f"openai:{origin}:{settings.model}:{settings.dimensions or 'native'}"

    async def embed(self, texts: Sequence[str]) -> Embedded:
        parts: list[Matrix] = []
        tokens = 0
        size = self._settings.batch_size
        for start in range(0, len(texts), size):
            vectors, used = await self._call([t[:MAX_TEXT_CHARS] or " " for t in texts[start:start + size]])
            parts.append(vectors)
            tokens += used
        if not parts:
            return Embedded(np.empty((0, self._settings.dimensions or 0), dtype=np.float32), 0)
        if len({p.shape[1] for p in parts}) != 1:
            raise EmbeddingError(f"{self.model_name}: vectors of different lengths in one answer")
        return Embedded(np.concatenate(parts), tokens)

    async def _call(self, texts: list[str]) -> tuple[Matrix, int]:
        client = self._clients.get(self._base, self._key, Trust.OPERATOR)
        extra = {"dimensions": self._settings.dimensions} if self._settings.dimensions else {}
        try:
            answer = await client.embeddings.create(model=self.model_name, input=texts, encoding_format="float",
                                                    **extra)  # type: ignore[arg-type]
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"{self.model_name}: {type(exc).__name__}: {exc}") from exc
        rows = sorted(answer.data, key=lambda d: d.index)
        if len(rows) != len(texts) or not rows:
            raise EmbeddingError(f"{self.model_name}: {len(rows)} vectors for {len(texts)} texts")
        lengths = {len(r.embedding) for r in rows}
        if len(lengths) != 1 or (self._settings.dimensions and lengths != {self._settings.dimensions}):
            raise EmbeddingError(f"{self.model_name}: vectors of lengths {sorted(lengths)}")
        vectors = normalise(np.array([r.embedding for r in rows], dtype=np.float32))
        used = answer.usage.prompt_tokens if answer.usage is not None else 0
        return vectors, used

    async def close(self) -> None:
        """The SDK client belongs to the shared pool (gateway/llm.py); nothing of its own to release."""
