"""Lexical knowledge search (issue 11 §5): ingest rate, search latency and memory, beside bm25s.

One corpus, generated the same way in each part: DOCS synthetic documents of WORDS words drawn from a
Zipf-like vocabulary of Portuguese-looking words (accents, plural endings), and QUERIES queries of 3
to 6 words from the same distribution (so most hold several of the commonest words: the hard case).
Each part runs in a process of its own, so its memory is its own:

- botline: the documents are written through the Store (`documents.write`, batches of 1,000) and
  indexed by botline's own Indexer (`run_once` until the queue is empty: durable queue, analysis in a
  worker process as the server does it, or in a thread with `--thread` beside it, each chunk's log rows
  written in one transaction); ingest = documents / that time. Then the
  store is opened again, as a replica after a restart: its first search reads the index from the
  lexical log (timed on its own), and each query goes through `KnowledgeSearch.search` (top 5, so the
  best 32 per term; analysis, the index, fetching the documents) as /api/v1/query runs it, minus HTTP.
- bm25s (the peer, numpy sparse matrices, in memory, nothing durable): the same documents analysed
  by botline's `analysis.terms` (not timed: the index build alone is), `BM25.index`, then
  `retrieve(k=32)` on the same analysed queries.

Memory: the process's resident set before ingest and after it (for botline after the searches too, which
read the index into memory), current (/proc/self/statm), and for
botline the SQLite file. SQLite by default; `--redis URL` runs botline on Redis instead.

    .venv/bin/python -m bench.knowledge [--docs 100000] [--redis redis://127.0.0.1:6379/0] [--thread] [--no-peer]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

WORDS = 200
VOCABULARY = 20_000
QUERIES = 300
BATCH = 1_000
TOP = 5
PEER_K = 32
"""What botline reads per term for top 5 (search.py: max(32, top × 4))."""
SYLLABLES = ["ca", "pre", "ço", "ção", "men", "to", "ra", "li", "vo", "ne", "de", "sa", "tu", "ões", "ga", "ri"]
PAGE = os.sysconf("SC_PAGE_SIZE")


def vocabulary(rng: random.Random) -> list[str]:
    words = {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(VOCABULARY * 2)}
    return sorted(words)[:VOCABULARY]


class Corpus:
    """The documents and queries, the same in every process (fixed seeds)."""

    def __init__(self) -> None:
        self._rng = random.Random(11)
        self._words = vocabulary(self._rng)
        self._weights = [1 / (rank + 1) for rank in range(len(self._words))]

    def text(self, n: int, rng: random.Random | None = None) -> str:
        return " ".join((rng or self._rng).choices(self._words, self._weights, k=n))

    def queries(self) -> list[str]:
        rng = random.Random(12)
        return [self.text(rng.randint(3, 6), rng) for _ in range(QUERIES)]


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE / 2**20


@dataclass
class Part:
    name: str
    documents: int
    ingest_per_second: float
    search_p50_ms: float
    search_p95_ms: float
    rss_before_mb: float
    rss_after_mb: float
    on_disk_mb: float | None = None
    note: str = ""
    first_search_s: float | None = None
    """botline: the first search after the store is opened again, which reads the index from the log."""


def _percentiles(timings: list[float]) -> tuple[float, float]:
    timings.sort()
    return round(statistics.median(timings), 2), round(timings[int(len(timings) * 0.95)], 2)


async def _botline(documents: int, url: str | None, processes: int) -> Part:
    from botline.config import KnowledgeSettings
    from botline.domain.clock import SystemClock
    from botline.domain.knowledge import Collection, DocumentWrite, LabelChanges
    from botline.knowledge.analysis_pool import Analysis, worker_pool
    from botline.knowledge.indexer import Indexer
    from botline.knowledge.search import KnowledgeSearch, SearchRequest
    from botline.metrics import Metrics
    from botline.store import open_store

    corpus, clock, prefix = Corpus(), SystemClock(), f"bench-kb-{time.time_ns()}"
    before = rss_mb()
    with tempfile.TemporaryDirectory() as folder:
        location = url or f"sqlite:///{folder}/bench.db"
        store = await open_store(location, redis_prefix=prefix)
        async with store:
            collection = Collection(account_id="bench", name="bench")
            await store.collections.create(collection)
            settings = KnowledgeSettings(index_batch=BATCH, analysis_processes=processes)
            pool = worker_pool(settings)
            async with pool or contextlib.nullcontext():
                indexer = Indexer(store, clock, settings, Metrics(), analysis=Analysis(pool))
                spent = 0.0
                for start in range(0, documents, BATCH):
                    writes = [DocumentWrite(name=f"d{i}", contents=corpus.text(WORDS))
                              for i in range(start, min(documents, start + BATCH))]
                    started = time.perf_counter()  # generating the text is not ingest
                    await store.documents.write("bench", collection.id, writes, now=clock.now(),
                                                labels=LabelChanges.SKIP)
                    while await indexer.run_once():
                        pass
                    spent += time.perf_counter() - started
            ingest = documents / spent
        async with await open_store(location, redis_prefix=prefix) as store:  # as a replica after a restart
            search, timings = KnowledgeSearch(store), []
            begin = time.perf_counter()
            await search.search(SearchRequest(account_id="bench", collection_ids=[collection.id], terms=["x"]))
            first_search = time.perf_counter() - begin
            for query in corpus.queries():
                begin = time.perf_counter()
                await search.search(SearchRequest(account_id="bench", collection_ids=[collection.id], terms=[query],
                                                  top=TOP, min_score=0.0))
                timings.append((time.perf_counter() - begin) * 1000)
            after = rss_mb()  # with the index in memory (read from the log by the first search)
            disk = None if url else sum(p.stat().st_size for p in Path(folder).iterdir()) / 2**20
        if url is not None:
            from tests.support.redis_server import delete_prefix
            await delete_prefix(url, prefix)
    p50, p95 = _percentiles(timings)
    name = f"botline ({'Redis' if url else 'SQLite'}{'' if processes else ', analysis in a thread'})"
    return Part(name=name, documents=documents,
                ingest_per_second=round(ingest), search_p50_ms=p50, search_p95_ms=p95, rss_before_mb=round(before),
                rss_after_mb=round(after), on_disk_mb=None if disk is None else round(disk),
                note="durable: store writes, queue, index in transactions", first_search_s=round(first_search, 1))


def _bm25s(documents: int) -> Part:
    import bm25s  # type: ignore[import-untyped]

    from botline.knowledge.analysis import query_terms, terms

    corpus = Corpus()
    before = rss_mb()
    analysed = [terms(corpus.text(WORDS)) for _ in range(documents)]
    started = time.perf_counter()
    index = bm25s.BM25(k1=1.2, b=0.75)
    index.index(analysed, show_progress=False)
    ingest = documents / (time.perf_counter() - started)
    del analysed
    after = rss_mb()
    timings = []
    for query in corpus.queries():
        begin = time.perf_counter()
        index.retrieve([query_terms(query) or ["?"]], k=PEER_K, show_progress=False, n_threads=1)
        timings.append((time.perf_counter() - begin) * 1000)
    p50, p95 = _percentiles(timings)
    return Part(name="bm25s 0.3 (peer)", documents=documents, ingest_per_second=round(ingest), search_p50_ms=p50,
                search_p95_ms=p95, rss_before_mb=round(before), rss_after_mb=round(after),
                note="in memory, nothing durable; index build only (analysis not timed); query analysis timed")


def _child(target: Callable[..., Any], args: tuple[Any, ...], queue: multiprocessing.Queue[Any]) -> None:
    result = target(*args)
    queue.put(asdict(result))


def _isolated(target: Callable[..., Any], *args: Any) -> Part:
    """Runs one part in a fresh process, so each part's memory is its own."""
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[Any] = context.Queue()
    process = context.Process(target=_child, args=(target, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return Part(**result)


def _run_botline(documents: int, url: str | None, processes: int) -> Part:
    return asyncio.run(_botline(documents, url, processes))


@dataclass
class Result:
    documents: int
    words_per_document: int
    queries: int
    parts: list[Part]
    seconds: float


def run(documents: int = 100_000, url: str | None = None, with_peer: bool = True, with_thread: bool = False) -> Result:
    started = time.perf_counter()
    parts = [_isolated(_run_botline, documents, url, 1)]
    if with_thread:
        parts.append(_isolated(_run_botline, documents, url, 0))
    if with_peer:
        parts.append(_isolated(_bm25s, documents))
    return Result(documents=documents, words_per_document=WORDS, queries=QUERIES, parts=parts,
                  seconds=round(time.perf_counter() - started))


def table(result: Result) -> str:
    rows = [f"{result.documents:,} documents of {result.words_per_document} words, {result.queries} queries of 3–6 "
            f"words, top {TOP} (best {PEER_K} per term)\n",
            "| engine | ingest docs/s | first search after start | search p50 | search p95 "
            "| RSS before → after ingest and searches | on disk | |",
            "|---|---|---|---|---|---|---|---|"]
    for p in result.parts:
        disk = "—" if p.on_disk_mb is None else f"{p.on_disk_mb} MB"
        first = "—" if p.first_search_s is None else f"{p.first_search_s} s"
        rows.append(f"| {p.name} | {p.ingest_per_second:,.0f} | {first} | {p.search_p50_ms} ms | {p.search_p95_ms} ms "
                    f"| {p.rss_before_mb} → {p.rss_after_mb} MB | {disk} | {p.note} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--redis", default=None, help="run botline on this Redis instead of SQLite")
    parser.add_argument("--no-peer", action="store_true", help="leave bm25s out")
    parser.add_argument("--thread", action="store_true",
                        help="also run botline with analysis in a thread (knowledge.analysis_processes: 0)")
    args = parser.parse_args()
    print(table(run(args.docs, args.redis, with_peer=not args.no_peer, with_thread=args.thread)))


if __name__ == "__main__":
    main()
