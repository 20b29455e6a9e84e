"""The Store: one narrow async repository per aggregate, with SQLite and Redis backends.

Every backend passes the same contract suite (tests/store/). All timestamps are UTC.
Lookups scoped by account return None for another account's object, so isolation is
enforced at the storage boundary and not only in the HTTP layer.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from botline.domain.accounts import Account, ApiKey
from botline.domain.chat_clients import ChatClient
from botline.domain.conversations import Message, Role, Session
from botline.domain.gateways import Gateway
from botline.domain.handoff import Controller, Handoff
from botline.domain.inbound import ChatKey, InboundRecord
from botline.domain.integrations import Integration, IntegrationType
from botline.domain.llm_connections import ConnectionStats, LlmConnection
from botline.domain.memory import Memory, MemoryFormat
from botline.domain.policies import Policy, Violation, ViolationQuery
from botline.domain.schedules import ScheduledItem
from botline.domain.skills import Skill
from botline.domain.usage import ModelUsage, UsageRecord, UsageTotals
from botline.store.batch import BatchItemRepository, BatchJobRepository, BatchWorkflowRepository
from botline.store.changes import (
    AccountChange,
    BalanceOperation,
    ClientSettings,
    ConnectionChange,
    PolicyChange,
    SessionContext,
)
from botline.store.knowledge import CollectionRepository, DocumentRepository
from botline.store.media import BlobRepository, MediaRepository
from botline.store.vectors import VectorIndex

if TYPE_CHECKING:  # signals.py raises StoreError from this module
    from botline.store.signals import SignalBus

C = TypeVar("C")


StoreErrorListener = Callable[[str, str], None]
"""Hears of every failed Store operation: (operation, error kind), e.g. ("RedisSessions.get", "unavailable")."""
StoreOperationListener = Callable[[str], None]
"""Hears of every Store operation as it starts, e.g. "SqliteSessions.add_messages" (one called by another
is heard too)."""


def wrap_public_coroutines(cls: type[C], wrap: Callable[[Any], Any]) -> type[C]:
    """Applies `wrap` to every public coroutine method `cls` defines: how each backend maps its own
    driver errors to StoreError subclasses at one boundary, where they are also reported."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, _reported(wrap(member), member.__qualname__))
    return cls


def _reported(method: Callable[..., Any], operation: str) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(self: ReportsErrors, *args: Any, **kwargs: Any) -> Any:
        if self.operation_listener is not None:
            self.operation_listener(operation)
        try:
            return await method(self, *args, **kwargs)
        except StoreError as exc:
            if self.error_listener is not None and not exc.reported:  # once, when one operation calls another
                exc.reported = True
                self.error_listener(operation, exc.kind)
            raise

    return wrapper


class ReportsErrors:
    """What every repository and store shares: who hears of its operations and failures (the app's
    metrics)."""

    error_listener: StoreErrorListener | None = None
    operation_listener: StoreOperationListener | None = None


class StoreError(Exception):
    """Root of every storage failure."""

    kind: ClassVar[str] = "error"
    reported: bool = False


class StoreUnavailable(StoreError):
    """The backend cannot be reached right now (maps to 503)."""

    kind = "unavailable"
    public_message = "Storage is unavailable right now; try again shortly."
    """What a client is told (the exception's own text names hosts and ports: it goes to the log)."""


class ConflictError(StoreError):
    """A uniqueness rule was broken (maps to 409)."""

    kind = "conflict"


