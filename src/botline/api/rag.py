"""Search and answer over collections (seed section "RAG"): POST /api/v1/query and /api/v1/answer."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field

from botline.api.http import ApiError, json_response, read_model
from botline.api.openapi import documented
from botline.api.state import principal, services
from botline.domain.gateways import Gateway
from botline.domain.limits import Items, Name, Text
from botline.knowledge.context import render
from botline.knowledge.search import Reranker, SearchRequest, SearchResult

routes = web.RouteTableDef()

TOP_MAX = 128
ANSWER_INSTRUCTION = (
    "Answer the question using only the documents below. If they do not contain the answer, say that the "
    "knowledge base does not say. Answer in the language of the question."
)


class QueryBody(BaseModel):
    terms: Items[Text] | None = None
    term: Text | None = None
    collections: Annotated[Items[Name], Field(min_length=1)]
    top: Annotated[int, Field(ge=1, le=TOP_MAX)] = 5
    min_score: Annotated[float, Field(ge=0, le=1, alias="minScore")] = 0.2
    reranker: Name | None = None
    include_references: Annotated[bool, Field(alias="includeReferences")] = False


def result_view(result: SearchResult) -> dict[str, Any]:
    document = result.document
    return {
        "documentId": document.id, "documentName": document.name, "documentContent": document.contents,
        "collectionId": document.collection_id, "score": round(result.score, 6), "metadata": document.metadata,
        "referencedDocuments": [{"documentId": r.id, "documentContent": r.contents} for r in result.references],
    }


async def _search(request: web.Request) -> tuple[str, list[SearchResult]]:
    body = await read_model(request, QueryBody)
    terms = [t for t in [*(body.terms or []), *([body.term] if body.term else [])] if t.strip()]
    if not terms:
        raise ApiError(400, "Invalid value for terms: give at least one non-empty search term (terms or term).")
    try:
        reranker = Reranker.parse(body.reranker)
    except ValueError as exc:
        raise ApiError(400, f"Invalid value for reranker: {exc}.") from exc
    svc = services(request)
    account_id = principal(request).account.id
    for collection_id in dict.fromkeys(body.collections):
        if await svc.store.collections.get(account_id, collection_id) is None:
            raise ApiError(404, f"Collection {collection_id} not found.")
    results = await svc.knowledge.search(SearchRequest(
        account_id=account_id, collection_ids=list(dict.fromkeys(body.collections)), terms=terms, top=body.top,
        min_score=body.min_score, reranker=reranker, include_references=body.include_references,
    ))
    return "\n".join(terms), results


@routes.post("/api/v1/query")
@documented("Search collections: the best documents for the terms, scored 0–1.", body=QueryBody)
async def query(request: web.Request) -> web.Response:
    _, results = await _search(request)
    return json_response([result_view(r) for r in results])


async def _answer_gateway(request: web.Request) -> Gateway:
    svc = services(request)
    account_id = principal(request).account.id
    configured = svc.settings.knowledge.answer_gateway
    if configured:
        gateway = (await svc.store.gateways.get_by_slug(account_id, configured)
                   or await svc.store.gateways.get(account_id, configured))
        if gateway is not None:
            return gateway
    for gateway in await svc.store.gateways.list_for_account(account_id):
        if gateway.parameters.base_address and gateway.parameters.model_name:
            return gateway
    raise ApiError(409, "No AI gateway can write the answer: create one in this account (or set "
                        "knowledge.answer_gateway).")


@routes.post("/api/v1/answer")
@documented("Search collections and have a model answer from the documents found.", body=QueryBody, upstream=True)
async def answer(request: web.Request) -> web.Response:
    """The model is the gateway named by knowledge.answer_gateway (slug or id in the calling account),
    else the account's oldest gateway with a model."""
    question, results = await _search(request)
    gateway = await _answer_gateway(request)
    text = await services(request).asker.ask(gateway, [
        {"role": "system", "content": ANSWER_INSTRUCTION},
        {"role": "user", "content": f"{render(results)}\n\nQuestion: {question}"},
    ])
    return json_response({"answer": text, "queryResults": [result_view(r) for r in results]})
