"""The Store's knowledge repositories: collections, documents, the indexing queue and the lexical index.

The index lives beside the documents in the same store and changes in the same transaction as
them: a document whose text changes or that is deleted leaves the index at once (so a search never
returns replaced or deleted text), and comes back only when the indexer has read the new text.
The indexing queue is durable: a claim is a lease, so a replica that dies mid-way leaves its
documents to be claimed again when the lease ends, and each claim is given to exactly one caller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime

from botline.domain.knowledge import (
    BrowseQuery,
    Collection,
    CollectionState,
    DocumentWrite,
    IndexedText,
    KnowledgeDocument,
    LabelChanges,
    LexicalHit,
    WriteOutcome,
)


class CollectionRepository(ABC):
    @abstractmethod
    async def create(self, collection: Collection) -> None: ...

    @abstractmethod
    async def get(self, account_id: str, collection_id: str) -> Collection | None: ...

    @abstractmethod
    async def list_for_account(self, account_id: str) -> list[Collection]:
        """The account's collections, oldest first."""

    @abstractmethod
    async def edit(
        self, account_id: str, collection_id: str, *, name: str, context: str | None, tags: list[str]
    ) -> bool:
        """Sets name, context and tags in place; False when unknown."""

    @abstractmethod
    async def delete(self, account_id: str, collection_id: str) -> bool:
        """Deletes the collection with its documents, their index entries and queue entries."""

    @abstractmethod
    async def state(self, collection_id: str) -> CollectionState:
        """How many documents the collection holds, by index state."""


class DocumentRepository(ABC):
    async def reindex_legacy(self, now: datetime) -> int:
        """Queues again every document an older version of this backend indexed in a form searches no longer
        read, and removes that form; how many were queued. Run at start; a no-op once done (and on backends
        whose schema migrations do it)."""
        return 0

    @abstractmethod
    async def write(
        self, account_id: str, collection_id: str, writes: Sequence[DocumentWrite], *, now: datetime,
        labels: LabelChanges, sync: bool = False,
    ) -> WriteOutcome | None:
        """None (nothing written) when the collection is not the account's. Otherwise applies every write
        (names unique within `writes`) with `plan_upsert`, all or nothing. A changed text leaves the index
        and is queued. With `sync`, the collection's documents whose name is not among the writes are
        deleted in the same transaction."""

    @abstractmethod
    async def get(self, account_id: str, collection_id: str, document_id: str) -> KnowledgeDocument | None: ...

    @abstractmethod
    async def many(self, account_id: str, document_ids: Sequence[str]) -> list[KnowledgeDocument]:
        """The account's documents among `document_ids`, in that order (unknown ids left out)."""

    @abstractmethod
    async def browse(self, account_id: str, collection_id: str, query: BrowseQuery) -> list[KnowledgeDocument]:
        """Filtered, ordered and paged like `domain.knowledge.browse`."""

    @abstractmethod
    async def with_reference(self, collection_id: str, reference: str) -> list[KnowledgeDocument]:
        """The collection's documents sharing `reference`, oldest first."""

    @abstractmethod
    async def delete(self, account_id: str, collection_id: str, document_id: str) -> bool: ...

    @abstractmethod
    async def clear(self, account_id: str, collection_id: str) -> int:
        """Deletes every document of the collection (kept itself); returns how many."""

    @abstractmethod
    async def requeue(self, account_id: str, collection_id: str, *, now: datetime) -> int:
        """Queues every document of the collection to be indexed again (their text stays searchable
        meanwhile: it has not changed); returns how many."""

    @abstractmethod
    async def claim(self, now: datetime, *, lease_seconds: float, limit: int) -> list[KnowledgeDocument]:
        """Up to `limit` queued documents nobody holds (or whose holder's lease ended), each given to
        exactly one caller until `now + lease_seconds`, oldest queued first."""

    @abstractmethod
    async def complete(self, entries: Sequence[IndexedText], *, now: datetime) -> set[str]:
        """Indexes each entry's terms as its document's text when the document is still at that version
        (Indexed, indexedAt = now, out of the queue), in one transaction; the ids written (a document
        that changed or went meanwhile is left out, nothing written for it)."""

    @abstractmethod
    async def fail(
        self, document_id: str, version: int, reason: str, *, now: datetime, retry_at: datetime | None
    ) -> bool:
        """A failed attempt: queued again for `retry_at`, or with None given up (Cancelled, indexError =
        reason). False when the document changed or went meanwhile."""

    @abstractmethod
    async def attempts(self, document_id: str) -> int:
        """How many times the document's current version was claimed (0 once indexed or unknown)."""

    @abstractmethod
    async def search(self, collection_ids: Sequence[str], terms: Sequence[str], *, limit: int) -> list[LexicalHit]:
        """The best `limit` indexed documents of the collections for `terms` (any of them), by BM25,
        scores normalised to 0–1 as domain/bm25.py says; documents holding none are left out."""
