"""Search tools the model can call: `knowledge_search` over a gateway's collections (queryStrategy
QueryFunction) and the `aivax://query-collection` specialist protocol function over one collection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botline.domain.gateways import ProtocolFunction
from botline.gateway.caller import Caller
from botline.gateway.tools import Tool, ToolFailure, ToolSpec, function_spec
from botline.knowledge.context import render
from botline.knowledge.search import KnowledgeSearch, Reranker, SearchRequest
from botline.knowledge.semantic import UsageScope
from botline.store.base import Store

QUERY_MAX = 500
"""Characters of one search the model may send."""
QUERY_COLLECTION = "aivax://query-collection"
QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to look for, in a few words or a question.",
                             "maxLength": QUERY_MAX}},
    "required": ["query"],
}
KNOWLEDGE_TOOL = "knowledge_search"
KNOWLEDGE_DESCRIPTION = (
    "Searches the knowledge base (the organisation's documents) and returns the passages that match. Call it "
    "whenever the answer may depend on those documents: products, prices, policies, procedures."
)
DEFAULT_TOP, DEFAULT_MIN = 5, 0.2
TOP_MAX = 128


@dataclass(frozen=True)
class SearchSettings:
    collection_ids: Sequence[str]
    top: int = DEFAULT_TOP
    min_score: float = DEFAULT_MIN
    reranker: Reranker = Reranker.SMART
    references: bool = False
    metadata: bool = False
    gateway_id: str | None = None
    """The gateway whose tool this is: its searches' query embeddings are recorded in its usage."""


def _query(arguments: dict[str, Any]) -> str:
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ToolFailure("Give the search as a non-empty string in query.")
    return query[:QUERY_MAX]


class CollectionsSearchTool(Tool):
    """Runs a search over fixed collections of the caller's account; the results as text."""

    def __init__(self, name: str, description: str, search: KnowledgeSearch, settings: SearchSettings) -> None:
        self.name = name
        self._description = description
        self._search = search
        self._settings = settings

    def spec(self) -> ToolSpec:
        return function_spec(self.name, self._description, QUERY_SCHEMA)

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        s = self._settings
        results = await self._search.search(SearchRequest(
            account_id=caller.account_id, collection_ids=s.collection_ids, terms=[_query(arguments)], top=s.top,
            min_score=s.min_score, reranker=s.reranker, include_references=s.references,
            usage=None if s.gateway_id is None else UsageScope(s.gateway_id, caller.session_id),
        ))
        return render(results, use_metadata=s.metadata)


def handles(callback_url: str) -> bool:
    return callback_url.startswith(QUERY_COLLECTION + "?")


async def query_collection_tool(
    function: ProtocolFunction, account_id: str, store: Store, search: KnowledgeSearch, *,
    gateway_id: str | None = None,
) -> Tool:
    """`aivax://query-collection?collection-id=...&top=...&min=...&refs` as a `{query}` tool; a collection
    that is not the account's (or a malformed URL) makes a tool that says so, instead of failing the turn."""
    params = parse_qs(urlsplit(function.callback_url).query, keep_blank_values=True)
    collection_id = (params.get("collection-id") or [""])[0]
    try:
        top = min(TOP_MAX, max(1, int((params.get("top") or [str(DEFAULT_TOP)])[0])))
        min_score = min(1.0, max(0.0, float((params.get("min") or [str(DEFAULT_MIN)])[0])))
    except ValueError:
        return UnavailableTool(function, "its callbackUrl has a top or min that is not a number")
    if not collection_id or await store.collections.get(account_id, collection_id) is None:
        return UnavailableTool(function, "its collection does not exist")
    settings = SearchSettings(collection_ids=[collection_id], top=top, min_score=min_score, references="refs" in params,
                              gateway_id=gateway_id)
    return CollectionsSearchTool(function.name, function.description, search, settings)


class UnavailableTool(Tool):
    """A misconfigured query-collection function: offered as defined, answering why it cannot run."""

    def __init__(self, function: ProtocolFunction, why: str) -> None:
        self.name = function.name
        self._function = function
        self._why = why

    def spec(self) -> ToolSpec:
        return function_spec(self.name, self._function.description, QUERY_SCHEMA)

    async def run(self, arguments: dict[str, Any], caller: Caller) -> str:
        raise ToolFailure(f"The tool {self.name} cannot search: {self._why}. Tell the user it is unavailable.")
