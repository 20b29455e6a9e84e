"""PDF text through a real worker pool: page, character, decompression and time caps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from botline.parsing import JobRejected, JobTimedOut, PdfExtractor, PdfLimits, PoolLimits, WorkerPool
from tests.support.pdfs import pdf, slow_pdf, text_page

LIMITS = PdfLimits(max_pages=3, max_chars=1000, max_stream_bytes=64 * 1024)


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    async with WorkerPool(PoolLimits(workers=1, timeout_seconds=0.5, max_queued=4),
                          preload=[PdfExtractor.__module__]) as running:
        yield running


def extractor(pool: WorkerPool, **overrides: int) -> PdfExtractor:
    limits = PdfLimits(**{**LIMITS.__dict__, **overrides})
    return PdfExtractor(pool, limits, max_input_bytes=1024 * 1024)


async def test_every_page_is_read_when_within_the_caps(pool: WorkerPool) -> None:
    text = await extractor(pool).extract(pdf([text_page("Invoice 1234"), text_page("Total 99")]))
    assert text.text == "Invoice 1234\n\nTotal 99"
    assert (text.pages_read, text.page_count, text.truncated) == (2, 2, False)


async def test_pages_past_the_page_cap_are_not_read(pool: WorkerPool) -> None:
    text = await extractor(pool).extract(pdf([text_page(f"page {n}") for n in range(1, 9)]))
    assert text.text == "page 1\n\npage 2\n\npage 3"
    assert (text.pages_read, text.page_count, text.truncated) == (3, 8, True)


async def test_extraction_stops_at_the_character_cap(pool: WorkerPool) -> None:
    text = await extractor(pool, max_chars=30, max_pages=100).extract(pdf([text_page("x" * 20)] * 50))
    assert text.text == "x" * 20 + "\n\n" + "x" * 8
    assert text.pages_read == 2 and text.truncated  # the other 48 pages were never extracted


async def test_a_stream_that_inflates_past_the_cap_is_refused(pool: WorkerPool) -> None:
    bomb = pdf([b"BT /F1 12 Tf 72 720 Td (" + b"a" * 1_000_000 + b") Tj ET"], compress=True)
    assert len(bomb) < 10_000
    with pytest.raises(JobRejected) as caught:
        await extractor(pool).extract(bomb)
    assert caught.value.message == "The PDF could not be read."


async def test_a_file_that_is_not_a_pdf_is_refused(pool: WorkerPool) -> None:
    with pytest.raises(JobRejected):
        await extractor(pool).extract(b"%PDF-1.4 this is not really a PDF")


async def test_an_input_over_the_size_cap_never_reaches_a_worker(pool: WorkerPool) -> None:
    with pytest.raises(JobRejected):
        await PdfExtractor(pool, LIMITS, max_input_bytes=1024).extract(minimal := pdf([text_page("a" * 2000)]))
    assert len(minimal) > 1024


async def test_a_slow_pdf_times_out_and_the_next_one_is_read(pool: WorkerPool) -> None:
    with pytest.raises(JobTimedOut):
        await extractor(pool, max_stream_bytes=10 * 1024 * 1024).extract(slow_pdf())
    assert (await extractor(pool).extract(pdf([text_page("still here")]))).text == "still here"
