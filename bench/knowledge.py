"""Lexical knowledge search (issue 11): ingest rate and /query-level search latency on one process.

Synthetic documents of WORDS words drawn from a Zipf-like vocabulary (Portuguese-looking words with
accents and plural forms) are written through the Store (`documents.write`, batches of 1,000) and
indexed by botline's own Indexer (`run_once` until the queue is empty); then QUERIES searches of 3
to 6 words go through `KnowledgeSearch.search` (analysis, BM25, fetching the documents), as
/api/v1/query runs them, minus HTTP. SQLite (FTS5) by default; `--redis URL` for the Redis index.

    .venv/bin/python -m bench.knowledge [--docs 100000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass

from botline.config import KnowledgeSettings
from botline.domain.clock import SystemClock
from botline.domain.knowledge import Collection, DocumentWrite, LabelChanges
from botline.knowledge.indexer import Indexer
from botline.knowledge.search import KnowledgeSearch, SearchRequest
from botline.metrics import Metrics
from botline.store import open_store

WORDS = 200
VOCABULARY = 20_000
QUERIES = 300
BATCH = 1_000
SYLLABLES = ["ca", "pre", "ço", "ção", "men", "to", "ra", "li", "vo", "ne", "de", "sa", "tu", "ões", "ga", "ri"]


def vocabulary(rng: random.Random) -> list[str]:
    words = {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(VOCABULARY * 2)}
    return sorted(words)[:VOCABULARY]


def text(rng: random.Random, words: list[str], weights: list[float], n: int) -> str:
    return " ".join(rng.choices(words, weights, k=n))


@dataclass
class Result:
    documents: int
    ingest_per_second: float
    search_p50_ms: float
    search_p95_ms: float
    rss_mb: float


async def run(documents: int, url: str | None) -> Result:
    rng = random.Random(11)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    with tempfile.TemporaryDirectory() as folder:
        store = await open_store(url or f"sqlite:///{folder}/bench.db", redis_prefix=f"bench-kb-{rng.random()}")
        async with store:
            collection = Collection(account_id="bench", name="bench")
            await store.collections.create(collection)
            indexer = Indexer(store, SystemClock(), KnowledgeSettings(index_batch=BATCH), Metrics())
            started = time.perf_counter()
            for start in range(0, documents, BATCH):
                writes = [DocumentWrite(name=f"d{i}", contents=text(rng, words, weights, WORDS))
                          for i in range(start, min(documents, start + BATCH))]
                await store.documents.write("bench", collection.id, writes, now=SystemClock().now(),
                                            labels=LabelChanges.SKIP)
                while await indexer.run_once():
                    pass
            ingest = documents / (time.perf_counter() - started)
            search = KnowledgeSearch(store)
            timings = []
            for _ in range(QUERIES):
                query = text(rng, words, weights, rng.randint(3, 6))
                begin = time.perf_counter()
                await search.search(SearchRequest(account_id="bench", collection_ids=[collection.id], terms=[query],
                                                  min_score=0.0))
                timings.append((time.perf_counter() - begin) * 1000)
    timings.sort()
    return Result(documents=documents, ingest_per_second=round(ingest),
                  search_p50_ms=round(statistics.median(timings), 2),
                  search_p95_ms=round(timings[int(len(timings) * 0.95)], 2),
                  rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    print(asyncio.run(run(args.docs, args.redis)))


if __name__ == "__main__":
    main()