class AccountRepository(ABC):
    @abstractmethod
    async def create(self, account: Account) -> None: ...

    @abstractmethod
    async def get(self, account_id: str) -> Account | None: ...

    @abstractmethod
    async def update(self, account: Account) -> None:
        """Replace a stored account; unknown ids are ignored. Only for a document nobody else
        writes yet: edits of a stored account go through `change` and `adjust_balance`."""

    @abstractmethod
    async def change(self, account_id: str, change: AccountChange) -> Account | None:
        """Sets the given fields in place, atomically; the account as stored afterwards, None when unknown."""

    @abstractmethod
    async def adjust_balance(self, account_id: str, operation: BalanceOperation, amount: float) -> float | None:
        """Adds, removes or sets atomically (a missing balance counts as 0 for add and remove): the new
        balance, None when the account is unknown."""

    @abstractmethod
    async def list(self) -> list[Account]:
        """Every account, oldest first."""


class ApiKeyRepository(ABC):
    @abstractmethod
    async def create(self, key: ApiKey) -> None: ...

    @abstractmethod
    async def create_within(self, key: ApiKey, *, limit: int) -> bool:
        """Stores the key unless its account holds `limit` keys already (False, nothing written);
        checked and written atomically, so concurrent creations never pass the limit together."""

    @abstractmethod
    async def get_by_hash(self, key_hash: str) -> ApiKey | None: ...

    @abstractmethod
    async def list_for_account(self, account_id: str) -> list[ApiKey]:
        """The account's keys, oldest first."""

    @abstractmethod
    async def delete(self, account_id: str, key_id: str) -> bool:
        """True when the key existed in that account and is now gone."""

    @abstractmethod
    async def touch(self, key_id: str, used_at: datetime) -> None:
        """Record when a key was last used."""

    @abstractmethod
    async def count(self) -> int:
        """How many keys exist in all accounts."""


class GatewayRepository(ABC):
    @abstractmethod
    async def create(self, gateway: Gateway) -> None:
        """Raises ConflictError when the slug is taken in that account."""

    @abstractmethod
    async def get(self, account_id: str, gateway_id: str) -> Gateway | None: ...

    @abstractmethod
    async def get_by_slug(self, account_id: str, slug: str) -> Gateway | None: ...

    @abstractmethod
    async def list_for_account(self, account_id: str) -> list[Gateway]:
        """The account's gateways, oldest first."""

    @abstractmethod
    async def update(self, gateway: Gateway) -> None:
        """Replace a stored gateway; raises ConflictError when the new slug is taken."""

    @abstractmethod
    async def delete(self, account_id: str, gateway_id: str) -> bool: ...


class LlmConnectionRepository(ABC):
    """LLM connections (names unique per account) and their usage counters."""

    @abstractmethod
    async def create(self, connection: LlmConnection) -> None:
        """Raises ConflictError when the name is taken in that account."""

    @abstractmethod
    async def get(self, account_id: str, connection_id: str) -> LlmConnection | None: ...

    @abstractmethod
    async def list_for_account(self, account_id: str) -> list[LlmConnection]:
        """The account's connections, oldest first."""

    @abstractmethod
    async def change(self, account_id: str, connection_id: str, change: ConnectionChange) -> LlmConnection | None:
        """Sets the given fields in place; the connection as stored afterwards, None when unknown.
        Raises ConflictError (nothing written) when a new name is taken in the account."""

    @abstractmethod
    async def delete(self, account_id: str, connection_id: str) -> bool:
        """Deletes the connection and its counters; True when it existed in that account."""

    @abstractmethod
    async def add_stats(self, deltas: Mapping[tuple[str, str], ConnectionStats]) -> None:
        """Adds each delta to the counters of (account id, connection id), atomically per connection."""

    @abstractmethod
    async def stats(self, account_id: str) -> dict[str, ConnectionStats]:
        """The counters of the account's connections that have any, by connection id."""


