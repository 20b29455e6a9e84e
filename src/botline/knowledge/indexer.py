"""The indexer: a background task on every replica that drains the Store's indexing queue.

A write publishes `KNOWLEDGE_QUEUED` on the signal bus, which wakes the indexer on every replica;
each claims a batch (the Store gives each document to one of them) and indexes it in chunks: the texts
are analysed in a worker process (knowledge/analysis_pool.py), embedded when embeddings are on
(knowledge/embeddings.py) with their vectors written to the vector index, then the chunk's log rows are
written: a document is Indexed once both are written, and a chunk is written while the next is analysed.
It also looks every `index_poll_seconds`, which picks up what a replica that died left behind once its
lease ended, and documents whose retry is due. A failure is retried with backoff up to
`index_max_attempts`, then the document is Cancelled with the reason (an embedding provider that fails
fails the chunk's documents that way; the vector index unreachable pauses the indexer like the Store).
At start, collections whose vectors the configured model did not make are queued again (knowledge/reembedding.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta

from botline.config import KnowledgeSettings
from botline.domain.clock import Clock
from botline.domain.knowledge import IndexedText, KnowledgeDocument
from botline.knowledge.analysis_pool import CHUNK, Analysis, Row
from botline.knowledge.embeddings import EmbeddingError
from botline.knowledge.reembedding import requeue_stale
from botline.knowledge.semantic import Semantic
from botline.metrics import Metrics
from botline.store.base import Store, StoreError
from botline.store.vectors import VectorEntry

log = logging.getLogger(__name__)

KNOWLEDGE_QUEUED = "knowledge.queued"
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 600.0
STORE_ERROR_PAUSE = 1.0


def retry_delay(attempt: int) -> timedelta:
    """5 s, 10 s, 20 s... up to 10 minutes."""
    return timedelta(seconds=min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1)))


class Indexer:
    def __init__(self, store: Store, clock: Clock, settings: KnowledgeSettings, metrics: Metrics, *,
                 semantic: Semantic | None = None, analysis: Analysis | None = None) -> None:
        self._store = store
        self._analysis = analysis or Analysis()
        self._semantic = semantic
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._store.signals.subscribe(KNOWLEDGE_QUEUED, self._on_signal)
        try:
            if queued := await self._store.documents.reindex_legacy(self._clock.now()):
                log.info("%d documents queued to be indexed again (the lexical index changed form)", queued)
        except StoreError as exc:
            log.warning("could not look for documents indexed in an older form (%s); retried at next start", exc)
        if self._semantic is not None:  # before the first claim: a restarted replica shows them Queued at once
            await self._requeue_stale(self._semantic)
        self._task = asyncio.create_task(self._run(), name="knowledge-indexer")

    async def queued(self) -> None:
        """Wakes every replica's indexer (a lost signal only delays the documents to the next poll)."""
        self._wake.set()
        try:
            await self._store.signals.publish(KNOWLEDGE_QUEUED, "")
        except StoreError as exc:
            log.warning("could not wake the other replicas' indexers (%s); they look on their own", exc)

    async def _requeue_stale(self, semantic: Semantic) -> None:
        try:
            await requeue_stale(self._store, semantic, self._clock)
        except StoreError as exc:
            log.warning("could not look for collections to re-embed (%s); DELETE .../vectors-only does it", exc)

    async def _on_signal(self, payload: str) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except StoreError as exc:
                log.warning("indexer paused: %s", exc)
                await asyncio.sleep(STORE_ERROR_PAUSE)
                continue
            if busy:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.index_poll_seconds)

    async def run_once(self) -> int:
        """Claims and indexes one batch; how many documents it claimed."""
        now = self._clock.now()
        batch = await self._store.documents.claim(now, lease_seconds=self._settings.index_lease_seconds,
                                                  limit=self._settings.index_batch)
        if not batch:
            return 0
        chunks = [batch[start:start + CHUNK] for start in range(0, len(batch), CHUNK)]
        analyses = [asyncio.ensure_future(self._analysis.rows([d.contents for d in chunk])) for chunk in chunks]
        try:
            for chunk, analysis in zip(chunks, analyses, strict=True):
                await self._index(chunk, await analysis)
        finally:  # a Store error stops the batch: its documents are claimed again when their lease ends
            for analysis in analyses:
                analysis.cancel()
        return len(batch)

    async def _index(self, documents: Sequence[KnowledgeDocument], rows: Sequence[Row]) -> None:
        read: list[IndexedText] = []
        analysed: list[KnowledgeDocument] = []
        for document, row in zip(documents, rows, strict=True):
            if isinstance(row, str):
                await self._failed(document, row)
            else:
                read.append(IndexedText(document.id, document.version, row))
                analysed.append(document)
        if self._semantic is not None and analysed:
            try:
                await self._embed(self._semantic, analysed)
            except EmbeddingError as exc:
                for document in analysed:
                    await self._failed(document, f"embedding: {exc}")
                return
        written = await self._store.documents.complete(read, now=self._clock.now())
        self._metrics.documents_indexed("indexed").inc(len(written))

    async def _embed(self, semantic: Semantic, documents: Sequence[KnowledgeDocument]) -> None:
        embedded = await semantic.embedder.embed([d.contents for d in documents])
        await semantic.index.upsert(semantic.embedder.model_id, [
            VectorEntry(d.account_id, d.collection_id, d.id, d.version, vector)
            for d, vector in zip(documents, embedded.vectors, strict=True)
        ])

    async def _failed(self, document: KnowledgeDocument, reason: str) -> None:
        attempt = await self._store.documents.attempts(document.id)
        now = self._clock.now()
        give_up = attempt >= self._settings.index_max_attempts
        retry_at = None if give_up else now + retry_delay(attempt)
        log.warning("document %s not indexed (attempt %d): %s", document.id, attempt, reason)
        if await self._store.documents.fail(document.id, document.version, reason, now=now, retry_at=retry_at):
            self._metrics.documents_indexed("failed" if give_up else "retried").inc()
