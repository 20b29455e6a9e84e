"""Documents of a collection (seed section "Documents"): browse, JSONL import, upsert by name, get, delete."""

from __future__ import annotations

import shlex
from typing import Annotated, Any

from aiohttp import BodyPartReader, web
from pydantic import BaseModel, Field

from botline.api.http import ApiError, json_response, message_response, not_found, query_int, query_text, read_model
from botline.api.openapi import MessageAnswer, documented
from botline.api.state import principal, services
from botline.domain.knowledge import (
    REFERENCE_MAX,
    BrowseQuery,
    Collection,
    DocumentFilter,
    DocumentOrder,
    DocumentWrite,
    IndexState,
    KnowledgeDocument,
    LabelChanges,
)
from botline.domain.limits import DOCUMENT_MAX, TEXT_MAX, Items, JsonObject, Name
from botline.knowledge.jsonl import ImportRefused, parse

routes = web.RouteTableDef()

PREVIEW_CHARS = 200
PAGE_DEFAULT, PAGE_MAX = 100, 1000
FILTER_FLAGS = {"-t": "tag", "-n": "name", "-r": "reference", "-c": "content", "-i": "document_id"}
ORDERS = ", ".join(o.value for o in DocumentOrder)
STATES = {"queued": IndexState.QUEUED, "indexed": IndexState.INDEXED, "cancelled": IndexState.CANCELLED}
FILE_FIELD, MODE_FIELD, SYNC = "documents", "insert-mode", "sync"
READ_CHUNK = 64 * 1024


class DocumentBody(BaseModel):
    contents: Annotated[str, Field(min_length=1, max_length=DOCUMENT_MAX)]
    name: Annotated[Name, Field(min_length=1)]
    reference: Annotated[str | None, Field(default=None, max_length=REFERENCE_MAX)]
    tags: Items[Name] | None = None
    metadata: JsonObject | None = None


class UpsertAnswer(BaseModel):
    documentId: str
    state: str


class ImportAnswer(BaseModel):
    enqueued: int
    skipped: int
    deleted: int


def parse_filter(raw: str) -> DocumentFilter:
    """`-t tag -n name -r "a reference" -c content -i id`; 400 naming what is wrong."""
    try:
        words = shlex.split(raw)
    except ValueError as exc:
        raise ApiError(400, f"Invalid value for filter: {exc}.") from exc
    values: dict[str, str] = {}
    for flag, value in zip(words[::2], [*words[1::2], None], strict=False):
        if flag not in FILTER_FLAGS:
            raise ApiError(400, f"Invalid value for filter: unknown flag {flag!r}; use -t, -n, -r, -c or -i.")
        if value is None:
            raise ApiError(400, f"Invalid value for filter: {flag} needs a value.")
        values[FILTER_FLAGS[flag]] = value
    return DocumentFilter(**values)


def _browse_query(request: web.Request) -> BrowseQuery:
    order_raw = query_text(request, "order_by", DocumentOrder.CREATED_DESC.value).strip().lower()
    order_raw = order_raw.replace("_asce", "_asc") if order_raw.endswith("_asce") else order_raw
    try:
        order = DocumentOrder(order_raw)
    except ValueError:
        raise ApiError(400, f"Invalid value for order_by: {order_raw!r}; accepted values are {ORDERS}.") from None
    state_raw = query_text(request, "state").strip().lower()
    if state_raw and state_raw not in STATES:
        raise ApiError(400, f"Invalid value for state: {state_raw!r}; accepted values are queued, indexed, cancelled.")
    offset, limit = query_int(request, "offset", 0), query_int(request, "limit", PAGE_DEFAULT)
    if offset < 0 or not 1 <= limit <= PAGE_MAX:
        raise ApiError(400, f"Query parameters offset must be 0 or more and limit between 1 and {PAGE_MAX}.")
    return BrowseQuery(filter=parse_filter(query_text(request, "filter", max_length=TEXT_MAX)), order=order,
                       state=STATES.get(state_raw), offset=offset, limit=limit)


def _summary(document: KnowledgeDocument) -> dict[str, Any]:
    return {"id": document.id, "updatedAt": document.wire()["updatedAt"], "name": document.name,
            "reference": document.reference, "tags": document.tags,
            "contentsPreview": document.contents[:PREVIEW_CHARS], "indexState": document.state.value}


async def collection_of(request: web.Request) -> Collection:
    collection = await services(request).store.collections.get(principal(request).account.id,
                                                               request.match_info["id"])
    if collection is None:
        raise not_found("Collection")
    return collection


