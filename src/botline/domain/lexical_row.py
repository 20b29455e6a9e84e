"""A document's row in the lexical log (store/lexical_index.py): its length in terms, each distinct term's
frequency, the terms themselves. Made where the text is analysed (knowledge/analysis_pool.py, in a
worker process) and stored as it is, so the Store's write does no per-term work."""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

MAX_TF = 65_535
"""A term's frequency in one document is counted up to this (two bytes)."""

_HEADER = struct.Struct("<II")

Frequencies = npt.NDArray[np.uint16]


def encode(counts: Mapping[str, int], length: int) -> bytes:
    """The row of a document whose terms occur `counts` times, `length` terms in all (analysed terms hold
    no newline: they are runs of letters and digits)."""
    frequencies = np.minimum(np.fromiter(counts.values(), dtype=np.int64, count=len(counts)), MAX_TF).astype("<u2")
    return _HEADER.pack(length, len(counts)) + frequencies.tobytes() + "\n".join(counts).encode()


def decode(row: bytes) -> tuple[int, Frequencies, list[str]]:
    """(length, frequencies, terms) of a row."""
    length, n = _HEADER.unpack_from(row)
    start = _HEADER.size
    frequencies = np.frombuffer(row, dtype="<u2", count=n, offset=start)
    terms = row[start + 2 * n:].decode().split("\n") if n else []
    return length, frequencies, terms
