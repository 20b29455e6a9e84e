"""Analysis for the indexer in a worker process: documents' lexical log rows, made beside the Store's work.

Analysing a 200-word document is ~150 µs of Python. In a thread it holds the GIL against the event loop
(web chat, webhooks) and against the Store's own thread; in a process it runs on another core. The indexer
hands a claimed batch over in chunks and writes each chunk while the next is analysed (knowledge/indexer.py),
so ingest goes at the pace of the slower of the two instead of their sum.

One pool per server process (every indexer of the process shares it), started on first use with the
`spawn` method: forking a process that runs threads can copy a lock some thread holds. When a worker
dies (killed, out of memory) its chunk is analysed in a thread and the next chunk starts a new pool; after
MAX_BROKEN deaths the process keeps to threads. `knowledge.analysis_processes: 0` always analyses in a
thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from botline.domain.lexical_row import encode
from botline.knowledge.analysis import counted_terms

Row = bytes | str
"""A document's log row, or why it could not be analysed."""


def rows(texts: Sequence[str]) -> list[Row]:
    """The log row of each text; one text's failure is its own (the others are still analysed)."""
    found: list[Row] = []
    for text in texts:
        try:
            found.append(encode(*counted_terms(text)))
        except Exception as exc:
            found.append(f"{type(exc).__name__}: {exc}")
    return found


MAX_BROKEN = 3
"""Pools that may die before this process analyses in threads for good (a program that starts the server
from a main module without an `if __name__ == "__main__":` guard kills every spawned worker at once)."""

log = logging.getLogger(__name__)
_lock = threading.Lock()
_pools: dict[int, ProcessPoolExecutor] = {}
_broken = 0


def _pool(processes: int) -> ProcessPoolExecutor | None:
    """The process's pool of `processes` workers; None when pools have died too often."""
    with _lock:
        if _broken >= MAX_BROKEN:
            return None
        pool = _pools.get(processes)
        if pool is None:
            pool = _pools[processes] = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
        return pool


def _discard(processes: int, broken: ProcessPoolExecutor, reason: BaseException) -> None:
    global _broken
    with _lock:
        if _pools.get(processes) is broken:
            del _pools[processes]
            _broken += 1
            log.warning("the analysis process died (%s); %s", reason,
                        "analysing in threads from now on" if _broken >= MAX_BROKEN else "starting another")
    broken.shutdown(wait=False, cancel_futures=True)


async def analyse(texts: Sequence[str], *, processes: int) -> list[Row]:
    """The rows of `texts`, made in this process's pool of `processes` workers (0: in a thread). A chunk
    whose worker died is analysed in a thread."""
    pool = _pool(processes) if processes > 0 else None
    if pool is not None:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, rows, list(texts))
        except BrokenProcessPool as exc:
            _discard(processes, pool, exc)
    return await asyncio.to_thread(rows, list(texts))
