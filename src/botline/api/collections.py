"""Knowledge collections (seed section "Collections"): CRUD, reset, re-index and a streamed JSONL export."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field

from botline.api.http import ApiError, json_response, message_response, not_found, read_model
from botline.api.openapi import Answer, MessageAnswer, documented
from botline.api.state import principal, services
from botline.domain.knowledge import BrowseQuery, Collection, DocumentOrder, split_tags
from botline.domain.limits import LongText, Name, Text
from botline.knowledge.jsonl import export_lines

routes = web.RouteTableDef()

EXPORT_PAGE = 500
JSONL = "application/jsonl"


class CollectionBody(BaseModel):
    collection_name: Annotated[Name, Field(min_length=1, alias="collectionName")]
    context: LongText | None = None
    tags: Text | None = None
    """Comma-separated; answered as an array."""


class CollectionCreated(BaseModel):
    collectionId: str


def _view(collection: Collection) -> dict[str, Any]:
    wire = collection.wire()
    return {"id": collection.id, "name": collection.name, "context": collection.context, "tags": collection.tags,
            "createdAt": wire["createdAt"]}


async def _collection(request: web.Request) -> Collection:
    collection = await services(request).store.collections.get(principal(request).account.id,
                                                               request.match_info["id"])
    if collection is None:
        raise not_found("Collection")
    return collection


@routes.get("/api/v1/collections")
@documented("List the account's collections, oldest first.")
async def list_collections(request: web.Request) -> web.Response:
    collections = await services(request).store.collections.list_for_account(principal(request).account.id)
    return json_response([_view(c) for c in collections])


@routes.post("/api/v1/collections")
@documented("Create a collection.", body=CollectionBody, answer=CollectionCreated)
async def create_collection(request: web.Request) -> web.Response:
    body = await read_model(request, CollectionBody)
    svc = services(request)
    account_id = principal(request).account.id
    limit = svc.settings.knowledge.max_collections_per_account
    if len(await svc.store.collections.list_for_account(account_id)) >= limit:
        raise ApiError(409, f"This account already has {limit} collections, the most allowed "
                            "(knowledge.max_collections_per_account).")
    collection = Collection(account_id=account_id, name=body.collection_name, context=body.context,
                            tags=split_tags(body.tags), created_at=svc.clock.now())
    await svc.store.collections.create(collection)
    return json_response({"collectionId": collection.id})


@routes.put("/api/v1/collections/{id}")
@documented("Edit a collection's name, context and tags.", body=CollectionBody, answer=MessageAnswer)
async def edit_collection(request: web.Request) -> web.Response:
    body = await read_model(request, CollectionBody)
    saved = await services(request).store.collections.edit(
        principal(request).account.id, request.match_info["id"], name=body.collection_name, context=body.context,
        tags=split_tags(body.tags),
    )
    if not saved:
        raise not_found("Collection")
    return message_response("Collection saved successfully.")


@routes.get("/api/v1/collections/{id}")
@documented("A collection with how many of its documents are indexed and queued.")
async def view_collection(request: web.Request) -> web.Response:
    collection = await _collection(request)
    state = await services(request).store.collections.state(collection.id)
    return json_response({**_view(collection), "state": {
        "total": state.total, "indexed": state.indexed, "queued": state.queued, "cancelled": state.cancelled}})


@routes.delete("/api/v1/collections/{id}")
@documented("Delete a collection and its documents.", answer=MessageAnswer)
async def delete_collection(request: web.Request) -> web.Response:
    if not await services(request).store.collections.delete(principal(request).account.id, request.match_info["id"]):
        raise not_found("Collection")
    await services(request).knowledge.forget(request.match_info["id"])
    return message_response("Collection deleted successfully.")


@routes.delete("/api/v1/collections/{id}/reset-only")
@documented("Delete every document of a collection; the collection stays.")
async def reset_collection(request: web.Request) -> web.Response:
    collection = await _collection(request)
    removed = await services(request).store.documents.clear(collection.account_id, collection.id)
    await services(request).knowledge.forget(collection.id)
    return json_response({"message": "Collection cleaned successfully.", "removed": removed})


@routes.delete("/api/v1/collections/{id}/vectors-only")
@documented("Queue every document of a collection to be indexed and embedded again (they stay searchable meanwhile).")
async def reindex_collection(request: web.Request) -> web.Response:
    collection = await _collection(request)
    svc = services(request)
    queued = await svc.store.documents.requeue(collection.account_id, collection.id, now=svc.clock.now())
    if queued:
        await svc.indexer.queued()
    return json_response({"message": "Outdated documents enqueued.", "enqueued": queued})


@routes.get("/api/v1/collections/{id}/export.jsonl")
@documented("Every document of the collection as JSONL, in the import's line format (streamed).",
            media_type=None, answers={200: Answer("One JSON object per line.", media_type=JSONL)})
async def export_collection(request: web.Request) -> web.StreamResponse:
    collection = await _collection(request)
    store = services(request).store
    response = web.StreamResponse(headers={
        "Content-Type": JSONL, "Content-Disposition": f'attachment; filename="{collection.id}.jsonl"'})
    await response.prepare(request)
    offset = 0
    while True:
        page = await store.documents.browse(collection.account_id, collection.id, BrowseQuery(
            order=DocumentOrder.CREATED_ASC, offset=offset, limit=EXPORT_PAGE))
        if page:
            await response.write(b"".join(export_lines(page)))
        if len(page) < EXPORT_PAGE:
            break
        offset += EXPORT_PAGE
    await response.write_eof()
    return response
