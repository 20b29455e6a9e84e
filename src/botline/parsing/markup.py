"""Plain text, Markdown and HTML to `Block`s (headings, paragraphs, code blocks, tables), in reading order.

Run in a parsing worker. Every reader is a single pass over the text with no regular expressions,
so its time is linear in the input (already capped by knowledge.max_file_bytes).
"""

from __future__ import annotations

from html.parser import HTMLParser

from botline.knowledge.chunking import Block, Kind

FENCES = ("```", "~~~")
SKIPPED_HTML = frozenset({"script", "style", "template", "noscript", "head", "svg", "math", "iframe", "object"})
HEADINGS_HTML = {f"h{n}": n for n in range(1, 7)}
BLOCKS_HTML = frozenset({
    "p", "div", "li", "ul", "ol", "br", "hr", "section", "article", "main", "header", "footer", "nav", "aside",
    "blockquote", "dd", "dt", "dl", "figure", "figcaption", "form", "address", "details", "summary", "body",
})
CELLS_HTML = frozenset({"td", "th"})
VOID_HTML = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"})
CELL_SEPARATOR = " | "


def decode(blob: bytes) -> str:
    """UTF-8 (a BOM is dropped), else Windows-1252, the usual encoding of older Western files."""
    try:
        return blob.decode("utf-8-sig")
    except UnicodeDecodeError:
        return blob.decode("cp1252", errors="replace")


def text_blocks(text: str) -> list[Block]:
    """Paragraphs are separated by blank lines; a paragraph's own line breaks are kept."""
    blocks: list[Block] = []
    lines: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            lines.append(line.rstrip())
        elif lines:
            blocks.append(Block(Kind.PARAGRAPH, "\n".join(lines)))
            lines = []
    return blocks


def markdown_blocks(text: str) -> list[Block]:
    """ATX headings (`#` to `######`), fenced code (``` or ~~~), pipe tables (lines starting with `|`);
    everything else is paragraphs separated by blank lines. Setext headings and indented code are
    read as paragraphs."""
    blocks: list[Block] = []
    lines: list[str] = []
    kind = Kind.PARAGRAPH
    fence = ""

    def close() -> None:
        nonlocal lines, kind
        if lines:
            blocks.append(Block(kind, "\n".join(lines)))
        lines, kind = [], Kind.PARAGRAPH

    for line in text.splitlines():
        stripped = line.strip()
        if fence:
            lines.append(line)
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                close()
                fence = ""
            continue
        opening = next((f for f in FENCES if stripped.startswith(f) and len(line) - len(line.lstrip()) < 4), "")
        if opening:
            close()
            kind, fence = Kind.CODE, opening
            lines.append(line)
            continue
        level = len(stripped) - len(stripped.lstrip("#"))
        if 1 <= level <= 6 and (len(stripped) == level or stripped[level] == " "):
            close()
            blocks.append(Block(Kind.HEADING, stripped[level:].strip().rstrip("#").strip(), level))
            continue
        is_row = stripped.startswith("|")
        if (lines and (kind is Kind.TABLE) != is_row) or not stripped:
            close()
        if stripped:
            kind = Kind.TABLE if is_row else Kind.PARAGRAPH
            lines.append(line.rstrip())
    close()
    return blocks


class _HtmlReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.words: list[str] = []
        self.heading = 0
        self.skipping: list[str] = []
        self.pre = 0
        self.pre_text: list[str] = []
        self.tables = 0
        self.rows: list[str] = []
        self.cells: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping:
            if tag == self.skipping[-1] and tag not in VOID_HTML:
                self.skipping.append(tag)
            return
        if tag in SKIPPED_HTML:
            self.skipping.append(tag)
        elif tag == "pre":
            self.flush()
            self.pre += 1
        elif self.pre:
            return
        elif tag == "table":
            if not self.tables:
                self.flush()
            self.tables += 1
        elif self.tables:
            if tag in CELLS_HTML or tag == "tr":
                self.end_cell()
        elif tag in HEADINGS_HTML:
            self.flush()
            self.heading = HEADINGS_HTML[tag]
        elif tag in BLOCKS_HTML:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
            if not self.pre:
                self.blocks.append(Block(Kind.CODE, "".join(self.pre_text)))
                self.pre_text = []
        elif self.pre:
            return
        elif tag == "table" and self.tables:
            self.tables -= 1
            if not self.tables:
                self.end_row()
                self.blocks.append(Block(Kind.TABLE, "\n".join(self.rows)))
                self.rows = []
        elif self.tables:
            if tag in CELLS_HTML:
                self.end_cell()
            elif tag == "tr":
                self.end_row()
        elif tag in HEADINGS_HTML or tag in BLOCKS_HTML:
            self.flush()

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.pre:
            self.pre_text.append(data)
        else:
            self.words.extend(data.split())

    def end_cell(self) -> None:
        if self.words:
            self.cells.append(" ".join(self.words))
            self.words = []

    def end_row(self) -> None:
        self.end_cell()
        if self.cells:
            self.rows.append(CELL_SEPARATOR.join(self.cells))
            self.cells = []

    def flush(self) -> None:
        if self.words:
            text = " ".join(self.words)
            self.blocks.append(Block(Kind.HEADING, text, self.heading) if self.heading else Block(Kind.PARAGRAPH, text))
            self.words = []
        self.heading = 0


def html_blocks(text: str) -> list[Block]:
    """`h1`–`h6` are headings, `pre` code, `table` a table (one line per row, cells joined by " | "),
    block elements (`p`, `li`, `div`, ...) end paragraphs; scripts, styles and `head` are skipped."""
    reader = _HtmlReader()
    reader.feed(text)
    reader.close()
    if reader.pre_text:
        reader.blocks.append(Block(Kind.CODE, "".join(reader.pre_text)))
    if reader.tables:
        reader.end_row()
        reader.blocks.append(Block(Kind.TABLE, "\n".join(reader.rows)))
    reader.flush()
    return reader.blocks
