"""A document's row in the lexical log (store/lexical_index.py): its length in terms, each distinct term's
frequency, the terms themselves. Made where the text is analysed (knowledge/analysis_pool.py, in a
worker process) and stored as it is, so the Store's write does no per-term work. No numpy here: the
analysis workers' forkserver loads this module (store/lexical_index.py decodes rows with numpy)."""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Mapping

MAX_TF = 65_535
"""A term's frequency in one document is counted up to this (two bytes)."""

HEADER = struct.Struct("<II")
"""(length in terms, distinct terms); then a little-endian uint16 per term, then the terms, "\n"-joined."""


def encode(counts: Mapping[str, int], length: int) -> bytes:
    """The row of a document whose terms occur `counts` times, `length` terms in all (analysed terms hold
    no newline: they are runs of letters and digits)."""
    frequencies = array("H", [count if count < MAX_TF else MAX_TF for count in counts.values()])
    if sys.byteorder == "big":
        frequencies.byteswap()
    return HEADER.pack(length, len(counts)) + frequencies.tobytes() + "\n".join(counts).encode()
