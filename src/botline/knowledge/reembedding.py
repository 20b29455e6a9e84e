"""Re-embedding after the embedding model or its dimensions change (or embeddings are turned on).

At start, each collection holding fewer vectors of the configured model than Indexed documents is
queued again whole (`requeue`: the text stays searchable lexically meanwhile). The indexer then gives
every document a vector of the new model; the collection's first such vector drops its old model's
(store/vectors.py), so semantic search of that collection covers only re-embedded documents until the
queue is drained, and never mixes two models' vectors. Every replica runs this; a collection queued
twice is indexed once (the queue holds one entry per document).
"""

from __future__ import annotations

import logging

from botline.domain.clock import Clock
from botline.knowledge.semantic import Semantic
from botline.store.base import Store

log = logging.getLogger(__name__)


async def requeue_stale(store: Store, semantic: Semantic, clock: Clock) -> int:
    """Queues the collections whose vectors are missing or of another model; how many documents."""
    queued = 0
    model_id = semantic.embedder.model_id
    for account in await store.accounts.list():
        for collection in await store.collections.list_for_account(account.id):
            indexed = (await store.collections.state(collection.id)).indexed
            if indexed and await semantic.index.count(collection.id, model_id) < indexed:
                count = await store.documents.requeue(account.id, collection.id, now=clock.now())
                log.info("collection %s queued for re-embedding with %s (%d documents)", collection.id, model_id,
                         count)
                queued += count
    return queued
