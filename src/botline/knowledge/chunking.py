"""Splitting an uploaded file's text into knowledge documents (docs/knowledge.md, "Uploading files").

A reader turns a file into `Block`s (headings, paragraphs, code blocks, tables) in reading order;
`chunk` packs them into pieces of about `size` characters:

- a heading always starts a new piece, and every piece begins with the path of headings it sits
  under ("Manual > Returns"), so a piece found alone still says what it is about;
- paragraphs are packed whole while they fit; one longer than `size` is cut at sentence ends, then
  at spaces, then anywhere;
- a code block or a table is never cut: it joins the current piece if it fits, else it gets a piece
  of its own, even one larger than `size` (only past `hard_max`, the longest document the store
  takes, is it cut at line ends);
- when a section continues into a new piece, the piece repeats the last `overlap` characters of the
  previous one (from a word start), so a sentence on the boundary is found from both sides.

Runs inside a parsing worker (pure Python on untrusted input), never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from botline.parsing.errors import JobRejected

SENTENCE_ENDS = (". ", "! ", "? ", "。", "\n")
BREADCRUMB_SEPARATOR = " > "
BLOCK_SEPARATOR = "\n\n"


class Kind(StrEnum):
    HEADING = "heading"
    PARAGRAPH = "paragraph"
    CODE = "code"
    TABLE = "table"


@dataclass(frozen=True)
class Block:
    kind: Kind
    text: str
    level: int = 0
    """Heading level, 1 (the top) to 6."""


@dataclass(frozen=True)
class ChunkLimits:
    size: int
    """Target characters per piece (knowledge.chunk_chars)."""
    overlap: int
    """Characters a continuing piece repeats from the previous one (knowledge.chunk_overlap_chars)."""
    max_chunks: int
    """Pieces one file may make; past it the file is refused (knowledge.max_file_documents)."""
    hard_max: int
    """The longest document the store takes (knowledge.max_document_chars): no piece is longer."""


def chunk(blocks: Iterable[Block], limits: ChunkLimits) -> list[str]:
    """The file's pieces in reading order; JobRejected past `limits.max_chunks`."""
    return _Packer(limits).run(blocks)


class _Packer:
    def __init__(self, limits: ChunkLimits) -> None:
        self.limits = limits
        self.pieces: list[str] = []
        self.headings: list[tuple[int, str]] = []
        self.body: list[str] = []
        self.size = 0
        self.last_was_prose = False

    def run(self, blocks: Iterable[Block]) -> list[str]:
        for block in blocks:
            text = block.text.strip("\n") if block.kind in (Kind.CODE, Kind.TABLE) else block.text.strip()
            if not text.strip():
                continue
            if block.kind is Kind.HEADING:
                self.flush()
                outer = [h for h in self.headings if h[0] < block.level]
                self.headings = [*outer, (block.level, " ".join(text.split()))]
            elif block.kind is Kind.PARAGRAPH:
                for part in _split_prose(text, self.room_for_prose()):
                    self.add(part, prose=True)
            else:
                for part in _split_lines(text, self.limits.hard_max - len(self.breadcrumb()) - 2):
                    self.add(part, prose=False)
        self.flush()
        return self.pieces

    def breadcrumb(self) -> str:
        return BREADCRUMB_SEPARATOR.join(text for _, text in self.headings)[: self.limits.size // 2]

    def room_for_prose(self) -> int:
        return max(1, self.limits.size - len(self.breadcrumb()) - len(BLOCK_SEPARATOR) - self.limits.overlap)

    def add(self, text: str, *, prose: bool) -> None:
        if self.body and self.size + len(BLOCK_SEPARATOR) + len(text) > self.limits.size:
            carried = _tail(self.body[-1], self.limits.overlap) if self.last_was_prose and prose else ""
            self.flush()
            if carried:
                self.body, self.size = [carried], len(carried)
        self.body.append(text)
        self.size += len(text) + (len(BLOCK_SEPARATOR) if len(self.body) > 1 else 0)
        self.last_was_prose = prose

    def flush(self) -> None:
        if self.body:
            crumb = self.breadcrumb()
            text = BLOCK_SEPARATOR.join(self.body)
            piece = f"{crumb}{BLOCK_SEPARATOR}{text}" if crumb else text
            if len(self.pieces) == self.limits.max_chunks:
                raise JobRejected(f"The file makes more than {self.limits.max_chunks} documents "
                                  "(knowledge.max_file_documents); split it or raise the limit.")
            self.pieces.append(piece[: self.limits.hard_max])
        self.body, self.size, self.last_was_prose = [], 0, False


def _split_prose(text: str, size: int) -> Iterator[str]:
    """Pieces of at most `size` characters, cut after a sentence end, else at a space, else anywhere."""
    while len(text) > size:
        window = text[:size]
        cut = max(window.rfind(end) + len(end) for end in SENTENCE_ENDS)
        if cut < size // 3:
            cut = window.rfind(" ") + 1
        if cut < size // 3:
            cut = size
        yield text[:cut].strip()
        text = text[cut:].lstrip()
    if text:
        yield text


def _split_lines(text: str, size: int) -> Iterator[str]:
    """A code block or table whole, unless it is longer than `size`: then at line ends (a line
    longer than `size` is cut)."""
    size = max(1, size)
    if len(text) <= size:
        yield text
        return
    current: list[str] = []
    length = 0
    for line in text.split("\n"):
        while len(line) > size:
            yield line[:size]
            line = line[size:]
        if current and length + len(line) + 1 > size:
            yield "\n".join(current)
            current, length = [], 0
        current.append(line)
        length += len(line) + 1
    if current:
        yield "\n".join(current)


def _tail(text: str, size: int) -> str:
    """The last `size` characters of `text`, starting at a word."""
    if size <= 0 or len(text) <= size:
        return text if size > 0 else ""
    tail = text[-size:]
    space = tail.find(" ")
    return tail[space + 1:] if 0 <= space < size // 2 else tail
