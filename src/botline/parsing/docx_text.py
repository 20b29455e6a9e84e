"""DOCX to `Block`s with python-docx, in a parsing worker.

A DOCX file is a zip of XML parts: before python-docx opens it, the declared unpacked size of the
parts is checked against `max_unpacked_bytes`, so a zip bomb is refused without being inflated (the
worker's memory limit and time limit are the second line).
"""

from __future__ import annotations

import io
import zipfile

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from botline.knowledge.chunking import Block, Kind
from botline.parsing.errors import JobRejected
from botline.parsing.markup import CELL_SEPARATOR

UNREADABLE = "The DOCX file could not be read."
HEADING_STYLES = {"title": 1, **{f"heading {n}": n for n in range(1, 10)}}
CODE_STYLES = frozenset({"code", "html preformatted", "macro text", "source code", "plain text"})
MAX_PARTS = 10_000


def docx_blocks(blob: bytes, max_unpacked_bytes: int) -> list[Block]:
    """Paragraphs (styles `Title`/`Heading N` are headings, code styles code) and tables, in body order."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            parts = archive.infolist()
            if len(parts) > MAX_PARTS or sum(p.file_size for p in parts) > max_unpacked_bytes:
                raise JobRejected("The DOCX file unpacks to more than the size botline reads "
                                  "(parsing.max_stream_bytes).")
        document = docx.Document(io.BytesIO(blob))
        blocks: list[Block] = []
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                blocks.append(_paragraph(item))
            else:
                blocks.append(Block(Kind.TABLE, _table(item)))
    except JobRejected:
        raise
    except Exception as exc:  # a bad zip, lxml's XMLSyntaxError, python-docx's KeyErrors on missing parts
        raise JobRejected(UNREADABLE) from exc
    return blocks


def _paragraph(paragraph: Paragraph) -> Block:
    style = (paragraph.style.name if paragraph.style is not None and paragraph.style.name else "").lower()
    if style in HEADING_STYLES:
        return Block(Kind.HEADING, paragraph.text, min(HEADING_STYLES[style], 6))
    if style in CODE_STYLES:
        return Block(Kind.CODE, paragraph.text)
    return Block(Kind.PARAGRAPH, paragraph.text)


def _table(table: Table) -> str:
    """One line per row, cells joined by " | " (a merged cell is written once)."""
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(CELL_SEPARATOR.join(cells))
    return "\n".join(rows)
