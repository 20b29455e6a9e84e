"""The retrieval stage of a turn: a gateway's knowledgeCollections searched before the model call.

The collections' `context` texts join the system instructions. With queryStrategy QueryFunction the
model gets the `knowledge_search` tool instead of injected documents; otherwise the strategy's
queries are searched (knowledgeBaseMaximumResults, knowledgeBaseMinimumScore, rerankerName,
knowledgeUseReferences) and the documents found are put at the beginning of the last user message,
only when that message has text (knowledgeUseMetaDescriptions adds each document's metadata).
`aivax://query-collection` protocol functions become search tools here as well.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from botline.domain.gateways import Gateway, QueryStrategy
from botline.gateway.caller import Caller
from botline.gateway.context import ChatMessage
from botline.gateway.extensions import Preparation, UsedDocument
from botline.gateway.tools import Tool
from botline.knowledge import tools
from botline.knowledge.context import render
from botline.knowledge.search import KnowledgeSearch, Reranker, SearchRequest
from botline.knowledge.semantic import UsageScope
from botline.knowledge.strategies import QueryWriter, text_of
from botline.store.base import Store, StoreError

log = logging.getLogger(__name__)


def inject(messages: Sequence[ChatMessage], block: str) -> list[ChatMessage]:
    """The conversation with `block` at the beginning of the last user message (a copy; None when it has no text)."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            changed: ChatMessage = {**message, "content": f"{block}\n\n{content}"}
        else:
            changed = {**message, "content": [{"type": "text", "text": block}, *(content or [])]}
        return [*messages[:index], changed, *messages[index + 1:]]
    return list(messages)


def _reranker(name: str | None) -> Reranker:
    try:
        return Reranker.parse(name)
    except ValueError:
        log.warning("rerankerName %r is unknown; using smart", name)
        return Reranker.SMART


class RetrievalStage:
    def __init__(self, store: Store, search: KnowledgeSearch, writer: QueryWriter) -> None:
        self._store = store
        self._search = search
        self._writer = writer

    def handles(self, callback_url: str) -> bool:
        return tools.handles(callback_url)

    async def prepare(self, gateway: Gateway, caller: Caller, messages: Sequence[ChatMessage]) -> Preparation:
        params = gateway.parameters
        offered: list[Tool] = [
            await tools.query_collection_tool(f, gateway.account_id, self._store, self._search, gateway_id=gateway.id)
            for f in params.protocol_functions if tools.handles(f.callback_url)
        ]
        if not params.knowledge_collections:
            return Preparation(tools=offered)
        collections = [c for c in [await self._store.collections.get(gateway.account_id, i)
                                   for i in dict.fromkeys(params.knowledge_collections)] if c is not None]
        instructions = [c.context for c in collections if c.context]
        settings = tools.SearchSettings(
            collection_ids=[c.id for c in collections],
            top=max(1, min(tools.TOP_MAX, params.knowledge_base_maximum_results)),
            min_score=params.knowledge_base_minimum_score, reranker=_reranker(params.reranker_name),
            references=params.knowledge_use_references, metadata=params.knowledge_use_meta_descriptions,
            gateway_id=gateway.id,
        )
        if not collections:
            return Preparation(tools=offered)
        if params.query_strategy is QueryStrategy.QUERY_FUNCTION:
            offered.append(tools.CollectionsSearchTool(tools.KNOWLEDGE_TOOL, tools.KNOWLEDGE_DESCRIPTION, self._search,
                                                       settings))
            return Preparation(instructions=instructions, tools=offered)
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        if last_user is None or not text_of(last_user).strip():
            return Preparation(instructions=instructions, tools=offered)
        try:
            queries = await self._writer.queries(gateway, caller, messages)
            results = await self._search.search(SearchRequest(
                account_id=gateway.account_id, collection_ids=settings.collection_ids, terms=queries, top=settings.top,
                min_score=settings.min_score, reranker=settings.reranker, include_references=settings.references,
                usage=UsageScope(gateway.id, caller.session_id),
            )) if queries else []
        except StoreError as exc:  # the turn goes on without documents rather than failing
            log.warning("knowledge not searched: %s", exc)
            return Preparation(instructions=instructions, tools=offered)
        if not results:
            return Preparation(instructions=instructions, tools=offered)
        named = {c.id: c.name for c in collections}
        used = [UsedDocument(id=r.document.id, name=r.document.name, collection_id=r.document.collection_id,
                             score=r.score, collection_name=named.get(r.document.collection_id, ""))
                for r in results]
        return Preparation(instructions=instructions, tools=offered, documents=used,
                           messages=inject(messages, render(results, use_metadata=settings.metadata)))
