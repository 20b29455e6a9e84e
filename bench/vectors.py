"""Semantic search (issue 11): local-model embedding rate, vector search and hybrid query latency, memory.

1. Embedding: the local model (all-MiniLM-L6-v2 on onnxruntime) over EMBED_DOCS synthetic documents of
   200 English words (~230 word pieces) and of 60, float32 (the default) and int8 weights (`quantized:
   true`), every core, as LocalEmbedder runs it (runs of at most 1,024 padded pieces, one per core at
   once) beside `Before`, the way it ran until then (one run of 32 texts over every core), alternating,
   REPEATS times each: the median and the range. Then one short query's embedding latency, both ways.
2. Vector search over DOCS unit vectors of 384 dimensions (random: the cost of a search does not depend on
   what the vectors mean), written through the Store (`vectors.upsert`, SQLite): the embedded index's
   search (generation check, cached matrix, scoring in a worker thread) side by side with a bare numpy
   brute force over the same matrix, and with qdrant-client's local mode (`--qdrant`, in-memory; slow to
   fill). RSS is read before and after the matrix is built.
3. Hybrid: DOCS documents of 200 words indexed lexically by botline's Indexer, their vectors written as in
   2, then QUERIES searches through `KnowledgeSearch.search` with the local model embedding each query
   (as /api/v1/query runs them, minus HTTP), lexical-only searches of the same queries beside them.

    .venv/bin/python -m bench.vectors [--docs 100000] [--queries 200] [--qdrant]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import tempfile
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np

from bench.knowledge import Corpus
from botline.config import KnowledgeSettings
from botline.domain.clock import SystemClock
from botline.domain.knowledge import BrowseQuery, Collection, DocumentOrder, DocumentWrite, LabelChanges
from botline.knowledge import minilm_graph
from botline.knowledge.indexer import Indexer
from botline.knowledge.local_embeddings import DIMENSIONS, MAX_TOKENS, LocalEmbedder, archive_path
from botline.knowledge.search import KnowledgeSearch, SearchRequest
from botline.knowledge.semantic import Semantic, SemanticSearch
from botline.metrics import Metrics
from botline.store import Store, open_store
from botline.store.vectors import VectorEntry

EMBED_DOCS = 64
REPEATS = 3
QUERY = "refund policy for damaged items"
ENGLISH = ["the", "customer", "may", "return", "any", "product", "within", "thirty", "days", "of", "delivery",
           "with", "original", "receipt", "and", "refunds", "are", "paid", "to", "card", "used", "for",
           "purchase", "while", "store", "credit", "never", "expires"]
"""Words of the embedding documents (real English words: about one word piece each)."""
BATCH = 1_000
ACCOUNT = "bench"



@dataclass
class Result:
    documents: int
    embedding_docs_per_second: dict[str, float] = field(default_factory=dict)
    embedding_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    query_embedding_ms: dict[str, float] = field(default_factory=dict)
    vector_search_p50_ms: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)
    hybrid_p50_ms: float = 0.0
    hybrid_p95_ms: float = 0.0
    lexical_p50_ms: float = 0.0
    query_embedding_p50_ms: float = 0.0
    seconds: float = 0.0


def rss_mb() -> float:
    """The process's resident set now (not the peak): /proc/self/statm."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def p50(timings: list[float]) -> float:
    return round(statistics.median(timings), 2)


class Before:
    """The local model as it ran before runs in parallel (kept to compare): the same graph in one
    onnxruntime session over every core, texts sorted by length in runs of 32 padded to the longest."""

    def __init__(self, threads: int, *, quantized: bool) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        with zipfile.ZipFile(archive_path()) as files:
            config = json.loads(files.read("config.json"))
            weights = minilm_graph.read_safetensors(files.read("model.safetensors"))
            self.tokenizer = Tokenizer.from_str(files.read("tokenizer.json").decode())
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = minilm_graph.build(weights, config)
        self.session = onnxruntime.InferenceSession(minilm_graph.quantize(model) if quantized else model, options,
                                                    providers=["CPUExecutionProvider"])

    def embed(self, texts: list[str]) -> None:
        ordered = sorted(texts, key=len)
        for start in range(0, len(ordered), 32):
            encodings = self.tokenizer.encode_batch(ordered[start:start + 32])
            self.session.run(["embeddings"], {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)})