class PolicyRepository(ABC):
    """AI policies and the violations the judge found."""

    @abstractmethod
    async def create(self, policy: Policy) -> None: ...

    @abstractmethod
    async def get(self, account_id: str, policy_id: str) -> Policy | None: ...

    @abstractmethod
    async def list_for_account(self, account_id: str) -> list[Policy]:
        """The account's policies, oldest first."""

    @abstractmethod
    async def change(self, account_id: str, policy_id: str, change: PolicyChange) -> Policy | None:
        """Sets the given fields in place; the policy as stored afterwards, None when unknown."""

    @abstractmethod
    async def delete(self, account_id: str, policy_id: str) -> bool:
        """Deletes the policy (its violations stay, naming it)."""

    @abstractmethod
    async def add_violations(self, violations: Sequence[Violation]) -> None: ...

    @abstractmethod
    async def violations(self, account_id: str, query: ViolationQuery) -> tuple[list[Violation], int]:
        """The account's violations matching `query`, newest first, `skip`/`take` applied; and how many
        match in all."""


class ChatClientRepository(ABC):
    @abstractmethod
    async def create(self, client: ChatClient) -> None: ...

    @abstractmethod
    async def get(self, account_id: str, client_id: str) -> ChatClient | None: ...

    @abstractmethod
    async def find(self, client_id: str) -> ChatClient | None:
        """By id alone, for webhooks (their URL carries a token derived from the owner's salt)."""

    @abstractmethod
    async def list_for_account(self, account_id: str) -> list[ChatClient]:
        """The account's chat clients, oldest first."""

    @abstractmethod
    async def update(self, client: ChatClient) -> None:
        """Replaces a stored client of the same account; unknown ids are ignored. Edits through the
        API use `edit` and `set_integration`, which leave the other part as stored."""

    @abstractmethod
    async def edit(self, account_id: str, client_id: str, settings: ClientSettings) -> bool:
        """Sets the client's settings in place, its integrations untouched; False when unknown."""

    @abstractmethod
    async def set_integration(
        self, account_id: str, client_id: str, kind: IntegrationType, integration: Integration | None
    ) -> bool:
        """Saves (or with None removes) one integration in place, the rest of the client untouched;
        False when the client is unknown."""

    @abstractmethod
    async def delete(self, account_id: str, client_id: str) -> bool:
        """Deletes the client only; callers delete its sessions (SessionRepository.delete_for_client)."""


@dataclass(frozen=True)
class SessionChange:
    """What storing a turn's messages changes in their session. Applied to the session as stored,
    inside the transaction that appends the messages, so an edit made meanwhile (a renewal, new
    context) is kept, and messages and counters never disagree. Each backend applies it in place
    (SQLite's json_set, a Redis script): the session is never read back into Python for it."""

    messages: int = 0
    """Added to messageCount (the visible messages among those appended)."""
    tokens: int = 0
    """Added to tokenCount."""
    last_message_at: datetime | None = None
    last_user_message_at: datetime | None = None
    expires_at_least: datetime | None = None
    """A sliding renewal: expiresAt becomes at least this."""


