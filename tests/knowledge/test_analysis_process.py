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
from botline.knowledge.analysis_pool import analyse
from botline.knowledge.indexer import ANALYSIS_CHUNK, Indexer
from botline.knowledge.search import KnowledgeSearch, SearchRequest
from botline.metrics import Metrics
from botline.store import Store
from tests.knowledge.corpora import ENGLISH, PORTUGUESE

ACCOUNT = "account-analysis"
CLOCK = FrozenClock(datetime(2026, 12, 4, tzinfo=UTC))


async def test_a_worker_process_makes_the_same_rows_as_a_thread() -> None:
    texts = [*PORTUGUESE.values(), *ENGLISH.values(), "健康保险 preços ÇÃO naïve", ""]
    assert await analyse(texts, processes=1) == await analyse(texts, processes=0)


async def test_documents_are_all_indexed_and_found_when_the_worker_is_killed_mid_batch(
    store: Store, caplog: pytest.LogCaptureFixture,
) -> None:
    collection = Collection(account_id=ACCOUNT, name="kill")
    await store.collections.create(collection)
    settings = KnowledgeSettings(index_batch=ANALYSIS_CHUNK * 4)
    indexer = Indexer(store, CLOCK, settings, Metrics())
    first = [DocumentWrite(name=f"warm-{i}", contents=f"warm up document {i}") for i in range(3)]
    await store.documents.write(ACCOUNT, collection.id, first, now=CLOCK.now(), labels=LabelChanges.SKIP)
    while await indexer.run_once():  # starts the worker
        pass
    workers = multiprocessing.active_children()
    assert workers, "the analysis ran in a worker process"
    writes = [DocumentWrite(name=f"doc-{i}", contents=f"parcela número {i} do financiamento {'x' * (i % 7)}")
              for i in range(ANALYSIS_CHUNK * 4)]
    await store.documents.write(ACCOUNT, collection.id, writes, now=CLOCK.now(), labels=LabelChanges.SKIP)
    for worker in workers:
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
    while await indexer.run_once():
        pass
    assert "the analysis process died" in caplog.text
    state = await store.collections.state(collection.id)
    assert (state.indexed, state.queued) == (len(first) + len(writes), 0)
    results = await KnowledgeSearch(store).search(SearchRequest(
        account_id=ACCOUNT, collection_ids=[collection.id], terms=["parcelas 117"], top=1))
    assert [r.document.name for r in results] == ["doc-117"]