async def embedding_rate(result: Result, rng: random.Random, count: int) -> None:
    threads = os.cpu_count() or 1
    for quantized in (False, True):
        kind = "int8 weights" if quantized else "float32"
        embedder = LocalEmbedder(batch_size=32, threads=threads, quantized=quantized)
        before = Before(threads, quantized=quantized)
        for length in (200, 60):
            texts = [" ".join(rng.choices(ENGLISH, k=length)) for _ in range(count)]
            await embedder.embed(texts)  # loads the model, warms the session at these shapes
            before.embed(texts)
            rates: dict[str, list[float]] = {"": [], "before: ": []}
            for _ in range(REPEATS):
                started = time.perf_counter()
                await embedder.embed(texts)
                rates[""].append(count / (time.perf_counter() - started))
                started = time.perf_counter()
                await asyncio.to_thread(before.embed, texts)
                rates["before: "].append(count / (time.perf_counter() - started))
            for prefix, values in rates.items():
                key = f"{prefix}{length} words, {kind}, {threads} threads"
                result.embedding_docs_per_second[key] = round(statistics.median(values), 1)
                result.embedding_range[key] = (round(min(values), 1), round(max(values), 1))
        timings: dict[str, list[float]] = {kind: [], f"before: {kind}": []}
        for _ in range(50):
            begin = time.perf_counter()
            await embedder.embed([QUERY])
            timings[kind].append((time.perf_counter() - begin) * 1000)
            begin = time.perf_counter()
            await asyncio.to_thread(before.embed, [QUERY])
            timings[f"before: {kind}"].append((time.perf_counter() - begin) * 1000)
        result.query_embedding_ms.update({k: p50(v) for k, v in timings.items()})
        await embedder.close()


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIMENSIONS), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def write_vectors(store: Store, collection_id: str, ids: list[str], matrix: np.ndarray, model_id: str) -> None:
    for start in range(0, len(ids), BATCH):
        await store.vectors.upsert(model_id, [
            VectorEntry(ACCOUNT, collection_id, ids[i], 1, matrix[i])
            for i in range(start, min(len(ids), start + BATCH))
        ])


async def vector_search(result: Result, store: Store, collection_id: str, matrix: np.ndarray, model_id: str,
                        queries: np.ndarray, with_qdrant: bool) -> None:
    result.rss_mb["before matrix"] = round(rss_mb())
    await store.vectors.search([collection_id], queries[0], model_id, top=32)  # builds the cached matrix
    result.rss_mb["after matrix"] = round(rss_mb())
    timings = []
    for q in queries:
        begin = time.perf_counter()
        await store.vectors.search([collection_id], q, model_id, top=32)
        timings.append((time.perf_counter() - begin) * 1000)
    result.vector_search_p50_ms["embedded index (Store + cached matrix)"] = p50(timings)
    timings = []
    for q in queries:
        begin = time.perf_counter()
        cosines = matrix @ q
        np.argpartition(-cosines, 31)[:32]
        timings.append((time.perf_counter() - begin) * 1000)
    result.vector_search_p50_ms["numpy brute force (bare matrix)"] = p50(timings)
    if with_qdrant:
        from qdrant_client import AsyncQdrantClient

        from botline.knowledge.qdrant_vectors import QdrantVectors
        qdrant = QdrantVectors(AsyncQdrantClient(location=":memory:"), "bench")
        ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(matrix.shape[0])]
        for start in range(0, len(ids), BATCH):
            await qdrant.upsert(model_id, [VectorEntry(ACCOUNT, collection_id, ids[i], 1, matrix[i])
                                           for i in range(start, min(len(ids), start + BATCH))])
        timings = []
        for q in queries[:50]:
            begin = time.perf_counter()
            await qdrant.search([collection_id], q, model_id, top=32)
            timings.append((time.perf_counter() - begin) * 1000)
        result.vector_search_p50_ms["qdrant-client local mode (in memory)"] = p50(timings)
        await qdrant.close()


