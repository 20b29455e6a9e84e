"""Knowledge collections and their documents (seed sections "Collections" and "Documents").

A collection belongs to an account; a document to one collection, named uniquely in it (the JSONL
`docId` and the PUT `name` are both that name). A document's text is indexed in the background:
it is `Queued` from the moment its text changes until the indexer has read it, then `Indexed`;
`Cancelled` when indexing failed for good (`index_error` says why). Only indexed text is searched,
so text that was replaced or deleted is never returned, not even before the indexer runs.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from botline.domain.base import CamelModel, new_id, utcnow
from botline.domain.lexical_row import encode

REFERENCE_MAX = 64
"""The seed's bound on `__ref`."""
CHARS_PER_TOKEN = 4
"""approximateTokenCount is characters / 4, as the gateway's context budget counts."""


class IndexState(StrEnum):
    QUEUED = "Queued"
    INDEXED = "Indexed"
    CANCELLED = "Cancelled"
    """Indexing failed for good; the document's indexError says why (re-upload or vectors-only retries)."""


class UpsertState(StrEnum):
    CREATED = "Created"
    MODIFIED = "Modified"
    NOT_MODIFIED = "NotModified"


class Collection(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    name: str
    context: str | None = None
    """Appended to the system instructions of every gateway that searches this collection."""
    tags: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)


def split_tags(raw: str | None) -> list[str]:
    """The seed's comma-separated tags string as a list: trimmed, empty parts and repeats dropped."""
    seen: dict[str, None] = {}
    for part in (raw or "").split(","):
        if part.strip():
            seen.setdefault(part.strip(), None)
    return list(seen)