class SessionRepository(ABC):
    @abstractmethod
    async def create(self, session: Session) -> None: ...

    @abstractmethod
    async def get(self, account_id: str, session_id: str) -> Session | None: ...

    @abstractmethod
    async def get_with_messages(self, account_id: str, session_id: str) -> tuple[Session, list[Message]] | None:
        """The session and its messages (as `MessageRepository.list` gives them) read at once; None like `get`."""

    @abstractmethod
    async def lease_with_messages(
        self, account_id: str, session_id: str, lease: str, *, ttl_seconds: float, prompt: PromptWrite | None = None,
    ) -> LeasedHistory | None:
        """Takes the lease `lease` of this store's `locks` as `locks.acquire` would and, once it is
        taken, reads what `get_with_messages` reads under it and, when `prompt.fits` what it read,
        appends `prompt.message` as `add_messages` would with `prompt.change`, in one transaction: a
        turn's first three steps, in one round trip on Redis. None, with nothing read or written, while
        the lease is held. Where the leases are `immediate`, a cancel that lands during the call gives
        the lease back (callers need no task to shield the call, as with `locks.acquire`)."""

    @abstractmethod
    async def get_by_access_key(self, access_key: str) -> Session | None: ...

    @abstractmethod
    async def get_by_tag(self, account_id: str, chat_client_id: str, tag: str) -> Session | None:
        """The newest session of that client with that tag (live or not; callers check expiry)."""

    @abstractmethod
    async def update(self, session: Session) -> None:
        """Replaces a stored session. Edits of a session in use go through `renew`,
        `record_delivery_error` and `recount`: a whole document written back would undo the
        counters `add_messages` changed meanwhile."""

    @abstractmethod
    async def renew(
        self, account_id: str, session_id: str, *, expires_at: datetime, extend_only: bool = False,
        context: SessionContext | None = None,
    ) -> Session | None:
        """Sets expiresAt (with `extend_only`, raises it to at least that) and, when given, the
        context, in place; the session as stored afterwards, None when gone or another account's."""

    @abstractmethod
    async def set_handoff(self, account_id: str, session_id: str, handoff: Handoff | None) -> Session | None:
        """Sets who answers the chat (None: back to never handed over) in place, the rest of the session
        as stored; the session afterwards, None when gone or another account's."""

    @abstractmethod
    async def record_delivery_error(self, account_id: str, session_id: str, error: str | None) -> None:
        """Sets lastDeliveryError in place; nothing for an unknown session."""

    @abstractmethod
    async def recount(self, account_id: str, session_id: str, delta: int | None) -> None:
        """messageCount += delta (never below 0), or 0 with None, in place; nothing for an unknown session."""

    @abstractmethod
    async def add_messages(
        self, account_id: str, session_id: str, messages: Sequence[Message], change: SessionChange, *,
        freeing: HeldLease | None = None,
    ) -> bool:
        """Appends `messages` (in order) and applies `change` to the stored session, in one transaction.

        False, with nothing written, when the session is gone or belongs to another account. Raises
        ConflictError (nothing written) when a message id exists. `freeing`: a lease of this store's
        `locks` that the same transaction frees, as `locks.release` would (only while its token still
        holds it), whatever the write finds: a turn's last write and its lease's release in one round
        trip on Redis.
        """

    @abstractmethod
    async def list_for_client(self, account_id: str, chat_client_id: str) -> list[Session]:
        """The client's sessions, oldest first."""

    @abstractmethod
    async def delete(self, account_id: str, session_id: str) -> bool:
        """Deletes the session and all its messages (and their files, store/media.py)."""

    @abstractmethod
    async def delete_for_client(self, account_id: str, chat_client_id: str) -> int:
        """Deletes every session (and its messages) of a chat client; returns how many."""

    @abstractmethod
    async def delete_expired(self, now: datetime, *, limit: int = 500) -> int:
        """Deletes up to `limit` sessions whose expiresAt is at or before `now` (with their messages)."""


class MessageRepository(ABC):
    @abstractmethod
    async def append(self, message: Message) -> None:
        """Adds a message at the end of its session."""

    @abstractmethod
    async def update(self, message: Message) -> None:
        """Replaces a stored message in place (same position)."""

    @abstractmethod
    async def list(self, session_id: str) -> list[Message]:
        """The session's messages in the order they were appended."""

    @abstractmethod
    async def delete_after(self, session_id: str, message_id: str) -> int:
        """Deletes every message appended after `message_id` (and their files); returns how many."""

    @abstractmethod
    async def clear(self, session_id: str) -> int:
        """Deletes every message of the session (and their files); returns how many."""


class UsageRepository(ABC):
    @abstractmethod
    async def record(self, records: Sequence[UsageRecord]) -> None:
        """Adds records to the hourly aggregates (called in batches)."""

    @abstractmethod
    async def totals(
        self, account_id: str, *, gateway_id: str | None = None, since: datetime | None = None
    ) -> UsageTotals:
        """Sums over the account (or one gateway) from the hour containing `since`."""

    @abstractmethod
    async def by_model(self, account_id: str, *, since: datetime | None = None) -> list[ModelUsage]:
        """Totals per upstream model name, sorted by model name."""


