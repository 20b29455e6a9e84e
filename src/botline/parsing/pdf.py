"""PDF to text, run in a parsing worker with page, character and decompression caps.

`extract_text` is the job (it runs inside the worker process); `PdfExtractor` is the caller's side.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pypdf
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from botline.parsing.errors import JobRejected
from botline.parsing.pool import WorkerPool

UNREADABLE = "The PDF could not be read."
PAGE_SEPARATOR = "\n\n"
_DECOMPRESSION_LIMITS = (
    "zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
    "array_based_stream_maximum_output_length", "jbig2_maximum_output_length", "brotli_maximum_output_length",
    "image_maximum_buffer_size", "stream_decoding_work_maximum_length", "maximum_declared_stream_length",
)
"""pypdf's per-stream output caps (FlateDecode, LZW, ...), all set to `max_stream_bytes`."""


@dataclass(frozen=True)
class PdfLimits:
    max_pages: int
    """Pages read at most; the rest are skipped."""
    max_chars: int
    """Extraction stops at the page that reaches this many characters; the text is cut there."""
    max_stream_bytes: int
    """Decompressed size of any one stream (a page's content, an image); past it pypdf refuses the file."""


@dataclass(frozen=True)
class PdfText:
    text: str
    pages_read: int
    page_count: int
    truncated: bool
    """Pages were skipped or the text was cut at the character cap."""


def extract_text(blob: bytes, limits: PdfLimits) -> PdfText:
    """Runs in a worker. Raises JobRejected for a file pypdf cannot read or that passes a cap."""
    caps: dict[str, Any] = dict.fromkeys(_DECOMPRESSION_LIMITS, limits.max_stream_bytes)
    try:
        with pypdf.apply_configuration(None, **caps):
            pages = PdfReader(io.BytesIO(blob)).pages
            page_count = len(pages)
            texts: list[str] = []
            size = 0
            for page in pages:
                if len(texts) == limits.max_pages or size >= limits.max_chars:
                    break
                texts.append(page.extract_text() or "")
                size += len(texts[-1]) + len(PAGE_SEPARATOR)
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise JobRejected(UNREADABLE) from exc
    text = PAGE_SEPARATOR.join(texts)
    truncated = len(texts) < page_count or len(text) > limits.max_chars
    return PdfText(text=text[: limits.max_chars], pages_read=len(texts), page_count=page_count, truncated=truncated)


class PdfExtractor:
    """Reads PDFs through the worker pool; refuses inputs over `max_input_bytes` before sending them."""

    def __init__(self, pool: WorkerPool, limits: PdfLimits, *, max_input_bytes: int) -> None:
        self._pool = pool
        self._limits = limits
        self._max_input_bytes = max_input_bytes

    @property
    def limits(self) -> PdfLimits:
        return self._limits

    @property
    def max_input_bytes(self) -> int:
        return self._max_input_bytes

    async def extract(self, blob: bytes) -> PdfText:
        """The text, or a ParsingError (JobRejected when the file is unreadable or too large)."""
        if len(blob) > self._max_input_bytes:
            raise JobRejected("The PDF is too large to read.")
        return await self._pool.run(extract_text, blob, self._limits)