class KnowledgeDocument(CamelModel):
    id: str = Field(default_factory=new_id)
    account_id: str
    collection_id: str
    name: str
    contents: str
    reference: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    state: IndexState = IndexState.QUEUED
    version: int = 1
    """Grows each time the text changes: an indexer finishing an older version writes nothing."""
    index_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    indexed_at: datetime | None = None

    @property
    def word_count(self) -> int:
        return len(self.contents.split())

    @property
    def approximate_token_count(self) -> int:
        return math.ceil(len(self.contents) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class DocumentWrite:
    """One document as a JSONL line or a PUT gives it. None means "not given": the stored value stays."""

    name: str
    contents: str
    reference: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None


class LabelChanges(StrEnum):
    """What a write that keeps the text does with a new reference or tags (the seed differs by route)."""

    SKIP = "skip"
    """JSONL import: a line changing only __ref/__tags is skipped."""
    SAVE = "save"
    """PUT: reference, tags and metadata are saved without re-indexing."""


@dataclass(frozen=True)
class Upsert:
    """What writing one DocumentWrite does: `document` to store (None: nothing), whether its text is re-indexed."""

    state: UpsertState
    document: KnowledgeDocument | None
    reindex: bool


def plan_upsert(
    stored: KnowledgeDocument | None, write: DocumentWrite, *, account_id: str, collection_id: str, now: datetime,
    labels: LabelChanges,
) -> Upsert:
    """The seed's upsert rules, for both backends: new name → created; changed text → re-indexed (metadata
    replaced when given, kept when None); same text → metadata (and with SAVE, reference and tags) updated
    without re-indexing, or nothing when nothing differs."""
    if stored is None:
        document = KnowledgeDocument(
            account_id=account_id, collection_id=collection_id, name=write.name, contents=write.contents,
            reference=write.reference, tags=write.tags or [], metadata=write.metadata or {},
            created_at=now, updated_at=now,
        )
        return Upsert(UpsertState.CREATED, document, reindex=True)
    changes: dict[str, Any] = {}
    if write.metadata is not None and write.metadata != stored.metadata:
        changes["metadata"] = write.metadata
    text_changed = write.contents != stored.contents
    if text_changed or labels is LabelChanges.SAVE:
        if write.reference is not None and write.reference != stored.reference:
            changes["reference"] = write.reference
        if write.tags is not None and write.tags != stored.tags:
            changes["tags"] = write.tags
    if text_changed:
        changes.update(contents=write.contents, version=stored.version + 1, state=IndexState.QUEUED,
                       index_error=None)
    if not changes:
        return Upsert(UpsertState.NOT_MODIFIED, None, reindex=False)
    changes["updated_at"] = now
    return Upsert(UpsertState.MODIFIED, stored.model_copy(update=changes), reindex=text_changed)


@dataclass
class WriteOutcome:
    """What one batch of writes did, in the order of the writes, plus what sync mode deleted."""

    results: list[tuple[str, UpsertState]] = field(default_factory=list)
    """(document id, state) per write."""
    deleted: int = 0

    @property
    def enqueued(self) -> int:
        return sum(1 for _, state in self.results if state is not UpsertState.NOT_MODIFIED)

    @property
    def skipped(self) -> int:
        return sum(1 for _, state in self.results if state is UpsertState.NOT_MODIFIED)


@dataclass(frozen=True)
class CollectionState:
    total: int = 0
    indexed: int = 0
    queued: int = 0
    cancelled: int = 0


class DocumentOrder(StrEnum):
    CREATED_ASC = "created_at_asc"
    CREATED_DESC = "created_at_desc"
    UPDATED_ASC = "updated_at_asc"
    UPDATED_DESC = "updated_at_desc"
    INDEXED_ASC = "indexed_at_asc"
    INDEXED_DESC = "indexed_at_desc"

    @property
    def field(self) -> str:
        return self.value.rsplit("_", 1)[0]

    @property
    def descending(self) -> bool:
        return self.value.endswith("_desc")


@dataclass(frozen=True)
class DocumentFilter:
    """The browse filter (`-t tag -n name -r reference -c content -i id`): every given part must hold.
    Tags, reference and id match exactly; name and content are case-insensitive substrings."""

    tag: str | None = None
    name: str | None = None
    reference: str | None = None
    content: str | None = None
    document_id: str | None = None

    def matches(self, document: KnowledgeDocument) -> bool:
        return (
            (self.tag is None or self.tag in document.tags)
            and (self.name is None or self.name.casefold() in document.name.casefold())
            and (self.reference is None or self.reference == document.reference)
            and (self.content is None or self.content.casefold() in document.contents.casefold())
            and (self.document_id is None or self.document_id == document.id)
        )


@dataclass(frozen=True)
class BrowseQuery:
    filter: DocumentFilter = DocumentFilter()
    order: DocumentOrder = DocumentOrder.CREATED_DESC
    state: IndexState | None = None
    offset: int = 0
    limit: int = 100


def order_key(order: DocumentOrder) -> Any:
    """The sort key of `order` (ascending; reverse it for _desc); never-indexed documents sort first."""
    epoch = datetime.min.replace(tzinfo=None)

    def key(document: KnowledgeDocument) -> tuple[datetime, str]:
        moment = getattr(document, order.field)
        return (epoch if moment is None else moment.replace(tzinfo=None), document.id)

    return key


def browse(documents: list[KnowledgeDocument], query: BrowseQuery) -> list[KnowledgeDocument]:
    """Filters, sorts and pages documents in memory (the Redis backend; SQLite does the same in SQL)."""
    kept = [d for d in documents if query.filter.matches(d) and query.state in (None, d.state)]
    kept.sort(key=order_key(query.order), reverse=query.order.descending)
    return kept[query.offset:query.offset + query.limit]


@dataclass(frozen=True)
class IndexedText:
    """The indexer's reading of one document version: its row in the lexical log (domain/lexical_row.py)."""

    document_id: str
    version: int
    row: bytes

    @classmethod
    def of(cls, document_id: str, version: int, terms: Sequence[str]) -> IndexedText:
        """From the terms in text order, with repeats."""
        return cls(document_id, version, encode(Counter(terms), len(terms)))


@dataclass(frozen=True)
class LexicalHit:
    document_id: str
    score: float
    """0–1 (domain/bm25.py says how it is normalised)."""
