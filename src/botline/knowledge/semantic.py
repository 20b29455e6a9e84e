"""The semantic half of a search: the terms embedded in one call, each searched in the vector index.

A vector hit counts only while its document exists with the version the vector was made from (and is
not Cancelled), checked against the Store on every search: a deleted or replaced document is never
returned, whatever the index still holds. Vectors whose document is gone are removed on the way (a
sync import deletes documents without naming them). Each term's hits form one ranking, scored by the
cosine similarity (negative as 0), which knowledge/search.py fuses with the lexical rankings. When the
embedding provider fails the search goes on lexically (logged). Query embeddings made for a gateway's
turn are recorded in that gateway's usage, like rewrite calls.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from botline.domain.clock import Clock
from botline.domain.knowledge import IndexState, LexicalHit
from botline.domain.usage import UsageRecord
from botline.gateway.accounting import UsageRecorder
from botline.knowledge.embeddings import Embedder, EmbeddingError
from botline.store.base import Store, StoreError
from botline.store.vectors import VectorHit, VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UsageScope:
    """Whose usage a query embedding is: the gateway (and session) of the turn that searched."""

    gateway_id: str
    session_id: str | None = None


@dataclass(frozen=True)
class Semantic:
    embedder: Embedder
    index: VectorIndex


class SemanticSearch:
    def __init__(self, store: Store, semantic: Semantic, *, usage: UsageRecorder | None = None,
                 clock: Clock | None = None) -> None:
        self._store = store
        self._embedder = semantic.embedder
        self._index = semantic.index
        self._usage = usage
        self._clock = clock

    async def rankings(
        self, account_id: str, collection_ids: Sequence[str], terms: Sequence[str], *, limit: int,
        scope: UsageScope | None = None,
    ) -> list[list[LexicalHit]]:
        """One ranking per term (empty when the provider failed), best first."""
        try:
            embedded = await self._embedder.embed(terms)
        except EmbeddingError as exc:
            log.warning("semantic search skipped, lexical only: %s", exc)
            self._record(account_id, scope, tokens=0, error=True)
            return [[] for _ in terms]
        self._record(account_id, scope, tokens=embedded.tokens, error=False)
        try:
            found = [await self._index.search(collection_ids, vector, self._embedder.model_id, top=limit)
                     for vector in embedded.vectors]
        except StoreError as exc:
            log.warning("vector index not searched, lexical only: %s", exc)
            return [[] for _ in terms]
        live = await self._live(account_id, [hit for hits in found for hit in hits])
        return [[LexicalHit(h.document_id, h.score) for h in hits if (h.document_id, h.version) in live]
                for hits in found]

    async def forget(self, collection_id: str, document_ids: Sequence[str] | None) -> None:
        """Removes vectors; a failure is only logged (searches drop such hits, and remove them then)."""
        try:
            if document_ids is None:
                await self._index.drop(collection_id)
            else:
                await self._index.delete(collection_id, document_ids)
        except StoreError as exc:
            log.warning("vectors of collection %s not removed yet: %s", collection_id, exc)

    async def _live(self, account_id: str, hits: Sequence[VectorHit]) -> set[tuple[str, int]]:
        """(id, version) of the hits whose document is current; vectors of deleted documents removed."""
        wanted = list(dict.fromkeys(h.document_id for h in hits))
        documents = {d.id: d for d in await self._store.documents.many(account_id, wanted)}
        gone: dict[str, list[str]] = defaultdict(list)
        for hit in hits:
            if hit.document_id not in documents:
                gone[hit.collection_id].append(hit.document_id)
        for collection_id, ids in gone.items():
            await self._index.delete(collection_id, list(dict.fromkeys(ids)))
        return {(d.id, d.version) for d in documents.values() if d.state is not IndexState.CANCELLED}

    def _record(self, account_id: str, scope: UsageScope | None, *, tokens: int, error: bool) -> None:
        if scope is None or self._usage is None or self._clock is None:
            return
        self._usage.add(UsageRecord(account_id=account_id, gateway_id=scope.gateway_id,
                                    model=self._embedder.model_name, session_id=scope.session_id,
                                    input_tokens=tokens, error=error, at=self._clock.now()))