class CounterRepository(ABC):
    @abstractmethod
    async def increment(self, key: str, *, ttl_seconds: int) -> int:
        """Adds one to a counter that disappears `ttl_seconds` after its first increment; returns the count."""

    @abstractmethod
    async def add(self, key: str, amount: int, *, ttl_seconds: int) -> int:
        """Adds `amount` atomically (the counter lives `ttl_seconds` from its first addition); returns the sum."""

    @abstractmethod
    async def values(self, keys: Sequence[str]) -> list[int]:
        """The counters' current values (0 for one that does not exist or expired)."""


class InboundRepository(ABC):
    """Channel messages: recorded once (idempotent on the provider's message id), pending until answered."""

    @abstractmethod
    async def record(self, record: InboundRecord, *, dedupe_seconds: int) -> bool:
        """Stores a pending message unless its dedupe key was seen within `dedupe_seconds`.

        True when stored; False for a re-delivery (nothing is written then).
        """

    @abstractmethod
    async def pending(self, chat: ChatKey) -> list[InboundRecord]:
        """The chat's messages not answered yet, in the order they were recorded."""

    @abstractmethod
    async def pending_chats(self) -> list[ChatKey]:
        """Every chat with pending messages (resumed at start)."""

    @abstractmethod
    async def complete(self, chat: ChatKey, record_ids: Sequence[str]) -> None:
        """Marks messages answered; their dedupe keys stay until they expire."""

    @abstractmethod
    async def purge(self, now: datetime) -> int:
        """Forgets dedupe keys (and answered records) older than their window; returns how many."""


class ScheduleRepository(ABC):
    """Scheduled continuations (one-shot and recurring) and the claims that make each firing happen once."""

    @abstractmethod
    async def create(self, item: ScheduledItem) -> None: ...

    @abstractmethod
    async def get(self, account_id: str, item_id: str) -> ScheduledItem | None: ...

    @abstractmethod
    async def update(self, item: ScheduledItem) -> None:
        """Replaces a stored item of the same account; unknown ids are ignored."""

    @abstractmethod
    async def delete(self, account_id: str, item_id: str) -> bool: ...

    @abstractmethod
    async def list_for_client(self, account_id: str, chat_client_id: str) -> list[ScheduledItem]:
        """Every item of a chat client (active or done), oldest first."""

    @abstractmethod
    async def due(self, before: datetime) -> list[ScheduledItem]:
        """Active items of every account whose next activation is at or before `before`, soonest first."""

    @abstractmethod
    async def claim(self, item_id: str, fire_time: datetime) -> bool:
        """Compare-and-set on (item, fire time): True for exactly one caller, ever."""


class MemoryRepository(ABC):
    """Per-user memories. Reads take `now` and never return a memory whose expiresAt is at or before it."""

    @abstractmethod
    async def create(self, memory: Memory) -> None: ...

    @abstractmethod
    async def get(self, account_id: str, memory_id: str, *, now: datetime) -> Memory | None: ...

    @abstractmethod
    async def update(self, memory: Memory) -> bool:
        """Replaces a stored memory of the same account and user; False (nothing written) when there is none."""

    @abstractmethod
    async def delete(self, account_id: str, memory_id: str, *, now: datetime) -> bool:
        """Deletes the memory; True only when it was live (an expired one goes silently)."""

    @abstractmethod
    async def list_for_user(
        self, account_id: str, external_user_id: str, *, now: datetime, format: MemoryFormat | None = None,
        limit: int | None = None,
    ) -> list[Memory]:
        """The user's live memories (of one format, or all), most recently written first; with `limit`,
        no more than about that many are read."""

    @abstractmethod
    async def count_for_user(self, account_id: str, external_user_id: str, *, now: datetime) -> int:
        """How many live memories (of every format) the user holds, without reading them."""

    @abstractmethod
    async def list_for_account(
        self, account_id: str, *, now: datetime, format: MemoryFormat | None = None
    ) -> list[Memory]:
        """Every live memory of the account, most recently written first."""

    @abstractmethod
    async def delete_for_user(
        self, account_id: str, external_user_id: str, format: MemoryFormat, *, now: datetime
    ) -> int:
        """Deletes the memories of that format whose user id is `external_user_id` or starts with
        `external_user_id + "@"`; returns how many of them were live."""

    @abstractmethod
    async def purge(self, now: datetime, *, limit: int = 500) -> int:
        """Deletes up to `limit` memories that expired at or before `now`; returns how many."""


