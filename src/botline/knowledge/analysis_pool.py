"""Analysis for the indexer in a worker process: documents' lexical log rows, made beside the Store's work.

Analysing a 200-word document is ~150 µs of Python. In a thread it holds the GIL against the event loop
(web chat, webhooks) and against the Store's own thread; in a worker process it runs on another core. The
indexer hands a claimed batch over in chunks and writes each chunk while the next is analysed
(knowledge/indexer.py), so ingest goes at the pace of the slower of the two instead of their sum.

The workers are a `WorkerPool` of their own (parsing/pool.py: forked from the forkserver, killed at
shutdown, one time limit per chunk), apart from the file parsers so an upload never waits behind an
import. A worker that dies (killed, out of memory) costs its chunk a thread's pace: the chunk is analysed
in a thread and the next one starts a new worker. A chunk past the time limit fails its documents, which
the indexer retries like any failure. `knowledge.analysis_processes: 0` analyses in a thread.
This module is loaded by the forkserver, so it must not import numpy (the parsers' address-space limit
would count its buffers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from botline.domain.lexical_row import encode
from botline.knowledge.analysis import counted_terms
from botline.parsing.errors import JobTimedOut, ParsingError
from botline.parsing.pool import PoolLimits, WorkerPool

if TYPE_CHECKING:  # the forkserver loads this module: it stays light
    from botline.config import KnowledgeSettings

log = logging.getLogger(__name__)

Row = bytes | str
"""A document's log row, or why it could not be analysed."""

CHUNK = 64
"""Documents analysed per hand-over to a worker: a batch's chunks are written one by one while the next ones
are analysed."""
WORKER_NAME = "botline-analysis"
TIMEOUT_SECONDS = 120.0
"""Per chunk: 64 of the longest documents allowed are analysed in a few seconds; this only catches a hang."""


def rows(texts: Sequence[str]) -> list[Row]:
    """The log row of each text; one text's failure is its own (the others are still analysed)."""
    found: list[Row] = []
    for text in texts:
        try:
            found.append(encode(*counted_terms(text)))
        except Exception as exc:
            found.append(f"{type(exc).__name__}: {exc}")
    return found


def worker_pool(settings: KnowledgeSettings, *, memory_limit_bytes: int = 0) -> WorkerPool | None:
    """The analysis workers of `settings.analysis_processes` (None: analyse in threads). The indexer hands
    a whole batch's chunks over at once, which the pool must never refuse as too many."""
    if settings.analysis_processes == 0:
        return None
    chunks = -(-settings.index_batch // CHUNK)
    limits = PoolLimits(workers=settings.analysis_processes, timeout_seconds=TIMEOUT_SECONDS, max_queued=chunks,
                        memory_limit_bytes=memory_limit_bytes)
    return WorkerPool(limits, preload=[__name__], name=WORKER_NAME)


class Analysis:
    """Where the indexer's documents are analysed: in `pool`'s workers, or in a thread without one."""

    def __init__(self, pool: WorkerPool | None = None) -> None:
        self._pool = pool

    async def rows(self, texts: Sequence[str]) -> list[Row]:
        if self._pool is not None:
            try:
                return await self._pool.run(rows, list(texts))
            except JobTimedOut:
                return [f"analysis took longer than {TIMEOUT_SECONDS:g} s"] * len(texts)
            except ParsingError as exc:  # the worker died, or could not start: this chunk in a thread
                log.warning("analysis worker unavailable (%s); %d documents analysed in a thread",
                            type(exc).__name__, len(texts))
        return await asyncio.to_thread(rows, list(texts))
