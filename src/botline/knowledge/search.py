"""Searching collections: several terms as a ranked union, minScore, the reranker, references.

Each term is searched on its own, lexically and, when embeddings are on, semantically
(knowledge/semantic.py): one ranking per term and retriever. A document's score is its best in any
ranking (0–1: normalised BM25, domain/bm25.py, or the cosine similarity, negative as 0). Hits under
`min_score` are dropped from each ranking before the final ordering, which the reranker chooses:
`lexical` by score; `rrf` by reciprocal rank fusion of all the rankings (a document several terms or
both retrievers find rises); `none` in retrieval order (the first term's lexical hits, then its
semantic ones, then the next term's new ones); `smart` (and `@aivax/reflex-v1`, the seed's default
name) is `rrf` when several rankings exist (always, with embeddings on), else `lexical`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from botline.domain.knowledge import KnowledgeDocument, LexicalHit
from botline.knowledge.analysis import query_terms
from botline.knowledge.semantic import SemanticSearch, UsageScope
from botline.store.base import Store

RRF_K = 60
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 32
REFERENCES_MAX = 16
"""Documents sharing a result's __ref returned with it, at most."""


class Reranker(StrEnum):
    LEXICAL = "lexical"
    RRF = "rrf"
    NONE = "none"
    SMART = "smart"

    @classmethod
    def parse(cls, raw: str | None) -> Reranker:
        """The reranker a request names (None: smart); ValueError listing the accepted names otherwise."""
        if raw is None or raw.strip() == "" or raw.strip().lower() == SEED_DEFAULT:
            return cls.SMART
        try:
            return cls(raw.strip().lower())
        except ValueError:
            accepted = ", ".join(r.value for r in cls)
            raise ValueError(f"unknown reranker {raw!r}; accepted values are {accepted} (and {SEED_DEFAULT})") from None


SEED_DEFAULT = "@aivax/reflex-v1"


@dataclass(frozen=True)
class SearchRequest:
    account_id: str
    collection_ids: Sequence[str]
    terms: Sequence[str]
    top: int = 5
    min_score: float = 0.2
    reranker: Reranker = Reranker.SMART
    include_references: bool = False
    usage: UsageScope | None = None
    """The gateway whose turn searches: its query embedding is recorded in its usage."""


@dataclass
class SearchResult:
    document: KnowledgeDocument
    score: float
    references: list[KnowledgeDocument] = field(default_factory=list)


def order(rankings: Sequence[Sequence[LexicalHit]], reranker: Reranker) -> list[tuple[str, float]]:
    """(document id, best score) of every hit in `rankings`, in the reranker's order."""
    best: dict[str, float] = {}
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            best[hit.document_id] = max(best.get(hit.document_id, 0.0), hit.score)
            fused[hit.document_id] = fused.get(hit.document_id, 0.0) + 1 / (RRF_K + rank)
    ids = list(best)
    if reranker is Reranker.SMART:
        reranker = Reranker.RRF if len(rankings) > 1 else Reranker.LEXICAL
    if reranker is Reranker.LEXICAL:
        ids.sort(key=lambda i: -best[i])
    elif reranker is Reranker.RRF:
        ids.sort(key=lambda i: (-fused[i], -best[i]))
    return [(i, best[i]) for i in ids]


class KnowledgeSearch:
    def __init__(self, store: Store, semantic: SemanticSearch | None = None) -> None:
        self._store = store
        self._semantic = semantic

    async def search(self, request: SearchRequest) -> list[SearchResult]:
        """The collections must be the account's (callers check); unknown ones find nothing."""
        limit = max(MIN_CANDIDATES, request.top * CANDIDATES_PER_RESULT)
        # The query embedding (on the model's thread or a remote call) overlaps the lexical searches.
        pending = asyncio.create_task(self._semantic.rankings(
            request.account_id, request.collection_ids, request.terms, limit=limit, scope=request.usage,
        )) if self._semantic is not None and request.terms and request.collection_ids else None
        try:
            lexical = [await self._store.documents.search(request.collection_ids, query_terms(term), limit=limit)
                       for term in request.terms]
        except BaseException:
            if pending is not None:
                pending.cancel()
            raise
        semantic = await pending if pending is not None else None
        rankings: list[list[LexicalHit]] = []
        for index, hits in enumerate(lexical):
            rankings.append([hit for hit in hits if hit.score >= request.min_score])
            if semantic is not None:
                rankings.append([hit for hit in semantic[index] if hit.score >= request.min_score])
        ranked = order(rankings, request.reranker)[:request.top]
        documents = {d.id: d for d in await self._store.documents.many(request.account_id, [i for i, _ in ranked])}
        results = [SearchResult(documents[i], score) for i, score in ranked if i in documents]
        if request.include_references:
            for result in results:
                result.references = await self._references(result.document)
        return results

    async def forget(self, collection_id: str, document_ids: Sequence[str] | None = None) -> None:
        """Frees the vectors of deleted documents (None: of the whole collection). A search never returns
        them anyway (knowledge/semantic.py checks every hit against the Store)."""
        if self._semantic is not None:
            await self._semantic.forget(collection_id, document_ids)

    async def _references(self, document: KnowledgeDocument) -> list[KnowledgeDocument]:
        if document.reference is None:
            return []
        sharing = await self._store.documents.with_reference(document.collection_id, document.reference)
        return [d for d in sharing if d.id != document.id][:REFERENCES_MAX]
