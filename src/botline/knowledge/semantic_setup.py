"""Semantic search as configured: the embedding provider (`knowledge.embeddings`) and the vector index
(`knowledge.vector_store`), or None when embeddings are off or the local model is not installed (then
retrieval is lexical only, and the log says why)."""

from __future__ import annotations

import logging

from botline.config import KnowledgeSettings
from botline.gateway.llm import ClientPool
from botline.knowledge.embeddings import Embedder, EmbeddingError
from botline.knowledge.local_embeddings import LocalEmbedder
from botline.knowledge.remote_embeddings import RemoteEmbedder
from botline.knowledge.semantic import Semantic
from botline.store.base import Store
from botline.store.vectors import VectorIndex

log = logging.getLogger(__name__)
IN_MEMORY = ":memory:"


def embedder(settings: KnowledgeSettings, clients: ClientPool) -> Embedder | None:
    config = settings.embeddings
    if config.provider == "off":
        return None
    if config.provider == "openai":
        return RemoteEmbedder(config, clients)
    try:
        return LocalEmbedder(batch_size=config.batch_size, threads=config.threads, quantized=config.quantized)
    except EmbeddingError as exc:
        log.warning("semantic search off: %s", exc)
        return None


def vector_index(settings: KnowledgeSettings, store: Store) -> VectorIndex:
    if settings.vector_store == "embedded":
        return store.vectors
    from qdrant_client import AsyncQdrantClient  # only when configured: it takes a while to import

    from botline.knowledge.qdrant_vectors import QdrantVectors

    qdrant = settings.qdrant
    if qdrant.url:
        key = qdrant.api_key.get_secret_value() if qdrant.api_key else None
        client = AsyncQdrantClient(url=qdrant.url, api_key=key)
    elif qdrant.path == IN_MEMORY:
        client = AsyncQdrantClient(location=IN_MEMORY)
    else:
        client = AsyncQdrantClient(path=qdrant.path)
    return QdrantVectors(client, qdrant.prefix)


def semantic(settings: KnowledgeSettings, store: Store, clients: ClientPool) -> Semantic | None:
    found = embedder(settings, clients)
    return None if found is None else Semantic(found, vector_index(settings, store))


async def close(semantic: Semantic | None) -> None:
    if semantic is not None:
        await semantic.embedder.close()
        await semantic.index.close()