@routes.get("/api/v1/collections/{id}/documents")
@documented("Browse a collection's documents.", query={
    "filter": "-t tag, -n name (contains), -r reference, -c content (contains), -i id; values may be quoted.",
    "order_by": f"One of {ORDERS} (default created_at_desc).",
    "state": "queued, indexed or cancelled.",
    "offset": "Documents to skip (default 0).", "limit": f"Documents to answer, 1–{PAGE_MAX} (default {PAGE_DEFAULT}).",
})
async def browse_documents(request: web.Request) -> web.Response:
    query = _browse_query(request)
    collection = await collection_of(request)
    documents = await services(request).store.documents.browse(collection.account_id, collection.id, query)
    return json_response([_summary(d) for d in documents])


async def _read_import(request: web.Request, max_bytes: int) -> tuple[bytes, bool]:
    """The multipart `documents` file (413 past `max_bytes`) and whether insert-mode is sync."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(415, "Send the JSONL file as multipart/form-data in a field named documents.")
    sync = query_text(request, MODE_FIELD).strip().lower() == SYNC
    data: bytes | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == FILE_FIELD:
            chunks, size = [], 0
            while chunk := await part.read_chunk(READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(413, f"The JSONL file is larger than {max_bytes} bytes "
                                        "(knowledge.max_import_bytes).")
                chunks.append(chunk)
            data = b"".join(chunks)
        elif part.name == MODE_FIELD:
            sync = (await part.text()).strip().lower()[:16] == SYNC
    if data is None:
        raise ApiError(400, "The multipart field documents (the JSONL file) is missing.")
    return data, sync


@routes.post("/api/v1/collections/{id}/documents")
@documented("Import documents from a JSONL file (multipart field documents; insert-mode=sync deletes the rest).",
            answer=ImportAnswer, body_required=False)
async def import_documents(request: web.Request) -> web.Response:
    """The whole file is checked before anything is written: a bad line answers 400 naming it, and
    nothing of the file is applied."""
    collection = await collection_of(request)
    svc = services(request)
    limits = svc.settings.knowledge
    data, sync = await _read_import(request, limits.max_import_bytes)
    try:
        writes = parse(data, max_lines=limits.max_import_lines, max_chars=limits.max_document_chars)
    except ImportRefused as exc:
        raise ApiError(400, str(exc)) from exc
    outcome = await svc.store.documents.write(collection.account_id, collection.id, writes, now=svc.clock.now(),
                                              labels=LabelChanges.SKIP, sync=sync)
    if outcome is None:
        raise not_found("Collection")
    if outcome.enqueued:
        await svc.indexer.queued()
    return json_response({"enqueued": outcome.enqueued, "skipped": outcome.skipped, "deleted": outcome.deleted})


@routes.put("/api/v1/collections/{id}/documents")
@documented("Create or update one document, matched by name.", body=DocumentBody, answer=UpsertAnswer)
async def upsert_document(request: web.Request) -> web.Response:
    body = await read_model(request, DocumentBody)
    svc = services(request)
    if len(body.contents) > svc.settings.knowledge.max_document_chars:
        raise ApiError(400, f"Invalid value for contents: at most {svc.settings.knowledge.max_document_chars} "
                            "characters are accepted (knowledge.max_document_chars).")
    write = DocumentWrite(name=body.name, contents=body.contents, reference=body.reference, tags=body.tags,
                          metadata=body.metadata)
    outcome = await svc.store.documents.write(principal(request).account.id, request.match_info["id"], [write],
                                              now=svc.clock.now(), labels=LabelChanges.SAVE)
    if outcome is None:
        raise not_found("Collection")
    [(document_id, state)] = outcome.results
    if outcome.enqueued:
        await svc.indexer.queued()
    return json_response({"documentId": document_id, "state": state.value})


@routes.get("/api/v1/collections/{id}/documents/{document_id}")
@documented("A document with its text, counts and index state.")
async def view_document(request: web.Request) -> web.Response:
    document = await services(request).store.documents.get(
        principal(request).account.id, request.match_info["id"], request.match_info["document_id"])
    if document is None:
        raise not_found("Document")
    wire = document.wire()
    return json_response({
        "id": document.id, "name": document.name, "state": document.state.value, "contents": document.contents,
        "reference": document.reference, "tags": document.tags, "createdAt": wire["createdAt"],
        "updatedAt": wire["updatedAt"], "indexedAt": wire["indexedAt"], "indexError": document.index_error,
        "characterCount": len(document.contents), "wordCount": document.word_count,
        "approximateTokenCount": document.approximate_token_count, "metadata": document.metadata,
    })


@routes.delete("/api/v1/collections/{id}/documents/{document_id}")
@documented("Delete a document (it is never found by a search again).", answer=MessageAnswer)
async def delete_document(request: web.Request) -> web.Response:
    deleted = await services(request).store.documents.delete(
        principal(request).account.id, request.match_info["id"], request.match_info["document_id"])
    if not deleted:
        raise not_found("Document")
    await services(request).knowledge.forget(request.match_info["id"], [request.match_info["document_id"]])
    return message_response("Document removed.")
