"""The indexer analyses documents in a worker process (knowledge/analysis_pool.py): the index it builds
is the one a thread builds, and a worker that dies mid-batch loses or fails no document."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime

import pytest

from botline.config import KnowledgeSettings
from botline.domain.clock import FrozenClock
from botline.domain.knowledge import Collection, DocumentWrite, LabelChanges
from botline.knowledge.analysis_pool import CHUNK, WORKER_NAME, Analysis, worker_pool
from botline.knowledge.indexer import Indexer
from botline.knowledge.search import KnowledgeSearch, SearchRequest
from botline.metrics import Metrics
from botline.store import Store
from tests.knowledge.corpora import ENGLISH, PORTUGUESE

ACCOUNT = "account-analysis"
CLOCK = FrozenClock(datetime(2026, 12, 4, tzinfo=UTC))
SETTINGS = KnowledgeSettings(index_batch=CHUNK * 4)


async def test_a_worker_process_makes_the_same_rows_as_a_thread() -> None:
    texts = [*PORTUGUESE.values(), *ENGLISH.values(), "健康保险 preços ÇÃO naïve", ""]
    pool = worker_pool(SETTINGS)
    assert pool is not None
    async with pool:
        assert await Analysis(pool).rows(texts) == await Analysis().rows(texts)


async def test_documents_are_all_indexed_and_found_when_the_worker_is_killed_mid_batch(
    store: Store, caplog: pytest.LogCaptureFixture,
) -> None:
    collection = Collection(account_id=ACCOUNT, name="kill")
    await store.collections.create(collection)
    pool = worker_pool(SETTINGS)
    assert pool is not None
    async with pool:
        indexer = Indexer(store, CLOCK, SETTINGS, Metrics(), analysis=Analysis(pool))
        first = [DocumentWrite(name=f"warm-{i}", contents=f"warm up document {i}") for i in range(3)]
        await store.documents.write(ACCOUNT, collection.id, first, now=CLOCK.now(), labels=LabelChanges.SKIP)
        while await indexer.run_once():  # starts the worker
            pass
        workers = [p for p in multiprocessing.active_children() if p.name == WORKER_NAME]
        assert workers, "the analysis ran in a worker process"
        writes = [DocumentWrite(name=f"doc-{i}", contents=f"parcela número {i} do financiamento {'x' * (i % 7)}")
                  for i in range(CHUNK * 4)]
        await store.documents.write(ACCOUNT, collection.id, writes, now=CLOCK.now(), labels=LabelChanges.SKIP)
        for worker in workers:
            assert worker.pid is not None
            os.kill(worker.pid, signal.SIGKILL)
        while await indexer.run_once():
            pass
    assert "died during a job" in caplog.text or "analysed in a thread" in caplog.text
    state = await store.collections.state(collection.id)
    assert (state.indexed, state.queued) == (len(first) + len(writes), 0)
    results = await KnowledgeSearch(store).search(SearchRequest(
        account_id=ACCOUNT, collection_ids=[collection.id], terms=["parcelas 117"], top=1))
    assert [r.document.name for r in results] == ["doc-117"]