class SkillRepository(ABC):
    """An account's skills; a slug is unique within its account."""

    @abstractmethod
    async def create(self, skill: Skill) -> None:
        """Raises ConflictError when the slug is taken in that account."""

    @abstractmethod
    async def get(self, account_id: str, skill_id: str) -> Skill | None: ...

    @abstractmethod
    async def get_many(self, account_id: str, skill_ids: Sequence[str]) -> list[Skill]:
        """The account's skills among `skill_ids`, in that order; unknown ids are left out."""

    @abstractmethod
    async def list_for_account(self, account_id: str) -> list[Skill]:
        """The account's skills, oldest first."""

    @abstractmethod
    async def update(self, skill: Skill) -> bool:
        """Replaces a stored skill of the same account (its id and createdAt kept); False when unknown.
        Raises ConflictError (nothing written) when the new slug is taken."""

    @abstractmethod
    async def upsert(self, skill: Skill) -> bool:
        """Stores `skill` under its slug: a new skill (True), or the content of the account's skill with
        that slug replaced, its id and createdAt kept (False). Atomic against a concurrent upsert."""

    @abstractmethod
    async def delete(self, account_id: str, skill_id: str) -> bool: ...

    @abstractmethod
    async def clear(self, account_id: str) -> int:
        """Deletes every skill of the account; returns how many."""


class ServerValueRepository(ABC):
    """Values every replica must share, made once (a generated signing key, say)."""

    @abstractmethod
    async def keep(self, name: str, value: str) -> str:
        """Stores `value` under `name` unless a value is there already; returns the one stored (the first
        replica's, when several start together)."""


class ReservationRepository(ABC):
    """Bytes promised to writes still in flight (shell uploads), per scope, until released or expired.

    Checking a quota and reserving are two calls: callers hold a lease on the scope around them."""

    @abstractmethod
    async def add(self, scope: str, reservation_id: str, amount: int, *, now: datetime, ttl_seconds: int) -> None:
        """Reserves `amount` bytes in `scope` for `ttl_seconds` from `now` (or until released)."""

    @abstractmethod
    async def release(self, scope: str, reservation_id: str) -> None:
        """Drops the reservation (nothing when there is none)."""

    @abstractmethod
    async def total(self, scope: str, *, now: datetime) -> int:
        """Bytes reserved in `scope` by reservations that have not expired at `now`."""


@dataclass(frozen=True)
class HeldLease:
    """A lease as `LockRepository.release` names it: what a write frees with it (`add_messages`)."""

    name: str
    token: str


