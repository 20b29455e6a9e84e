"""BM25 as SQLite's FTS5 computes it, how botline turns it into a 0–1 score, and how a search reads the index.

Both backends rank with these functions (the formula and constants of FTS5's `bm25()`, which the
SQLite backend used before it kept its own postings), over the same statistics: the number of indexed
documents and each term's document frequency across the whole store, not per collection.

Normalisation: a raw BM25 score is divided by the sum of the query terms' IDF (terms no indexed
document holds are left out) and capped at 1. A document of average length that holds every known
query term once scores about 1; one that holds terms carrying half the query's IDF weight about 0.5.
So a score says "how much of what the query asks for, weighted by rarity, the document holds", which
is comparable across queries, unlike raw BM25 whose scale grows with the query's length.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", str, int)

K1 = 1.2
B = 0.75
MIN_IDF = 1e-6
"""FTS5 floors the IDF of a term held by more than half of the documents here."""


def idf(documents: int, frequency: int) -> float:
    value = math.log((documents - frequency + 0.5) / (frequency + 0.5)) if documents else 0.0
    return value if value > 0 else MIN_IDF


def term_score(term_idf: float, tf: int, length: int, average_length: float) -> float:
    norm = 1 - B + B * (length / average_length if average_length else 1.0)
    return term_idf * (tf * (K1 + 1)) / (tf + K1 * norm)


def query_weight(documents: int, frequencies: Iterable[int]) -> float:
    """What a raw score is divided by: the IDF sum of the query terms some document holds."""
    return sum(idf(documents, df) for df in frequencies if df > 0)


def normalise(raw: float, weight: float) -> float:
    return 0.0 if weight <= 0 else min(1.0, raw / weight)


def score(idfs: Sequence[float], tfs: Mapping[int, int], length: int, average_length: float) -> float:
    """A document's raw BM25 for the query: `tfs` maps a query term's index to its frequency in the document
    (summed in term order, so both backends add the same floats in the same order)."""
    return sum(term_score(idfs[t], tfs[t], length, average_length) for t in sorted(tfs))


@dataclass(frozen=True)
class Plan:
    """How a top-k search reads the index (MaxScore): the query's terms rarest first, and after each the
    highest score a document holding none of the terms read so far could still reach. A term's share
    of a score is below idf × (K1 + 1) whatever the frequency and length, so once `limit` documents
    score at least that bound, no unread document can enter the top: a search that begins with its
    rarest term usually stops there, without reading the long lists of the common words."""

    idfs: list[float]
    order: list[int]
    """Indexes of the terms some document holds, highest IDF first."""
    bounds: list[float]
    """bounds[j]: the most a document holding none of order[:j + 1] can score."""


def plan(documents: int, frequencies: Sequence[int]) -> Plan:
    idfs = [idf(documents, df) for df in frequencies]
    order = sorted((t for t, df in enumerate(frequencies) if df > 0), key=lambda t: (-idfs[t], t))
    plan = Plan(idfs=idfs, order=order, bounds=[])
    plan.bounds.extend(ceiling(plan, order[j + 1:]) for j in range(len(order)))
    return plan


def floor(scores: Iterable[float], limit: int) -> float:
    """The `limit`-th best of `scores` (-inf when there are fewer): what a document must reach to be in the top."""
    best = heapq.nlargest(limit, scores)
    return best[-1] if len(best) == limit else -math.inf


def settled(scores: Iterable[float], limit: int, bound: float) -> bool:
    """True when `limit` of `scores` reach `bound`: nothing scoring below it can change the top `limit`."""
    return floor(scores, limit) >= bound


def ceiling(plan: Plan, terms: Iterable[int]) -> float:
    """The most `terms` of the plan can add to any document's score."""
    return sum(plan.idfs[t] * (K1 + 1) for t in terms)


def top(scores: Mapping[K, float], limit: int) -> list[tuple[K, float]]:
    """The best `limit` (document key, raw score); equal scores in key order (SQLite: oldest row first,
    Redis: by document id)."""
    return heapq.nsmallest(limit, scores.items(), key=lambda pair: (-pair[1], pair[0]))


class Step(Generic[K]):
    """One step of a planned search: the documents holding the plan's term `step` that no earlier step saw.

    They hold none of the earlier terms (an earlier step would have seen them), so only the later terms
    are looked up, one at a time, and each only for the documents that can still reach the top: those
    whose score so far plus what the terms not yet looked up could add reaches the `limit`-th best lower
    bound known (this step's scores so far and the earlier steps' exact scores). The documents left
    have exact scores."""

    def __init__(self, plan: Plan, step: int, average_length: float, limit: int, earlier: Mapping[K, float]) -> None:
        self._plan = plan
        self._term = plan.order[step]
        self._pending = list(plan.order[step + 1:])
        self._average = average_length
        self._limit = limit
        self._earlier: Mapping[K, float] = earlier
        self._tfs: dict[K, dict[int, int]] = {}
        self._lengths: dict[K, int] = {}
        self._partial: dict[K, float] = {}

    def hold(self, key: K, tf: int, length: int) -> None:
        """A document holding the step's term `tf` times (from walking its postings)."""
        self._tfs[key] = {self._term: tf}
        self._lengths[key] = length
        self._partial[key] = term_score(self._plan.idfs[self._term], tf, length, self._average)

    def next_lookup(self) -> tuple[int, list[K]] | None:
        """The next term to look up and the documents to look it up for (None: every score is final)."""
        if not self._pending or not self._partial:
            return None
        reach = floor([*self._earlier.values(), *self._partial.values()], self._limit)
        rest = ceiling(self._plan, self._pending)
        for key in [k for k, s in self._partial.items() if s + rest < reach]:
            del self._partial[key], self._tfs[key], self._lengths[key]
        return (self._pending[0], list(self._partial)) if self._partial else None

    def found(self, term: int, tfs: Mapping[K, int]) -> None:
        """The frequencies of `term` in the documents asked about (those holding it)."""
        self._pending.remove(term)
        idf_ = self._plan.idfs[term]
        for key, tf in tfs.items():
            if tf and key in self._partial:
                self._tfs[key][term] = tf
                self._partial[key] += term_score(idf_, tf, self._lengths[key], self._average)

    def scores(self) -> dict[K, float]:
        """Exact raw scores of the documents that can be in the top (summed as `score` does)."""
        return {key: score(self._plan.idfs, tfs, self._lengths[key], self._average) for key, tfs in self._tfs.items()}
