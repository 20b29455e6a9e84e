"""The chunker and the readers of uploaded files: what each document made from a file holds."""

from __future__ import annotations

from itertools import pairwise

import pytest

from botline.knowledge.chunking import Block, ChunkLimits, Kind, chunk
from botline.parsing import JobRejected
from botline.parsing.markup import decode, html_blocks, markdown_blocks, text_blocks

LIMITS = ChunkLimits(size=300, overlap=40, max_chunks=100, hard_max=2000)


def sentences(count: int, word: str = "alpha") -> str:
    return " ".join(f"{word} sentence number {n} ends here." for n in range(count))


def test_a_heading_starts_a_new_document_and_every_document_names_its_section() -> None:
    blocks = [
        Block(Kind.HEADING, "Manual", 1), Block(Kind.PARAGRAPH, "Welcome to the manual."),
        Block(Kind.HEADING, "Returns", 2), Block(Kind.PARAGRAPH, "Returns are free within 30 days."),
        Block(Kind.HEADING, "Shipping", 2), Block(Kind.PARAGRAPH, "We ship in two days."),
    ]
    assert chunk(blocks, LIMITS) == [
        "Manual\n\nWelcome to the manual.",
        "Manual > Returns\n\nReturns are free within 30 days.",
        "Manual > Shipping\n\nWe ship in two days.",
    ]


def test_paragraphs_are_packed_whole_up_to_the_size() -> None:
    paragraphs = [Block(Kind.PARAGRAPH, f"Paragraph {n} " + "x" * 80) for n in range(6)]
    pieces = chunk(paragraphs, LIMITS)
    assert all(len(p) <= LIMITS.size for p in pieces) and len(pieces) > 1
    for n in range(6):  # each paragraph sits whole in some piece
        assert any(f"Paragraph {n} " + "x" * 80 in p for p in pieces)


def test_a_long_paragraph_is_cut_at_sentence_ends_and_the_next_piece_repeats_the_overlap() -> None:
    text = sentences(30)
    pieces = chunk([Block(Kind.HEADING, "Policy", 1), Block(Kind.PARAGRAPH, text)], LIMITS)
    assert len(pieces) > 2 and all(len(p) <= LIMITS.size for p in pieces)
    assert all(p.startswith("Policy\n\n") for p in pieces)
    bodies = [p.removeprefix("Policy\n\n") for p in pieces]
    assert bodies[0].endswith("ends here.")  # cut after a sentence, not inside a word
    for before, after in pairwise(bodies):
        carried = after.split("\n\n")[0]
        assert before.endswith(carried) and 0 < len(carried) <= LIMITS.overlap
    for n in range(30):
        assert any(f"number {n} ends here." in b for b in bodies)


def test_code_blocks_and_tables_are_kept_whole_even_past_the_size() -> None:
    code = "\n".join(f"print({n})  # line {n}" for n in range(40))
    table = "\n".join(f"| item {n} | {n} BRL |" for n in range(30))
    pieces = chunk([Block(Kind.PARAGRAPH, "Intro."), Block(Kind.CODE, code), Block(Kind.TABLE, table)], LIMITS)
    assert len(code) > LIMITS.size and len(table) > LIMITS.size
    assert pieces == ["Intro.", code, table]


def test_a_block_past_the_longest_document_is_cut_at_line_ends() -> None:
    code = "\n".join(f"line {n:04d}" for n in range(500))
    pieces = chunk([Block(Kind.CODE, code)], LIMITS)
    assert all(len(p) <= LIMITS.hard_max for p in pieces)
    assert "\n".join(pieces) == code


def test_a_file_making_too_many_documents_is_refused() -> None:
    blocks = [Block(Kind.HEADING, f"Section {n}", 1) if n % 2 == 0 else Block(Kind.PARAGRAPH, "text")
              for n in range(20)]
    with pytest.raises(JobRejected, match=r"knowledge\.max_file_documents"):
        chunk(blocks, ChunkLimits(size=300, overlap=0, max_chunks=5, hard_max=2000))


def test_markdown_headings_fences_and_tables() -> None:
    text = (
        "# Guide\n\nIntro line one\nline two\n\n## Install\n\n```sh\npip install x\n\n# not a heading\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\nAfter the table.\n"
    )
    assert markdown_blocks(text) == [
        Block(Kind.HEADING, "Guide", 1), Block(Kind.PARAGRAPH, "Intro line one\nline two"),
        Block(Kind.HEADING, "Install", 2),
        Block(Kind.CODE, "```sh\npip install x\n\n# not a heading\n```"),
        Block(Kind.TABLE, "| a | b |\n|---|---|\n| 1 | 2 |"), Block(Kind.PARAGRAPH, "After the table."),
    ]


def test_html_structure_is_read_and_scripts_are_skipped() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body><h1>Prices</h1>"
        "<p>Our <b>plans</b> &amp; prices.</p><script>alert('x')</script>"
        "<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Basic</td><td>10</td></tr></table>"
        "<pre>  code\n  kept</pre><ul><li>one</li><li>two</li></ul></body></html>"
    )
    assert html_blocks(html) == [
        Block(Kind.HEADING, "Prices", 1), Block(Kind.PARAGRAPH, "Our plans & prices."),
        Block(Kind.TABLE, "Plan | Price\nBasic | 10"), Block(Kind.CODE, "  code\n  kept"),
        Block(Kind.PARAGRAPH, "one"), Block(Kind.PARAGRAPH, "two"),
    ]


def test_plain_text_paragraphs_and_encodings() -> None:
    assert text_blocks("a\nb\n\n\nc\n") == [Block(Kind.PARAGRAPH, "a\nb"), Block(Kind.PARAGRAPH, "c")]
    assert decode("\ufeffpreço".encode()) == "preço"
    assert decode("preço".encode("cp1252")) == "preço"
