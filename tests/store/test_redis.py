"""What only the Redis backend does: client ownership, key prefixes, unreachable and silent servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.typing import EncodableT

from botline.domain.accounts import Account
from botline.domain.chat_clients import ChatClient, ClientParameters
from botline.domain.conversations import Message, Role, Session
from botline.domain.inbound import InboundRecord
from botline.domain.integrations import IntegrationType
from botline.domain.knowledge import Collection, DocumentWrite, IndexedText, IndexState, LabelChanges
from botline.store import StoreUnavailable
from botline.store.changes import AccountChange
from botline.store.keys import RedisKeys
from botline.store.redis import RedisStore
from botline.store.redis_coalesce import Coalescer
from botline.store.redis_pool import WaitingConnectionPool
from tests.support.redis_server import delete_prefix, unique_prefix

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
HOUR = timedelta(hours=1)
FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)


def inbound(provider_message_id: str) -> InboundRecord:
    return InboundRecord(
        account_id="a",
        chat_client_id="c",
        integration=IntegrationType.TELEGRAM,
        chat_id="chat-1",
        provider_message_id=provider_message_id,
    )


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    yield redis
    await redis.aclose()


@pytest.fixture
async def prefixes(redis_url: str) -> AsyncIterator[list[str]]:
    """Prefixes handed out to a test, with their keys deleted afterwards."""
    handed_out: list[str] = []
    yield handed_out
    for prefix in handed_out:
        await delete_prefix(redis_url, prefix)


async def test_unreachable_redis_is_store_unavailable() -> None:
    async with await RedisStore.from_url(CLOSED_PORT_URL) as store:
        with pytest.raises(StoreUnavailable) as ping_failure:
            await store.ping()
        assert isinstance(ping_failure.value.__cause__, redis_errors.ConnectionError)
        with pytest.raises(StoreUnavailable):
            await store.accounts.get("any")
        with pytest.raises(StoreUnavailable):
            await store.gateways.delete("account", "gateway")
        with pytest.raises(StoreUnavailable):
            await store.chat_clients.get("account", "client")
        with pytest.raises(StoreUnavailable):
            await store.sessions.delete_expired(datetime.now(UTC))
        with pytest.raises(StoreUnavailable):
            await store.inbound.record(inbound("m"), dedupe_seconds=60)
        with pytest.raises(StoreUnavailable):
            await store.locks.release("chat", "token")


@dataclass
class SilentRedis:
    """A server that accepts connections and reads what it is sent, but never answers: a frozen
    Redis, or one behind a network cut that drops replies."""

    url: str
    heard: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a command arrived."""