async def run(documents: int, queries: int, *, with_qdrant: bool, embed_docs: int = EMBED_DOCS) -> Result:
    began = time.perf_counter()
    rng = random.Random(11)
    corpus = Corpus()  # bench.knowledge's Zipf-weighted vocabulary
    result = Result(documents=documents)
    result.rss_mb["start"] = round(rss_mb())
    await embedding_rate(result, rng, embed_docs)
    numbers = np.random.default_rng(11)
    embedder = LocalEmbedder(batch_size=32, threads=0)
    with tempfile.TemporaryDirectory() as folder:
        async with await open_store(f"sqlite:///{folder}/bench.db") as store:
            collection = Collection(account_id=ACCOUNT, name="bench")
            await store.collections.create(collection)
            indexer = Indexer(store, SystemClock(), KnowledgeSettings(index_batch=BATCH), Metrics())
            for start in range(0, documents, BATCH):
                writes = [DocumentWrite(name=f"d{i}", contents=corpus.text(200, rng))
                          for i in range(start, min(documents, start + BATCH))]
                await store.documents.write(ACCOUNT, collection.id, writes, now=SystemClock().now(),
                                            labels=LabelChanges.SKIP)
                while await indexer.run_once():
                    pass
            ids = await _ids(store, collection.id)
            matrix = unit_vectors(numbers, len(ids))
            await write_vectors(store, collection.id, ids, matrix, embedder.model_id)
            await vector_search(result, store, collection.id, matrix, embedder.model_id,
                                unit_vectors(numbers, queries), with_qdrant)
            semantic = SemanticSearch(store, Semantic(embedder, store.vectors))
            hybrid, lexical = KnowledgeSearch(store, semantic), KnowledgeSearch(store)
            phrases = [corpus.text(rng.randint(3, 6), rng) for _ in range(queries)]
            await hybrid.search(SearchRequest(account_id=ACCOUNT, collection_ids=[collection.id], terms=[phrases[0]]))
            timings: dict[str, list[float]] = {"hybrid": [], "lexical": [], "embed": []}
            for phrase in phrases:
                request = SearchRequest(account_id=ACCOUNT, collection_ids=[collection.id], terms=[phrase],
                                        min_score=0.0)
                for name, search in (("hybrid", hybrid), ("lexical", lexical)):
                    begin = time.perf_counter()
                    await search.search(request)
                    timings[name].append((time.perf_counter() - begin) * 1000)
                begin = time.perf_counter()
                await embedder.embed([phrase])
                timings["embed"].append((time.perf_counter() - begin) * 1000)
            result.hybrid_p50_ms = p50(timings["hybrid"])
            result.hybrid_p95_ms = round(sorted(timings["hybrid"])[int(len(timings["hybrid"]) * 0.95)], 2)
            result.lexical_p50_ms = p50(timings["lexical"])
            result.query_embedding_p50_ms = p50(timings["embed"])
    await embedder.close()
    result.rss_mb["peak"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result.seconds = round(time.perf_counter() - began, 1)
    return result


async def _ids(store: Store, collection_id: str) -> list[str]:
    found: list[str] = []
    while True:
        page = await store.documents.browse(ACCOUNT, collection_id, BrowseQuery(
            order=DocumentOrder.CREATED_ASC, offset=len(found), limit=10_000))
        found += [d.id for d in page]
        if len(page) < 10_000:
            return found


def table(result: Result) -> str:
    lines = [f"Semantic search, {result.documents:,} documents x {DIMENSIONS} dimensions (SQLite store)", "",
             "| measure | value |", "| --- | --- |"]
    lines += [f"| local embedding, {k} | {v} docs/s ({low}–{high}) |"
              for (k, v), (low, high) in zip(result.embedding_docs_per_second.items(), result.embedding_range.values(),
                                             strict=True)]
    lines += [f"| one short query's embedding p50, {k} | {v} ms |" for k, v in result.query_embedding_ms.items()]
    lines += [f"| vector search p50, {k} | {v} ms |" for k, v in result.vector_search_p50_ms.items()]
    hybrid = f"{result.hybrid_p50_ms} / {result.hybrid_p95_ms} ms"
    lines += [f"| hybrid query p50 / p95 (query embedding included) | {hybrid} |",
              f"| of which query embedding p50 | {result.query_embedding_p50_ms} ms |",
              f"| lexical query p50 (same queries) | {result.lexical_p50_ms} ms |"]
    lines += [f"| RSS {k} | {v} MB |" for k, v in result.rss_mb.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--embed-docs", type=int, default=EMBED_DOCS)
    parser.add_argument("--qdrant", action="store_true")
    args = parser.parse_args()
    print(table(asyncio.run(run(args.docs, args.queries, with_qdrant=args.qdrant, embed_docs=args.embed_docs))))


if __name__ == "__main__":
    main()
