"""Uploading files into a collection through real HTTP: each format becomes searchable documents
`{file}:{n}` sharing a reference; re-uploads replace; bad files are refused with nothing written."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import docx
import pytest

from tests.support.knowledge import create_collection, kb_server, names, query, wait_indexed
from tests.support.pdfs import pdf, text_page
from tests.support.server import RunningServer, make_settings, running_server

__all__ = ["kb_server"]

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", knowledge={
        "chunk_chars": 300, "chunk_overlap_chars": 40, "max_file_bytes": 64 * 1024, "max_file_documents": 50,
    })
    async with running_server(settings) as running:
        yield running


async def upload(server: RunningServer, collection_id: str, filename: str, data: bytes, content_type: str,
                 **fields: str) -> tuple[int, Any]:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename=filename, content_type=content_type)
    return await server.call("POST", f"/api/v1/collections/{collection_id}/files", data=form)


async def documents(server: RunningServer, collection_id: str) -> dict[str, dict[str, Any]]:
    status, body = await server.call("GET", f"/api/v1/collections/{collection_id}/documents?order_by=created_at_asc")
    assert status == 200, body
    return {d["name"]: d for d in body}


def docx_file() -> bytes:
    document = docx.Document()
    document.add_heading("Warranty", level=1)
    document.add_paragraph("Electronics carry a twelve month warranty from the delivery date.")
    document.add_heading("Repairs", level=2)
    document.add_paragraph("Send the product to the authorised workshop listed below.")
    table = document.add_table(rows=2, cols=2)
    for row, (city, shop) in enumerate([("Curitiba", "Oficina Sul"), ("Recife", "Oficina Norte")]):
        table.cell(row, 0).text, table.cell(row, 1).text = city, shop
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


FILES: list[tuple[str, bytes, str, str, str]] = [
    ("manual.md",
     b"# Returns\n\nReturns are accepted within thirty days.\n\n# Shipping\n\nParcels leave in two days.\n",
     "text/markdown", "thirty days returns", "manual.md:1"),
    ("prices.html",
     b"<h1>Prices</h1><p>The gold plan costs 90 reais.</p><h2>Refunds</h2><p>Refunds take a week.</p>",
     "text/html", "gold plan cost", "prices.html:1"),
    ("notes.txt", "Horário de atendimento: segunda a sexta.\n\nO suporte responde por e-mail.".encode(),
     "text/plain", "horario atendimento", "notes.txt:1"),
    ("guide.pdf", pdf([text_page("Invoices are sent on the fifth day."), text_page("Late fees apply after ten days.")]),
     "application/pdf", "late fees", "guide.pdf:1"),
    ("warranty.docx", docx_file(), DOCX, "authorised workshop Recife", "warranty.docx:2"),
]


@pytest.mark.parametrize(("filename", "data", "content_type", "question", "expected"), FILES,
                         ids=[f[0] for f in FILES])
async def test_each_format_becomes_searchable_documents_sharing_a_reference(
    server: RunningServer, filename: str, data: bytes, content_type: str, question: str, expected: str,
) -> None:
    collection_id = await create_collection(server)
    status, answer = await upload(server, collection_id, filename, data, content_type)
    assert status == 200, answer
    assert answer["file"] == filename and answer["reference"] == filename and answer["enqueued"] == answer["documents"]
    await wait_indexed(server, collection_id)
    stored = await documents(server, collection_id)
    assert sorted(stored) == [f"{filename}:{n}" for n in range(1, answer["documents"] + 1)]
    assert {d["reference"] for d in stored.values()} == {filename}
    results = await query(server, [collection_id], question, top=1, minScore=0.05, includeReferences=True)
    assert results[0]["documentName"] == expected
    others = {d["id"] for name, d in stored.items() if name != expected}
    assert {r["documentId"] for r in results[0]["referencedDocuments"]} == others  # the file's other parts


async def test_docx_headings_and_tables_reach_the_documents(server: RunningServer) -> None:
    collection_id = await create_collection(server)
    status, answer = await upload(server, collection_id, "warranty.docx", docx_file(), DOCX)
    assert status == 200, answer
    stored = await documents(server, collection_id)
    status, second = await server.call("GET", f"/api/v1/collections/{collection_id}/documents/"
                                              f"{stored['warranty.docx:2']['id']}")
    assert second["contents"] == ("Warranty > Repairs\n\nSend the product to the authorised workshop listed below."
                                  "\n\nCuritiba | Oficina Sul\nRecife | Oficina Norte")


async def test_uploading_the_file_again_replaces_its_documents(server: RunningServer) -> None:
    collection_id = await create_collection(server)
    fruits = ["apples", "bananas", "cherries", "dates"]
    long = "".join(f"# Part {n}\n\nSection {n} is about {fruit}.\n\n" for n, fruit in enumerate(fruits, 1)).encode()
    status, first = await upload(server, collection_id, "faq.md", long, "text/markdown", reference="faq")
    assert (status, first["documents"], first["reference"]) == (200, 4, "faq")
    short = b"# Part 1\n\nSection 1 is about apples.\n\n# Part 2\n\nSection 2 is about figs.\n"
    status, second = await upload(server, collection_id, "faq.md", short, "text/markdown", reference="faq")
    assert status == 200, second
    assert (second["documents"], second["enqueued"], second["skipped"], second["deleted"]) == (2, 1, 1, 2)
    await wait_indexed(server, collection_id)
    assert sorted(await documents(server, collection_id)) == ["faq.md:1", "faq.md:2"]
    assert await names(server, [collection_id], "dates", minScore=0.01) == []


async def test_bad_uploads_are_refused_and_nothing_is_written(server: RunningServer) -> None:
    collection_id = await create_collection(server)
    status, body = await upload(server, collection_id, "photo.png", b"\x89PNG", "image/png")
    assert status == 415 and "photo.png" in body["message"] and "DOCX" in body["message"]
    status, body = await upload(server, collection_id, "big.txt", b"x " * 40_000, "text/plain")
    assert status == 413 and "knowledge.max_file_bytes" in body["message"]
    status, body = await upload(server, collection_id, "broken.docx", b"not a zip", DOCX)
    assert (status, body["message"]) == (400, "Invalid value for file: The DOCX file could not be read.")
    status, body = await upload(server, collection_id, "empty.pdf", pdf([b""]), "application/pdf")
    assert status == 400 and "no text" in body["message"]
    many = "".join(f"# H{n}\n\ntext {n}\n\n" for n in range(60)).encode()
    status, body = await upload(server, collection_id, "many.md", many, "text/markdown")
    assert status == 400 and "knowledge.max_file_documents" in body["message"]
    status, body = await upload(server, collection_id, "a.txt", b"hello", "text/plain", reference="r" * 65)
    assert status == 400 and "reference" in body["message"]
    assert await documents(server, collection_id) == {}
    status, body = await upload(server, "no-such-collection", "a.txt", b"hello", "text/plain")
    assert status == 404


async def test_a_docx_zip_bomb_is_refused_without_being_unpacked(server: RunningServer) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<" + b"a" * 60_000_000 + b"/>")
    assert len(out.getvalue()) < 64 * 1024
    collection_id = await create_collection(server)
    status, body = await upload(server, collection_id, "bomb.docx", out.getvalue(), DOCX)
    assert status == 400 and "parsing.max_stream_bytes" in body["message"]


async def test_uploads_work_on_both_stores(kb_server: RunningServer) -> None:
    collection_id = await create_collection(kb_server)
    status, answer = await upload(kb_server, collection_id, "faq.md", b"# Pix\n\nPagamentos por Pix caem na hora.\n",
                                  "text/markdown")
    assert status == 200, answer
    await wait_indexed(kb_server, collection_id)
    assert await names(kb_server, [collection_id], "pagamento pix", minScore=0.05) == ["faq.md:1"]


async def test_a_pdf_past_the_page_limit_is_refused_naming_the_key(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'botline.db'}", knowledge={"max_file_pages": 2})
    async with running_server(settings) as server:
        collection_id = await create_collection(server)
        status, body = await upload(server, collection_id, "long.pdf", pdf([text_page(f"page {n}") for n in range(3)]),
                                    "application/pdf")
        assert status == 400 and "3 pages" in body["message"] and "knowledge.max_file_pages" in body["message"]
        status, body = await upload(server, collection_id, "a.txt", b"hi", "text/plain", reference="\u00e9" * 65)
        assert status == 400 and "reference" in body["message"]
        form = aiohttp.FormData()
        form.add_field("file", b"one", filename="a.txt", content_type="text/plain")
        form.add_field("file", b"two", filename="b.txt", content_type="text/plain")
        status, body = await server.call("POST", f"/api/v1/collections/{collection_id}/files", data=form)
        assert status == 400 and "one file" in body["message"]
        assert await documents(server, collection_id) == {}