@pytest.fixture
async def silent_redis() -> AsyncIterator[SilentRedis]:
    heard = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            heard.set()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield SilentRedis(f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0", heard)
    server.close()


async def test_a_redis_that_stops_answering_is_store_unavailable_for_reads_writes_and_readiness(
    silent_redis: SilentRedis,
) -> None:
    """No socket timeout per command: each Store call as a whole has the store's deadline, the
    readiness ping (/readyz) included, and a transaction of several commands too."""
    async with await RedisStore.from_url(silent_redis.url, timeout_seconds=0.05) as store:
        with pytest.raises(StoreUnavailable, match=r"no answer within 0\.05 s"):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.sessions.get_with_messages("account", "session")
        with pytest.raises(StoreUnavailable):
            await store.accounts.change("any", AccountChange(name="renamed"))
        with pytest.raises(StoreUnavailable):
            await store.locks.acquire("chat", ttl_seconds=15)


async def test_calls_that_walk_whole_collections_fail_on_a_silent_redis_too(silent_redis: SilentRedis) -> None:
    """A walk has no deadline as a whole, but each command it sends has the store's (redis_base.Walk)."""
    async with await RedisStore.from_url(silent_redis.url, timeout_seconds=0.05) as store:
        walks = [store.documents.all_of("collection"), store.documents.clear("account", "collection"),
                 store.documents.search(["collection"], ["word"], limit=5),
                 store.collections.state("collection")]
        for walk in walks:
            with pytest.raises(StoreUnavailable, match=r"no answer within 0\.05 s"):
                await asyncio.wait_for(walk, timeout=30)


async def test_calls_to_a_silent_redis_each_get_their_own_deadline(silent_redis: SilentRedis) -> None:
    """One watchdog holds the deadlines of every call in flight: a call started later fails after the
    earlier one did, not with it."""
    async with await RedisStore.from_url(silent_redis.url, timeout_seconds=0.3) as store:
        first = asyncio.create_task(store.accounts.get("first"))
        await asyncio.sleep(0.15)
        second = asyncio.create_task(store.sessions.get_with_messages("account", "session"))
        with pytest.raises(StoreUnavailable, match=r"no answer within 0\.3 s"):
            await first
        assert not second.done()
        with pytest.raises(StoreUnavailable, match=r"no answer within 0\.3 s"):
            await second


async def test_calls_that_ended_leave_no_deadline_behind(redis_url: str, prefixes: list[str]) -> None:
    """The watchdog's timer, set for a call that has ended since, cancels nothing when it fires."""
    prefixes.append(prefix := unique_prefix())
    async with await RedisStore.from_url(redis_url, prefix=prefix, timeout_seconds=0.1) as store:
        assert await store.accounts.get("early") is None
        for _ in range(15):  # across the first call's deadline and the ones after it
            assert await store.accounts.get("later") is None
            await asyncio.sleep(0.02)


async def test_a_cancel_while_redis_is_silent_stays_a_cancel(silent_redis: SilentRedis) -> None:
    """A caller's own cancel (a stop, a shutdown) waiting on a silent Redis is a cancel, not an outage."""
    async with await RedisStore.from_url(silent_redis.url, timeout_seconds=60) as store:
        call = asyncio.create_task(store.accounts.get("any"))
        await silent_redis.heard.wait()
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert call.cancelled()


async def test_callers_beyond_max_connections_wait_for_a_free_one(redis_url: str, prefixes: list[str]) -> None:
    prefixes.append(prefix := unique_prefix())
    async with await RedisStore.from_url(redis_url, prefix=prefix, max_connections=2) as store:
        found = await asyncio.gather(*(store.accounts.get(f"a{n}") for n in range(50)))
        assert found == [None] * 50


async def test_callers_cancelled_while_waiting_for_a_connection_leave_none_taken(
    redis_url: str, prefixes: list[str]
) -> None:
    prefixes.append(prefix := unique_prefix())
    async with await RedisStore.from_url(redis_url, prefix=prefix, max_connections=2) as store:
        calls = [asyncio.create_task(store.accounts.get(f"a{n}")) for n in range(20)]
        await asyncio.sleep(0)  # started: two hold a connection, the rest wait for one
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        assert list(await asyncio.gather(*(store.accounts.get(name) for name in "xyz"))) == [None, None, None]


async def test_a_caller_waiting_for_a_connection_held_by_a_silent_redis_gets_its_deadline(
    silent_redis: SilentRedis,
) -> None:
    async with await RedisStore.from_url(silent_redis.url, timeout_seconds=0.05, max_connections=1) as store:
        outcomes = await asyncio.gather(store.ping(), store.accounts.get("any"), return_exceptions=True)
        assert [type(outcome) for outcome in outcomes] == [StoreUnavailable, StoreUnavailable]


async def test_commands_packed_directly_are_the_bytes_redis_py_would_send(redis_url: str) -> None:
    """The pool's connections pack plain commands with hiredis in one call (redis_pool.DirectPacker)."""
    pool = WaitingConnectionPool.from_url(redis_url, decode_responses=True)
    plain = Connection()
    commands: list[tuple[EncodableT, ...]] = [
        ("EVALSHA", "f" * 40, 2, "k:é", b"\x00\xff", 1764870000.123456, 0.1, -3, 1e20, float("inf"), ""),
        ("CLIENT SETNAME", "botline"), ("SET", "k", memoryview(b"view")), ("GET", "ключ"),
    ]
    try:
        connection = pool.make_connection()
        for command in commands:
            assert b"".join(connection.pack_command(*command)) == b"".join(plain.pack_command(*command))
        for refused in (("SET", "k", True), ("SET", "k", None)):
            with pytest.raises(redis_errors.DataError):
                plain.pack_command(*refused)
            with pytest.raises(redis_errors.DataError):
                connection.pack_command(*refused)
    finally:
        await pool.aclose()


async def test_a_client_that_returns_bytes_is_refused(redis_url: str) -> None:
    raw = Redis.from_url(redis_url)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisStore(raw, "botline")
    finally:
        await raw.aclose()


async def test_a_passed_in_client_stays_open_after_close(client: Redis, prefixes: list[str]) -> None:
    prefixes.append(unique_prefix())
    store = RedisStore(client, prefixes[0])
    await store.close()
    assert await client.ping() is True


async def test_prefixes_keep_stores_apart(client: Redis, prefixes: list[str]) -> None:
    prefixes.extend([unique_prefix(), unique_prefix()])
    mine, theirs = (RedisStore(client, prefix) for prefix in prefixes)
    alice = Account(name="alice", salt="s")
    await mine.accounts.create(alice)
    assert await theirs.accounts.get(alice.id) is None
    assert await theirs.accounts.list() == []
    keys = RedisKeys(prefixes[0])
    assert await client.get(keys.account(alice.id)) == alice.model_dump_json(by_alias=True)
    written = [key async for key in client.scan_iter(match=keys.pattern())]
    assert sorted(written) == sorted([keys.account(alice.id), keys.accounts_index()])


async def test_deleting_sessions_and_clients_leaves_no_key_behind(client: Redis, prefixes: list[str]) -> None:
    prefixes.append(unique_prefix())
    store = RedisStore(client, prefixes[0])
    keys = RedisKeys(prefixes[0])
    now = datetime.now(UTC)
    web = ChatClient(
        account_id="a", name="web", client_parameters=ClientParameters(primary_color="#fff", page_title="Web")
    )
    await store.chat_clients.create(web)

    def tagged(n: int, expires_at: datetime) -> Session:
        return Session(account_id="a", chat_client_id=web.id, access_key=f"ak-{n}", tag="t", expires_at=expires_at)

    by_delete, by_client, by_expiry = tagged(1, now + HOUR), tagged(2, now + HOUR), tagged(3, now - HOUR)
    for chat in (by_delete, by_client, by_expiry):
        await store.sessions.create(chat)
        await store.messages.append(Message(session_id=chat.id, role=Role.USER, content="hi"))
    assert await store.sessions.delete_expired(now) == 1
    assert await store.sessions.delete("a", by_delete.id) is True
    await store.sessions.update(by_client.model_copy(update={"tag": "u", "expires_at": now + 2 * HOUR}))
    assert await store.sessions.delete_for_client("a", web.id) == 1
    assert await store.chat_clients.delete("a", web.id) is True
    assert [key async for key in client.scan_iter(match=keys.pattern())] == []


async def test_an_expiry_entry_without_its_session_is_dropped(client: Redis, prefixes: list[str]) -> None:
    prefixes.append(unique_prefix())
    store = RedisStore(client, prefixes[0])
    keys = RedisKeys(prefixes[0])
    await client.zadd(keys.sessions_by_expiry(), {"ghost": 0})
    assert await store.sessions.delete_expired(datetime.now(UTC)) == 0
    assert await client.exists(keys.sessions_by_expiry()) == 0


async def test_pending_inbound_keys_never_expire_and_answered_ones_do(client: Redis, prefixes: list[str]) -> None:
    prefixes.append(unique_prefix())
    store = RedisStore(client, prefixes[0])
    keys = RedisKeys(prefixes[0])
    record = inbound("m-1")
    await store.inbound.record(record, dedupe_seconds=60)
    watched = [keys.inbound_record(record.id), keys.inbound_dedupe(record.dedupe_key)]
    assert [await client.ttl(key) for key in watched] == [-1, -1]
    await store.inbound.complete(record.chat, [record.id])
    assert all(0 < ttl <= 60 for ttl in [await client.ttl(key) for key in watched])
    assert await store.inbound.purge(FAR_FUTURE) == 1
    left = [key async for key in client.scan_iter(match=keys.pattern())]
    assert left == [keys.inbound_sequence()]


async def test_purge_leaves_a_dedupe_key_reclaimed_by_a_newer_delivery(client: Redis, prefixes: list[str]) -> None:
    prefixes.append(unique_prefix())
    store = RedisStore(client, prefixes[0])
    keys = RedisKeys(prefixes[0])
    old = inbound("m-1")
    await store.inbound.record(old, dedupe_seconds=0)
    await store.inbound.complete(old.chat, [old.id])  # the window has passed: its keys go at once
    assert await client.zcard(keys.inbound_answered()) == 1
    new = inbound("m-1")
    assert await store.inbound.record(new, dedupe_seconds=60) is True
    assert await store.inbound.purge(FAR_FUTURE) == 0
    assert await client.exists(keys.inbound_answered()) == 0
    assert await store.inbound.record(inbound("m-1"), dedupe_seconds=60) is False
    assert await store.inbound.pending(new.chat) == [new]


async def test_documents_indexed_before_the_log_are_queued_again_and_the_old_keys_go(
    client: Redis, prefixes: list[str]
) -> None:
    """A store an older version indexed (per-term zsets, kb_stats): at the indexer's start its documents
    are queued again, so the log that searches read gets them, and the old index's keys are removed."""
    prefixes.append(unique_prefix())
    store, keys = RedisStore(client, prefixes[0]), RedisKeys(prefixes[0])
    collection = Collection(account_id="acc", name="FAQ")
    await store.collections.create(collection)
    written = await store.documents.write("acc", collection.id, [DocumentWrite(name="plans", contents="price")],
                                          now=FAR_FUTURE, labels=LabelChanges.SKIP)
    assert written is not None
    document_id = written.results[0][0]
    claimed = await store.documents.claim(FAR_FUTURE, lease_seconds=60, limit=10)
    await store.documents.complete([IndexedText.of(document_id, 1, ["price"])], now=FAR_FUTURE)
    assert await store.documents.claim(FAR_FUTURE, lease_seconds=60, limit=10) == []
    legacy = [f"{prefixes[0]}:kb_terms:{document_id}", f"{prefixes[0]}:kb_collection:{collection.id}:postings:price",
              f"{prefixes[0]}:kb_collection:{collection.id}:lengths", *keys.kb_legacy_index_markers()]
    for key in legacy:
        await client.set(key, "old")

    assert await store.documents.reindex_legacy(FAR_FUTURE) == 1
    again = await store.documents.claim(FAR_FUTURE, lease_seconds=60, limit=10)
    assert [d.id for d in again] == [d.id for d in claimed] == [document_id]
    assert again[0].state is IndexState.QUEUED
    assert await client.exists(*legacy) == 0
    assert await store.documents.reindex_legacy(FAR_FUTURE) == 0, "done once"


async def test_calls_that_walk_a_whole_collection_outlast_the_per_call_deadline(
    client: Redis, prefixes: list[str]
) -> None:
    """The per-call deadline bounds a call to a frozen Redis; a call whose length grows with the data (an
    index read into memory by a replica's first search, a collection cleared) is not failed by it on big
    data, while each of its page reads stays bounded. (Written on a machine where a 0.1 s deadline on the
    whole call cancelled the first search; 0.5 s leaves each page read room on a loaded CI machine, and
    on a slow one the whole calls outlast it.)"""
    prefixes.append(unique_prefix())
    writer, deadline = RedisStore(client, prefixes[0]), 0.5
    collection = Collection(account_id="acc", name="FAQ")
    await writer.collections.create(collection)
    words = " ".join(f"word{n}" for n in range(60))
    for start in range(0, 6_000, 1_000):
        await writer.documents.write("acc", collection.id, [DocumentWrite(name=f"d{n}", contents=f"{words} n{n}")
                                                            for n in range(start, start + 1_000)],
                                     now=FAR_FUTURE, labels=LabelChanges.SKIP)
        claimed = await writer.documents.claim(FAR_FUTURE, lease_seconds=60, limit=1_000)
        await writer.documents.complete([IndexedText.of(d.id, d.version, d.contents.split()) for d in claimed],
                                        now=FAR_FUTURE)
    replica = RedisStore(client, prefixes[0], deadline_seconds=deadline)
    hits = await replica.documents.search([collection.id], ["n5999"], limit=5)
    assert len(hits) == 1, "the first search read 6,000 rows"
    assert await replica.documents.clear("acc", collection.id) == 6_000
    assert await replica.documents.search([collection.id], ["word1"], limit=5) == []


async def test_coalesced_callers_each_get_their_own_reply_or_error(client: Redis, prefixes: list[str]) -> None:
    """The hot-path commands of concurrent Store calls share round trips (store/redis_coalesce.py)."""
    prefixes.append(prefix := unique_prefix())
    coalescer = Coalescer(client, None)
    await client.set(f"{prefix}:text", "not a number")
    calls = [coalescer.command("INCR", f"{prefix}:n{i % 5}") for i in range(100)]
    calls.insert(50, coalescer.command("INCR", f"{prefix}:text"))
    replies = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(replies[50], redis_errors.ResponseError)
    assert sum(isinstance(reply, Exception) for reply in replies) == 1
    counts = [reply for reply in replies if not isinstance(reply, Exception)]
    assert sorted(counts) == sorted(list(range(1, 21)) * 5)  # every increment once, none lost or doubled
    assert [int(await client.get(f"{prefix}:n{k}")) for k in range(5)] == [20] * 5


async def test_coalesced_scripts_are_served_again_after_redis_lost_them(
    client: Redis, redis_url: str, prefixes: list[str]
) -> None:
    prefixes.append(prefix := unique_prefix())
    async with await RedisStore.from_url(redis_url, prefix=prefix) as store:
        assert await store.counters.increment("hits", ttl_seconds=60) == 1
        await client.script_flush()  # as after a Redis restart
        counts = await asyncio.gather(*(store.counters.increment("hits", ttl_seconds=60) for _ in range(30)))
        assert sorted(counts) == list(range(2, 32))


async def test_a_silent_redis_fails_every_coalesced_caller_within_the_deadline(silent_redis: SilentRedis) -> None:
    async with await RedisStore.from_url(silent_redis.url, timeout_seconds=0.1) as store:
        calls = [store.counters.increment(f"k{i}", ttl_seconds=60) for i in range(10)]
        calls += [store.sessions.lease_with_messages("a", f"s{i}", f"lease{i}", ttl_seconds=15) for i in range(10)]
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=30)
        assert [type(outcome) for outcome in outcomes] == [StoreUnavailable] * 20