@dataclass(frozen=True)
class PromptWrite:
    """A person's new message, written by `lease_with_messages` under the lease it takes, in the same
    round trip, when what it reads leaves the turn no other choice (`fits`). Otherwise nothing is written
    and the turn decides from the read (a repeat, a refusal, a person having the chat)."""

    message: Message
    change: SessionChange
    now: datetime
    """When the turn checks the session: a session that expired by then is not written to."""
    max_messages: int = 0
    """The chat client's maxMessages (0: none)."""

    def fits(self, session: Session, messages: Sequence[Message]) -> bool:
        """True when the turn would store `message` as new and ask the model: the session is live, no
        takeover is on record, the last message is not the person's (a repeat is answered, not stored)
        and the cap leaves room."""
        return self.fits_stored(session.expires_at.timestamp(), None if session.handoff is None else
                                session.handoff.state, messages[-1].role if messages else None, session.message_count)

    def fits_stored(self, expires_ts: float, handoff_state: str | None, last_role: str | None, count: int) -> bool:
        """`fits` on the stored values it needs, so a backend checks it without decoding the session (the
        Redis script checks the same in Lua: store/redis_conversations.py)."""
        return (expires_ts > self.now.timestamp() and handoff_state != Controller.HUMAN and last_role != Role.USER
                and (not self.max_messages or count < self.max_messages))


@dataclass(frozen=True)
class LeasedHistory:
    """What `SessionRepository.lease_with_messages` gives once it took the lease: its token, and the
    session with its messages as `get_with_messages` gives them (None when gone or another account's),
    read before the prompt's write, which `prompt_written` says happened."""

    token: str
    found: tuple[Session, list[Message]] | None
    prompt_written: bool = False


class LockRepository(ABC):
    """Short leases that keep two replicas from answering one chat at once."""

    immediate: ClassVar[bool] = False
    """True when no call ever suspends (leases kept in this process): a cancel cannot land inside one,
    so a caller needs no task to shield it."""

    @abstractmethod
    async def acquire(self, name: str, *, ttl_seconds: float) -> str | None:
        """A token when the lease was free (or expired), else None."""

    @abstractmethod
    async def refresh(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        """Extends a lease still held with `token`."""

    @abstractmethod
    async def reclaim(self, name: str, token: str, *, ttl_seconds: float) -> bool:
        """Takes a lease that lapsed (a Store outage kept its holder from refreshing it) again with
        the same `token`, when no one else took it meanwhile; False when someone did."""

    @abstractmethod
    async def release(self, name: str, token: str) -> None:
        """Frees the lease if `token` still holds it."""


class Store(ReportsErrors, ABC):
    """The persistence boundary. Use as `async with await open_store(url) as store:`."""

    accounts: AccountRepository
    api_keys: ApiKeyRepository
    gateways: GatewayRepository
    llm_connections: LlmConnectionRepository
    policies: PolicyRepository
    chat_clients: ChatClientRepository
    sessions: SessionRepository
    messages: MessageRepository
    usage: UsageRepository
    counters: CounterRepository
    inbound: InboundRepository
    locks: LockRepository
    server_values: ServerValueRepository
    reservations: ReservationRepository
    memories: MemoryRepository
    schedules: ScheduleRepository
    batch_workflows: BatchWorkflowRepository
    batch_jobs: BatchJobRepository
    batch_items: BatchItemRepository
    collections: CollectionRepository
    documents: DocumentRepository
    """Knowledge documents, their indexing queue and lexical index (store/knowledge.py)."""
    skills: SkillRepository
    media: MediaRepository
    """Files of a session's answers, deleted with the session (store/media.py)."""
    blobs: BlobRepository
    """Blobs shared by key for a while: the audio cache (store/media.py)."""
    vectors: VectorIndex
    """The embedded vector index of knowledge documents (store/vectors.py)."""
    signals: SignalBus
    """Messages to every process sharing this store (in-process for SQLite, pub/sub for Redis)."""

    def report_errors(self, listener: StoreErrorListener, operations: StoreOperationListener | None = None) -> None:
        """Tells `listener` of every StoreError the store and its repositories raise, and `operations` of
        every operation they start."""
        for part in (self, *vars(self).values()):
            if isinstance(part, ReportsErrors):
                part.error_listener = listener
                part.operation_listener = operations

    @abstractmethod
    async def ping(self) -> None:
        """Raises StoreUnavailable when the backend does not answer."""

    @abstractmethod
    async def close(self) -> None:
        """Releases connections; idempotent."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
