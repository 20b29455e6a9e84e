"""Files uploaded into a knowledge collection (PDF, DOCX, HTML, Markdown, plain text) to document texts.

`split_file` is the job: it runs in a parsing worker, reads the file into blocks and chunks them
(`knowledge.chunking`), so neither the parsing nor the chunking of untrusted input touches the event
loop. `FileSplitter` is the caller's side.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from botline.knowledge.chunking import Block, ChunkLimits, chunk
from botline.parsing.docx_text import docx_blocks
from botline.parsing.errors import JobRejected
from botline.parsing.markup import decode, html_blocks, markdown_blocks, text_blocks
from botline.parsing.pdf import PdfLimits, extract_text
from botline.parsing.pool import WorkerPool


class FileKind(StrEnum):
    PDF = "pdf"
    DOCX = "docx"
    HTML = "html"
    MARKDOWN = "markdown"
    TEXT = "text"


EXTENSIONS = {
    ".pdf": FileKind.PDF, ".docx": FileKind.DOCX, ".html": FileKind.HTML, ".htm": FileKind.HTML,
    ".xhtml": FileKind.HTML, ".md": FileKind.MARKDOWN, ".markdown": FileKind.MARKDOWN, ".txt": FileKind.TEXT,
    ".text": FileKind.TEXT,
}
MEDIA_TYPES = {
    "application/pdf": FileKind.PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": FileKind.DOCX,
    "text/html": FileKind.HTML, "application/xhtml+xml": FileKind.HTML, "text/markdown": FileKind.MARKDOWN,
    "text/x-markdown": FileKind.MARKDOWN, "text/plain": FileKind.TEXT,
}
SUPPORTED = "PDF (.pdf), DOCX (.docx), HTML (.html, .htm), Markdown (.md) and plain text (.txt)"


def kind_of(filename: str, media_type: str) -> FileKind | None:
    """By the file name's extension, else by the declared media type; None when neither is supported."""
    dot = filename.rfind(".")
    if dot >= 0 and (kind := EXTENSIONS.get(filename[dot:].lower())) is not None:
        return kind
    return MEDIA_TYPES.get(media_type.split(";")[0].strip().lower())


@dataclass(frozen=True)
class FileLimits:
    chunks: ChunkLimits
    max_chars: int
    """Text one file may hold (knowledge.max_file_chars); past it the file is refused, not cut."""
    max_pages: int
    """PDF pages (knowledge.max_file_pages)."""
    max_unpacked_bytes: int
    """Decompressed size of a PDF stream or of a DOCX's parts (parsing.max_stream_bytes)."""


def split_file(blob: bytes, kind: FileKind, limits: FileLimits) -> list[str]:
    """Runs in a worker: the file's document texts in reading order. JobRejected (a message for the
    sender) when the file is unreadable or passes a limit."""
    blocks = _blocks(blob, kind, limits)
    if sum(len(block.text) for block in blocks) > limits.max_chars:
        raise _too_long(limits)
    pieces = chunk(blocks, limits.chunks)
    if not pieces:
        raise JobRejected("The file holds no text botline can read (a scanned PDF needs OCR first).")
    return pieces


def _blocks(blob: bytes, kind: FileKind, limits: FileLimits) -> list[Block]:
    if kind is FileKind.PDF:
        pdf = extract_text(blob, PdfLimits(max_pages=limits.max_pages, max_chars=limits.max_chars + 1,
                                           max_stream_bytes=limits.max_unpacked_bytes))
        if pdf.pages_read == limits.max_pages < pdf.page_count:
            raise JobRejected(f"The PDF has {pdf.page_count} pages; at most {limits.max_pages} are read "
                              "(knowledge.max_file_pages).")
        if pdf.truncated:
            raise _too_long(limits)
        return text_blocks(pdf.text)
    if kind is FileKind.DOCX:
        return docx_blocks(blob, limits.max_unpacked_bytes)
    text = decode(blob)
    if len(text) > limits.max_chars * 4:  # markup is mostly tags; far past this the text surely is too
        raise _too_long(limits)
    if kind is FileKind.HTML:
        return html_blocks(text)
    if kind is FileKind.MARKDOWN:
        return markdown_blocks(text)
    return text_blocks(text)


def _too_long(limits: FileLimits) -> JobRejected:
    return JobRejected(f"The file holds more than {limits.max_chars} characters of text "
                       "(knowledge.max_file_chars); split it or raise the limit.")


class FileSplitter:
    """Splits uploaded files through the worker pool; refuses inputs over `max_input_bytes` before sending them."""

    def __init__(self, pool: WorkerPool, limits: FileLimits, *, max_input_bytes: int) -> None:
        self._pool = pool
        self._limits = limits
        self._max_input_bytes = max_input_bytes

    async def split(self, blob: bytes, kind: FileKind) -> list[str]:
        """The document texts, or a ParsingError whose message can be shown to the sender."""
        if len(blob) > self._max_input_bytes:
            raise JobRejected(f"The file is larger than {self._max_input_bytes} bytes (knowledge.max_file_bytes).")
        return await self._pool.run(split_file, blob, kind, self._limits)
