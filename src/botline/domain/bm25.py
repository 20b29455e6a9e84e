"""BM25 as SQLite's FTS5 computes it, and how botline turns it into a 0–1 score.

The lexical index (store/lexical_index.py) ranks with the formula and constants of FTS5's `bm25()`,
which botline's first lexical index was, over each collection's statistics: its number of indexed
documents, their average length and each term's document frequency among them.

Normalisation: a raw BM25 score is divided by the sum of the query terms' IDF (terms no indexed
document holds are left out) and capped at 1. A document of average length that holds every known
query term once scores about 1; one that holds terms carrying half the query's IDF weight about 0.5.
So a score says "how much of what the query asks for, weighted by rarity, the document holds", which
is comparable across queries, unlike raw BM25 whose scale grows with the query's length.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

K1 = 1.2
B = 0.75
MIN_IDF = 1e-6
"""FTS5 floors the IDF of a term held by more than half of the documents here (so such a term adds at most
MIN_IDF * (K1 + 1) to a score, which the lexical index's search uses to skip scanning it)."""


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
