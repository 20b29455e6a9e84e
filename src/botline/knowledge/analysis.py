"""Text analysis for lexical search: the same function reads documents and queries.

1. NFKC and casefold; every term is stored with its accents folded (NFD without combining marks).
2. Words are runs of letters and digits. Runs of CJK characters (Han, kana, Hangul), which have no
   spaces, become overlapping bigrams ("健康保险" → 健康 康保 保险), so a two-character query matches
   inside a longer run (FTS5's own unicode61 tokenizer would keep the whole run as one token).
3. Stopwords of Portuguese, Spanish and English are dropped.
4. Each remaining word is stemmed by the Portuguese, Spanish and English Snowball stemmers, as
   written and with its accents folded, and indexed under each distinct (folded) stem: "preço",
   "preços" and "preco" meet. No language guess is needed (a three-word query has too little
   to guess from): a word and its plural or singular share their stem in their own language, and a
   chance collision of two different words in another language's stemmer matches one stem of three,
   which BM25 scores lower than a real match.

A word's terms are cached (vocabularies repeat), which keeps ingest fast.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from itertools import chain

import snowballstemmer  # type: ignore[import-untyped]

from botline.knowledge.stopwords import STOPWORDS

WORD = re.compile(r"[^\W_]+")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
CJK_SPLIT = re.compile(f"({CJK.pattern})")
LANGUAGES = ("portuguese", "spanish", "english")
STEM_CACHE = 200_000
MAX_WORD = 40
"""Longer "words" (hashes, base64) are kept whole, not stemmed."""

_stemmers = [snowballstemmer.stemmer(language) for language in LANGUAGES]


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=STEM_CACHE)
def stems(word: str) -> tuple[str, ...]:
    """The folded stems of a casefolded word, stemmed with its accents and without them (a query
    typed without accents still shares a stem with the accented document)."""
    folded = fold(word)
    if len(word) > MAX_WORD or word.isdigit():
        return (folded,)
    found: dict[str, None] = {}
    for form in dict.fromkeys((word, folded)):
        for stemmer in _stemmers:
            found.setdefault(fold(stemmer.stemWord(form)), None)
    return tuple(found)


def _cjk_grams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]


def _plain_terms(word: str) -> tuple[str, ...]:
    """The terms of one casefolded non-CJK word: none for a stopword, else its stems."""
    return () if fold(word) in STOPWORDS else stems(word)


def _terms_of(word: str) -> tuple[str, ...]:
    if word.isascii() or not CJK.search(word):
        return _plain_terms(word)
    found: list[str] = []
    for piece in CJK_SPLIT.split(word):
        if CJK.fullmatch(piece):
            found.extend(_cjk_grams(piece))
        elif piece:
            found.extend(_plain_terms(piece))
    return tuple(found)


_cached_terms_of = lru_cache(maxsize=STEM_CACHE)(_terms_of)


def _each_term(text: str) -> Iterator[str]:
    """Every index term of `text`, in order, with repeats. A word's terms are looked up once per distinct
    word (vocabularies are Zipfian: a few thousand words make most of a text), except runs longer than
    MAX_WORD (CJK text without spaces), which are not kept in the cache. Without such runs (nearly every
    text) the lookups and the flattening run in C, with no Python-level loop per word."""
    words = WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    if words and max(map(len, words)) > MAX_WORD:
        return chain.from_iterable(_cached_terms_of(word) if len(word) <= MAX_WORD else _terms_of(word)
                                   for word in words)
    return chain.from_iterable(map(_cached_terms_of, words))


def terms(text: str) -> list[str]:
    """Every index term of `text`, in order, with repeats (term frequency counts them)."""
    return list(_each_term(text))


def counted_terms(text: str) -> tuple[dict[str, int], int]:
    """Each index term of `text` with its frequency, and the number of terms in all: what `terms` gives,
    counted in C (the indexer's ingest rate is mostly this function)."""
    counts = Counter(_each_term(text))
    return dict(counts), counts.total()


def query_terms(text: str) -> list[str]:
    """The distinct terms of a query, in order."""
    return list(dict.fromkeys(terms(text)))
