"""The lexical index each replica holds in memory, fed by the Store's per-collection lexical log.

The Store keeps, per collection, one log row per indexed document (its terms and their frequencies,
`encode`) or per document taken out of the index (a tombstone), each with a sequence number from the
collection's counter, which every write to the log advances in the same transaction as the documents'
change; a reset (the collection cleared or deleted) removes the rows and records the counter's value.
A replica reads the counter before each search (one small read for all the searched collections) and
applies the rows past what it holds (`LexicalLog.page`), so after an acknowledged write every replica
scores the same documents: a deleted or replaced document is out of every replica's index from the
moment its write is acknowledged.

In memory a collection is a list of documents (row -> id, length, alive) and a few immutable
segments, each a compressed-sparse-row posting list (term id -> the rows holding it and the term's
frequency in each). New rows form a new segment; segments of similar size are merged (dropping dead
rows), so a collection has O(log n) of them. Scoring is BM25 (domain/bm25.py: the formula and constants
of SQLite FTS5's `bm25()`), exact, vectorised with numpy over the query terms' postings, with the
collection's live statistics (documents, their average length, each term's document frequency); past
INLINE_POSTINGS it runs in a worker thread. Statistics are per collection: a search over several
collections scores each with its own and merges the normalised scores.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from botline.domain import bm25
from botline.domain.knowledge import LexicalHit
from botline.domain.lexical_row import HEADER

PAGE = 2_000
"""Log rows read per round trip when a replica catches up."""
INLINE_POSTINGS = 20_000
"""Searches reading fewer postings than this score on the event loop (well under a millisecond); bigger ones
in a worker thread (numpy releases the GIL for most of the work)."""
INLINE_ROWS = 64
"""Log rows applied on the event loop when the collection is small too (a few rows can set off a merge of
every segment, so a big collection's are applied in a worker thread)."""
MERGE_FACTOR = 2
"""The newest segments are merged with the one before them while it holds fewer than MERGE_FACTOR times
their postings: segment sizes grow geometrically, so there are O(log n) of them."""
LENGTH_OFFSET = 1
"""Added to a document's length in terms: FTS5, which the scores were first computed by, counted the column
naming the collection as one more term, and scores stay comparable with those."""


TRIM_AFTER = 10_000
"""Log rows after whose catch-up the C allocator is asked to hand freed memory back (see `_trim`)."""

Rows = npt.NDArray[np.int32]
Frequencies = npt.NDArray[np.unsignedinteger[Any]]
"""A term's frequency per posting: uint8 in a segment where none passes 255 (nearly all: a third less
memory for postings), uint16 otherwise (a log row counts up to 65,535)."""
Floats = npt.NDArray[np.float64]
"""Scores in double precision: np.bincount sums in it anyway, and scores match domain/bm25.py's to 1e-9."""


def decode(row: bytes) -> tuple[int, Frequencies, list[str]]:
    """(length, frequencies, terms) of a log row (domain/lexical_row.py)."""
    length, n = HEADER.unpack_from(row)
    start = HEADER.size
    frequencies = np.frombuffer(row, dtype="<u2", count=n, offset=start)
    terms = row[start + 2 * n:].decode().split("\n") if n else []
    return length, frequencies, terms


@dataclass(frozen=True)
class LogEntry:
    document_id: str
    seq: int
    blob: bytes | None
    """None: a tombstone (the document left the index)."""


@dataclass(frozen=True)
class LogPage:
    generation: int
    """The collection's counter when the page was read."""
    reset: int
    """The counter's value at the collection's last reset (0: never)."""
    entries: list[LogEntry]
    """Rows past the asked sequence number, in sequence order, at most PAGE."""


class Vocabulary(dict[str, int]):
    """Term -> id, growing: an unknown term gets the next id when looked up with []."""

    def __missing__(self, term: str) -> int:
        self[term] = value = len(self)
        return value


@dataclass(frozen=True)
class Segment:
    starts: list[int]
    """starts[t]:starts[t + 1] is term t's slice of rows/frequencies (terms past the end: none)."""
    rows: Rows
    frequencies: Frequencies

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    def postings(self, term: int) -> tuple[Rows, Frequencies] | None:
        if term + 1 >= len(self.starts):
            return None
        start, end = self.starts[term], self.starts[term + 1]
        return None if start == end else (self.rows[start:end], self.frequencies[start:end])

    def term_ids(self) -> npt.NDArray[np.int32]:
        return np.repeat(np.arange(len(self.starts) - 1, dtype=np.int32), np.diff(np.asarray(self.starts)))


def _stable_order(term_ids: npt.NDArray[np.int32]) -> npt.NDArray[np.intp]:
    """argsort(term_ids, kind="stable") as two 16-bit radix sorts (numpy radix-sorts 16-bit keys, and
    timsorts wider ones several times slower)."""
    order = np.argsort((term_ids & 0xFFFF).astype(np.uint16), kind="stable")
    high = (term_ids[order] >> 16).astype(np.uint16)
    return order[np.argsort(high, kind="stable")] if high.any() else order


def _narrow(frequencies: Frequencies) -> Frequencies:
    """The frequencies as uint8 when they all fit in it."""
    if frequencies.dtype == np.uint8 or (frequencies.size and int(frequencies.max()) > np.iinfo(np.uint8).max):
        return frequencies
    return frequencies.astype(np.uint8)


def _segment(term_ids: npt.NDArray[np.int32], rows: Rows, frequencies: Frequencies, vocabulary_size: int) -> Segment:
    order = _stable_order(term_ids)
    sorted_ids = term_ids[order]
    starts = np.searchsorted(sorted_ids, np.arange(vocabulary_size + 1, dtype=np.int32)).tolist()
    return Segment(starts=starts, rows=rows[order], frequencies=_narrow(frequencies[order]))


def _merge(segments: Sequence[Segment], alive: npt.NDArray[np.bool_], vocabulary_size: int) -> Segment:
    """One segment holding the segments' postings of rows still alive, each term's postings in the
    segments' order (oldest first, so a term's rows stay sorted): every posting is copied to its place
    (counts, then offsets), no sort."""
    kept = []
    counts = np.zeros(vocabulary_size, dtype=np.int64)
    for segment in segments:
        keep = alive[segment.rows]
        term_ids = segment.term_ids()[keep]
        held = np.bincount(term_ids, minlength=vocabulary_size)
        kept.append((term_ids, held, segment.rows[keep], segment.frequencies[keep]))
        counts += held
    starts = np.zeros(vocabulary_size + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    rows = np.empty(int(starts[-1]), dtype=np.int32)
    frequencies = np.empty(int(starts[-1]), dtype=np.result_type(*(segment.frequencies for segment in segments)))
    free = starts[:-1].copy()
    for term_ids, held, segment_rows, segment_frequencies in kept:
        own = np.zeros(vocabulary_size + 1, dtype=np.int64)
        np.cumsum(held, out=own[1:])
        places = free[term_ids] + (np.arange(term_ids.shape[0]) - own[term_ids])
        rows[places] = segment_rows
        frequencies[places] = segment_frequencies
        free += held
    return Segment(starts=starts.tolist(), rows=rows, frequencies=frequencies)


@dataclass
class Shared:
    """What every snapshot of one collection shares, appended to only (under the collection's lock)."""

    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    ids: list[str] = field(default_factory=list)
    row_of: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectionIndex:
    """One immutable state of a collection's index: searches use it while the next one is built."""

    collection_id: str
    generation: int
    reset: int
    shared: Shared
    lengths: Floats
    alive: npt.NDArray[np.bool_]
    live: int
    live_length: float
    segments: tuple[Segment, ...]
    norms: Floats
    """K1 * (1 - B + B * length / average length) per row: the length part of BM25's denominator."""

    @staticmethod
    def empty(collection_id: str, reset: int) -> CollectionIndex:
        return CollectionIndex(collection_id, 0, reset, Shared(), np.empty(0, np.float64), np.empty(0, np.bool_),
                               0, 0.0, (), np.empty(0, np.float64))

    def applied(self, entries: Sequence[LogEntry], generation: int, *, merge: bool = True) -> CollectionIndex:
        """This state with the log rows applied (blocking: run in a thread when there are many). The rows
        form a new segment; with `merge`, the newest segments are merged while the one before them is less
        than MERGE_FACTOR times their size (a replica catching up on many pages merges after the last)."""
        shared = self.shared
        alive = self.alive.copy()
        live, live_length = self.live, self.live_length
        first = len(shared.ids)
        new_lengths: list[int] = []
        counts: list[int] = []
        frequencies: list[Frequencies] = []
        terms: list[str] = []
        for entry in entries:
            old = shared.row_of.pop(entry.document_id, None)
            if old is not None and old < alive.shape[0] and alive[old]:
                alive[old] = False
                live -= 1
                live_length -= float(self.lengths[old])
            elif old is not None and old >= alive.shape[0]:
                new_lengths[old - first] = -1  # replaced within this batch: marked dead below
            if entry.blob is None:
                continue
            length, document_frequencies, document_terms = decode(entry.blob)
            shared.row_of[entry.document_id] = len(shared.ids)
            shared.ids.append(entry.document_id)
            new_lengths.append(length + LENGTH_OFFSET)
            counts.append(len(document_terms))
            frequencies.append(document_frequencies)
            terms.extend(document_terms)
        added = np.asarray(new_lengths, dtype=np.float64)
        born = added >= 0
        alive = np.concatenate([alive, born])
        lengths = np.concatenate([self.lengths, np.where(born, added, 0.0)])
        live += int(born.sum())
        live_length += float(added[born].sum())
        segments = list(self.segments)
        if terms:
            vocabulary = shared.vocabulary
            term_ids = np.fromiter(map(vocabulary.__getitem__, terms), dtype=np.int32, count=len(terms))
            rows = np.repeat(np.arange(first, first + len(counts), dtype=np.int32), counts)
            segments.append(_segment(term_ids, rows, np.concatenate(frequencies), len(vocabulary)))
        if merge:
            merged, size = 1, segments[-1].size if segments else 0
            while merged < len(segments) and segments[-merged - 1].size < MERGE_FACTOR * size:
                size += segments[-merged - 1].size
                merged += 1
            if merged > 1:
                segments[-merged:] = [_merge(segments[-merged:], alive, len(shared.vocabulary))]
        average = live_length / live if live else 0.0
        relative = lengths / average if average else np.ones_like(lengths)
        norms = bm25.K1 * (1 - bm25.B + bm25.B * relative)
        return CollectionIndex(self.collection_id, generation, self.reset, shared, lengths, alive, live,
                               live_length, tuple(segments), norms)

    def postings_scanned(self, terms: Sequence[str]) -> int:
        """About how many postings a search of `terms` scans (to decide where it runs): those of terms held
        by at most half of the documents (the others are looked up, see `search`)."""
        total = 0
        for term in terms:
            held = sum(rows.shape[0] for rows, _ in self._postings(term))
            total += held if 2 * held <= self.live else 0
        return total

    def _postings(self, term: str) -> list[tuple[Rows, Frequencies]]:
        """The term's postings in every segment that holds it, oldest segment first."""
        term_id = self.shared.vocabulary.get(term)
        if term_id is None:
            return []
        return [p for s in self.segments if (p := s.postings(term_id)) is not None]

    def search(self, terms: Sequence[str], limit: int) -> list[LexicalHit]:
        """The `limit` best live documents for the distinct query `terms`, best first (ties by id), with
        their normalised scores (bm25.normalise).

        Terms held by more than half of the documents (FTS5's IDF floor: each adds at most a few
        millionths) are read last and, once the other terms have settled a top no document could leave by
        those millionths, only for the documents still in reach (MaxScore): the commonest words' long
        posting lists, most of what a query reads, are then looked up instead of scanned. The scores are
        those of scoring every posting."""
        if not self.live:
            return []
        read = [term for term in (self._term(t) for t in terms) if term is not None]
        if not read:
            return []
        query_weight = sum(term.idf for term in read)
        read.sort(key=lambda term: -term.idf)
        common = [term for term in read if term.idf <= bm25.MIN_IDF]
        scored = read[:len(read) - len(common)]
        scores = self._scores(scored) if scored else np.zeros(self.alive.shape[0])
        reach = sum(term.idf * (bm25.K1 + 1) for term in common)
        candidates = self._live_rows(np.flatnonzero(scores))
        if common and candidates.shape[0] > limit:
            threshold = np.partition(scores[candidates], -limit)[-limit]
            if threshold > reach:
                candidates = candidates[scores[candidates] >= threshold - reach]
                for term in common:
                    self._add_for(term, candidates, scores)
                common = []
        if common:
            scores += self._scores(common)
            candidates = self._live_rows(np.flatnonzero(scores))
        if candidates.shape[0] > limit:  # the top `limit`, and everything tied with the last of them
            threshold = np.partition(scores[candidates], -limit)[-limit]
            candidates = candidates[scores[candidates] >= threshold]
        ids = self.shared.ids
        ranked = sorted(((float(scores[row]), ids[row]) for row in candidates.tolist()),
                        key=lambda h: (-h[0], h[1]))[:limit]
        return [LexicalHit(document_id=i, score=bm25.normalise(raw, query_weight)) for raw, i in ranked]

    def _live_rows(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        return rows if self.live == self.alive.shape[0] else rows[self.alive[rows]]

    def _term(self, term: str) -> _QueryTerm | None:
        """The term's postings in every segment and its IDF (None: no live document holds it)."""
        found = self._postings(term)
        if self.live == self.alive.shape[0]:
            frequency = sum(rows.shape[0] for rows, _ in found)
        else:
            frequency = sum(int(np.count_nonzero(self.alive[rows])) for rows, _ in found)
        return _QueryTerm(found, bm25.idf(self.live, frequency)) if frequency else None

    def _contributions(self, term: _QueryTerm, rows: Rows, frequencies: Frequencies) -> Floats:
        """BM25's share of `term` for each posting (rows may be dead: callers drop those)."""
        tf = frequencies.astype(np.float64)
        denominator = self.norms[rows]
        denominator += tf
        tf *= term.idf * (bm25.K1 + 1)
        tf /= denominator
        return tf

    def _scores(self, terms: Sequence[_QueryTerm]) -> Floats:
        """Every row's summed share of `terms`, reading all their postings."""
        rows = [rows for term in terms for rows, _ in term.postings]
        weights = [self._contributions(term, r, f) for term in terms for r, f in term.postings]
        summed = np.bincount(np.concatenate(rows), np.concatenate(weights), minlength=self.alive.shape[0])
        return summed.astype(np.float64, copy=False)

    def _add_for(self, term: _QueryTerm, candidates: Rows, scores: Floats) -> None:
        """Adds `term`'s share to the scores of `candidates` (sorted rows) only, looking each up (a term's
        rows are sorted within a segment)."""
        for rows, frequencies in term.postings:
            at = np.searchsorted(rows, candidates)
            inside = at < rows.shape[0]
            held = np.zeros(candidates.shape[0], dtype=np.bool_)
            held[inside] = rows[at[inside]] == candidates[inside]
            if held.any():
                positions = at[held]
                scores[candidates[held]] += self._contributions(term, rows[positions], frequencies[positions])


@dataclass(frozen=True)
class _QueryTerm:
    postings: list[tuple[Rows, Frequencies]]
    idf: float


def merge_hits(found: Sequence[Sequence[LexicalHit]], limit: int) -> list[LexicalHit]:
    """Several collections' hits as one ranking (by normalised score, ties by id)."""
    if len(found) == 1:
        return list(found[0][:limit])
    return sorted((h for hits in found for h in hits), key=lambda h: (-h.score, h.document_id))[:limit]


def _trim() -> None:
    """Asks glibc to return freed memory to the system: reading a large log frees hundreds of megabytes
    of strings and temporary arrays in a worker thread, whose malloc arena otherwise keeps them (measured:
    resident memory 630 MB above the process before reading 100,000 documents, 240 MB after this). A no-op
    where malloc_trim does not exist."""
    library = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(library), "malloc_trim", None) if library else None
    if trim is not None:
        trim(0)


class EmbeddedLexical:
    """Lexical search for the Store backends: read the counters, catch up on the log, score in memory."""

    def __init__(self) -> None:
        self._indexes: dict[str, CollectionIndex] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @abstractmethod
    async def _lexical_generations(self, collection_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """collection id -> (counter, reset) of the collections whose log has ever been written."""

    @abstractmethod
    async def _lexical_page(self, collection_id: str, after: int) -> LogPage:
        """The counter, the reset and at most PAGE rows past sequence number `after`, read together."""

    async def search(self, collection_ids: Sequence[str], terms: Sequence[str], *, limit: int) -> list[LexicalHit]:
        wanted = list(dict.fromkeys(collection_ids))
        if not wanted or not terms:
            return []
        generations = await self._lexical_generations(wanted)
        indexes = []
        for collection_id in wanted:
            if collection_id in generations:
                indexes.append(await self._collection_index(collection_id, *generations[collection_id]))
            else:
                self._indexes.pop(collection_id, None)
        if sum(index.postings_scanned(terms) for index in indexes) <= INLINE_POSTINGS:
            return merge_hits([index.search(terms, limit) for index in indexes], limit)
        return await asyncio.to_thread(lambda: merge_hits([index.search(terms, limit) for index in indexes], limit))

    async def _collection_index(self, collection_id: str, generation: int, reset: int) -> CollectionIndex:
        held = self._indexes.get(collection_id)
        if held is not None and held.reset == reset and held.generation >= generation:
            return held
        async with self._locks.setdefault(collection_id, asyncio.Lock()):
            held = self._indexes.get(collection_id)
            if held is None or held.reset != reset:
                held = CollectionIndex.empty(collection_id, reset)
            more, before = True, len(held.shared.ids)
            while more:
                held, more = await self._catch_up(held)
            self._indexes[collection_id] = held
            if len(held.shared.ids) - before >= TRIM_AFTER:
                await asyncio.to_thread(_trim)
            return held

    async def _catch_up(self, held: CollectionIndex) -> tuple[CollectionIndex, bool]:
        """`held` with one page of the log applied (from scratch when the collection was reset since), and
        whether more pages are to be read."""
        page = await self._lexical_page(held.collection_id, held.generation)
        if page.reset != held.reset:
            return CollectionIndex.empty(held.collection_id, page.reset), True
        entries = page.entries
        more = len(entries) == PAGE
        reached = entries[-1].seq if more else max(page.generation, held.generation)
        if len(entries) < INLINE_ROWS and sum(segment.size for segment in held.segments) < INLINE_POSTINGS:
            return held.applied(entries, reached, merge=not more), more
        return await asyncio.to_thread(lambda: held.applied(entries, reached, merge=not more)), more
