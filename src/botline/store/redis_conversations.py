"""Redis repositories of the conversation side: chat clients, sessions and their messages.

Same rules as `redis.py`: JSON documents plus index keys named by `RedisKeys`, every multi-key
write in one MULTI/EXEC, and writes that depend on what is stored run under WATCH (retried).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT

from botline.domain.answer_media import AnswerMedia
from botline.domain.chat_clients import ChatClient
from botline.domain.conversations import Message, Session
from botline.domain.handoff import Handoff
from botline.domain.integrations import FIELD_OF, Integration, IntegrationType
from botline.store.base import (
    ChatClientRepository,
    ConflictError,
    HeldLease,
    LeasedHistory,
    MessageRepository,
    PromptWrite,
    SessionChange,
    SessionRepository,
)
from botline.store.changes import ClientSettings, SessionContext
from botline.store.documents import load_many, wire_time
from botline.store.keys import RedisKeys
from botline.store.redis_base import (
    _claim,
    _dump,
    _epoch_seconds,
    _fetch,
    _fetch_many,
    _reachable_methods,
    _Repo,
    _repoint,
    _score,
    lease_token,
    milliseconds,
)
from botline.store.redis_coalesce import Coalescer

MIN_SCORE = "-inf"
REMEMBERED_ACCESS_KEYS = 10_000


def _queue_messages(pipe: Pipeline, keys: RedisKeys, session_id: str) -> None:
    """Queues the two reads of a session's messages: their order, then their documents."""
    pipe.lrange(keys.message_ids(session_id), 0, -1)
    pipe.hgetall(keys.messages(session_id))


def _media_keys(keys: RedisKeys, session_id: str) -> tuple[str, str, str]:
    """The keys of a session's answer files (redis_media.py): deleted with its messages."""
    return keys.media(session_id), keys.media_data(session_id), keys.media_ids(session_id)


def _in_order(ids: list[str], documents: dict[str, str]) -> list[Message]:
    return load_many(Message, (documents[i] for i in ids if i in documents))


def _session_with_messages(account_id: str, found: list[str]) -> tuple[Session, list[Message]] | None:
    """What SESSION_WITH_MESSAGES_SCRIPT read: the session (None when gone or another account's) and
    its messages."""
    if not found:
        return None
    session = Session.model_validate_json(found[0])
    if session.account_id != account_id:
        return None
    return session, load_many(Message, found[1:])

READ_WITH_MESSAGES = """
local function read_with_messages(out, session_key, order, documents)
  local raw = redis.call('GET', session_key)
  if not raw then return false end
  out[#out + 1] = raw
  local ids = redis.call('LRANGE', order, 0, -1)
  for first = 1, #ids, 500 do
    local found = redis.call('HMGET', documents, unpack(ids, first, math.min(first + 499, #ids)))
    for i = 1, #found do
      if found[i] then out[#out + 1] = found[i] end
    end
  end
  return true
end
"""
"""Adds a session's document, then its messages' documents in order, to `out` (false when the session
is gone); HMGET in slices, because Lua's `unpack` has a stack limit."""

APPEND = """
local function append(session_key, session, documents, order, expiry, session_id, at, first)
  session['messageCount'] = session['messageCount'] + tonumber(ARGV[at])
  session['tokenCount'] = session['tokenCount'] + tonumber(ARGV[at + 1])
  if ARGV[at + 2] ~= '' then session['lastMessageAt'] = ARGV[at + 2] end
  if ARGV[at + 3] ~= '' then session['lastUserMessageAt'] = ARGV[at + 3] end
  if ARGV[at + 4] ~= '' then
    local current = tonumber(redis.call('ZSCORE', expiry, session_id))
    if current == nil or current < tonumber(ARGV[at + 4]) then
      session['expiresAt'] = ARGV[at + 5]
      redis.call('ZADD', expiry, ARGV[at + 4], session_id)
    end
  end
  for i = first, #ARGV, 2 do
    redis.call('HSET', documents, ARGV[i], ARGV[i + 1])
    redis.call('RPUSH', order, ARGV[i])
  end
  redis.call('SET', session_key, cjson.encode(session))
end
"""
"""A SessionChange (`_change_args`: ARGV[at] to ARGV[at + 5]) applied to the decoded `session`, and the
(id, document) pairs from ARGV[first] on appended. The session's own expiry is its score in the expiry
index (kept equal to expiresAt by every write)."""

SESSION_WITH_MESSAGES_SCRIPT = READ_WITH_MESSAGES + """
local out = {}
read_with_messages(out, KEYS[1], KEYS[2], KEYS[3])
return out
"""
"""sessions.get_with_messages in one round trip, atomic as every script: empty when the session is
gone, else its document and then its messages' documents in order."""

LEASE_WITH_MESSAGES_SCRIPT = READ_WITH_MESSAGES + APPEND + """
if not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local out = {'0'}
if not read_with_messages(out, KEYS[1], KEYS[2], KEYS[3]) then return {} end
if #ARGV == 2 then return out end
local session = cjson.decode(out[2])
local handoff = session['handoff']
local cap = tonumber(ARGV[6])
local fits = session['accountId'] == ARGV[3]
  and (tonumber(redis.call('ZSCORE', KEYS[5], ARGV[4])) or 0) > tonumber(ARGV[5])
  and not (type(handoff) == 'table' and handoff['state'] == 'human')
  and (#out == 2 or cjson.decode(out[#out])['role'] ~= 'user')
  and (cap == 0 or session['messageCount'] < cap)
  and redis.call('HEXISTS', KEYS[3], ARGV[13]) == 0
if fits then
  append(KEYS[1], session, KEYS[3], KEYS[2], KEYS[5], ARGV[4], 7, 13)
  out[1] = '1'
end
return out
"""
"""sessions.lease_with_messages: the lease taken as RedisLocks.acquire takes it (KEYS[4], token ARGV[1],
ttl ARGV[2] ms), then, in the same script, the read of SESSION_WITH_MESSAGES_SCRIPT and, with a prompt
(ARGV[3] on: account, session id, now in epoch seconds, maxMessages, its change, its id and document),
the prompt appended when it fits as PromptWrite.fits says (liveness by the expiry index, KEYS[5]).
False when the lease is held (nothing read); else '1' when the prompt was written ('0' otherwise),
then what SESSION_WITH_MESSAGES_SCRIPT gives, read before the write; empty when the session is gone."""

ADD_MESSAGES_SCRIPT = APPEND + """
if ARGV[9] ~= '' and redis.call('GET', KEYS[5]) == ARGV[9] then redis.call('DEL', KEYS[5]) end
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local session = cjson.decode(raw)
if session['accountId'] ~= ARGV[1] then return false end
for i = 10, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then return 0 end
end
append(KEYS[1], session, KEYS[2], KEYS[3], KEYS[4], ARGV[2], 3, 10)
return 1
"""
"""sessions.add_messages in one round trip, atomic as every script: false when the session is gone or
another account's, 0 when a message id is taken (nothing written), else 1. With a lease to free
(KEYS[5], its token ARGV[9]; '' for none) it is freed as RELEASE_SCRIPT does, whatever the write
finds: first, which inside a script is the same moment as last."""


def _change_args(change: SessionChange) -> list[EncodableT]:
    """A SessionChange as APPEND reads it: six script arguments ('' where unchanged)."""
    floor = change.expires_at_least
    return [change.messages, change.tokens, wire_time(change.last_message_at) or "",
            wire_time(change.last_user_message_at) or "", "" if floor is None else _epoch_seconds(floor),
            wire_time(floor) or ""]


@_reachable_methods
class RedisChatClients(_Repo, ChatClientRepository):
    async def create(self, client: ChatClient) -> None:
        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.chat_client(client.id), _dump(client))
            pipe.zadd(self._keys.chat_clients_of_account(client.account_id), {client.id: _score(client.created_at)})

        await self._insert([self._keys.chat_client(client.id)], f"chat client {client.id}", writes)

    async def get(self, account_id: str, client_id: str) -> ChatClient | None:
        client = await self._get(ChatClient, self._keys.chat_client(client_id))
        return client if client is not None and client.account_id == account_id else None

    async def find(self, client_id: str) -> ChatClient | None:
        return await self._get(ChatClient, self._keys.chat_client(client_id))

    async def list_for_account(self, account_id: str) -> list[ChatClient]:
        return await self._indexed(ChatClient, self._keys.chat_clients_of_account(account_id), self._keys.chat_client)

    async def update(self, client: ChatClient) -> None:
        doc_key = self._keys.chat_client(client.id)

        async def body(pipe: Pipeline) -> None:
            old = await _fetch(pipe, ChatClient, doc_key)
            if old is None or old.account_id != client.account_id:
                return
            pipe.multi()
            pipe.set(doc_key, _dump(client))

        await self._atomic(body, doc_key)

    async def edit(self, account_id: str, client_id: str, settings: ClientSettings) -> bool:
        return await self._change(account_id, client_id, lambda stored: stored.model_copy(update=vars(settings)))

    async def set_integration(
        self, account_id: str, client_id: str, kind: IntegrationType, integration: Integration | None
    ) -> bool:
        def saved(stored: ChatClient) -> ChatClient:
            integrations = stored.integrations.model_copy(update={FIELD_OF[kind]: integration})
            return stored.model_copy(update={"integrations": integrations})

        return await self._change(account_id, client_id, saved)

    async def _change(self, account_id: str, client_id: str, change: Callable[[ChatClient], ChatClient]) -> bool:
        def owned(stored: ChatClient) -> ChatClient | None:
            return change(stored) if stored.account_id == account_id else None

        return await self._modify(ChatClient, self._keys.chat_client(client_id), owned) is not None

    async def delete(self, account_id: str, client_id: str) -> bool:
        doc_key = self._keys.chat_client(client_id)

        async def body(pipe: Pipeline) -> bool:
            client = await _fetch(pipe, ChatClient, doc_key)
            if client is None or client.account_id != account_id:
                return False
            pipe.multi()
            pipe.delete(doc_key)
            pipe.zrem(self._keys.chat_clients_of_account(account_id), client_id)
            return True

        return await self._atomic(body, doc_key)


@_reachable_methods
class RedisSessions(_Repo, SessionRepository):
    """Indexes per session: the access-key pointer (unique), the client's zset by created_at, the
    global expiry zset (epoch seconds) and, when tagged, the zset of the client's sessions with
    that tag by created_at, whose last member is what `get_by_tag` returns. Scores of the
    created_at indexes keep the created_at of `create`, as SQLite keeps its `created_at` column."""

    def __init__(self, client: Redis, keys: RedisKeys, coalescer: Coalescer) -> None:
        """`coalescer`: sends the web chat's hot-path commands of concurrent turns together."""
        super().__init__(client, keys)
        self._coalescer = coalescer
        self._add_messages_script = client.register_script(ADD_MESSAGES_SCRIPT)
        self._with_messages_script = client.register_script(SESSION_WITH_MESSAGES_SCRIPT)
        self._lease_with_messages_script = client.register_script(LEASE_WITH_MESSAGES_SCRIPT)
        self._ids_by_access_key: dict[str, str] = {}
        """Remembered pointers (the web chat looks its session up by access key on every request):
        a hit is one read instead of two, and is only trusted when the document read still carries
        that access key, so a moved or deleted key is never served from here."""

    async def create(self, session: Session) -> None:
        def writes(pipe: Pipeline) -> None:
            pipe.set(self._keys.session(session.id), _dump(session))
            pipe.set(self._keys.session_by_access_key(session.access_key), session.id)
            self._index(pipe, session, _score(session.created_at))

        unique = [self._keys.session(session.id), self._keys.session_by_access_key(session.access_key)]
        await self._insert(unique, "session", writes)

    def _client_index(self, session: Session) -> str:
        return self._keys.sessions_of_client(session.account_id, session.chat_client_id)

    def _index(self, pipe: Pipeline, session: Session, created: int) -> None:
        """Inside MULTI: adds the session to its client, tag and expiry indexes."""
        pipe.zadd(self._client_index(session), {session.id: created})
        if session.tag is not None:
            tagged = self._keys.sessions_with_tag(session.account_id, session.chat_client_id, session.tag)
            pipe.zadd(tagged, {session.id: created})
        pipe.zadd(self._keys.sessions_by_expiry(), {session.id: _epoch_seconds(session.expires_at)})

    def _unindex(self, pipe: Pipeline, session: Session) -> None:
        """Inside MULTI: the reverse of `_index` (the expiry entry is left to the caller)."""
        pipe.zrem(self._client_index(session), session.id)
        if session.tag is not None:
            pipe.zrem(self._keys.sessions_with_tag(session.account_id, session.chat_client_id, session.tag), session.id)

    def _drop(self, pipe: Pipeline, session: Session) -> None:
        """Inside MULTI: deletes the session, every index entry of it and its messages."""
        keys = self._keys
        pipe.delete(
            keys.session(session.id),
            keys.session_by_access_key(session.access_key),
            keys.message_ids(session.id),
            keys.messages(session.id),
            *_media_keys(keys, session.id),
        )
        self._unindex(pipe, session)
        pipe.zrem(keys.sessions_by_expiry(), session.id)

    async def get(self, account_id: str, session_id: str) -> Session | None:
        session = await self._get(Session, self._keys.session(session_id))
        return session if session is not None and session.account_id == account_id else None

    async def get_with_messages(self, account_id: str, session_id: str) -> tuple[Session, list[Message]] | None:
        """One script (one round trip, one consistent snapshot, one reply to parse)."""
        found = cast(list[str], await self._with_messages_script(keys=self._history_keys(session_id)))
        return _session_with_messages(account_id, found)

    async def lease_with_messages(
        self, account_id: str, session_id: str, lease: str, *, ttl_seconds: float, prompt: PromptWrite | None = None,
    ) -> LeasedHistory | None:
        """One script (LEASE_WITH_MESSAGES_SCRIPT): the lease (the lock key of RedisLocks), the read of
        `get_with_messages` and the prompt's write, which the turn made one round trip after the other."""
        token = lease_token()
        keys = [*self._history_keys(session_id), self._keys.lock(lease), self._keys.sessions_by_expiry()]
        args: list[EncodableT] = [token, milliseconds(ttl_seconds)]
        if prompt is not None:
            message = prompt.message
            args += [account_id, session_id, _epoch_seconds(prompt.now), prompt.max_messages,
                     *_change_args(prompt.change), message.id, _dump(message)]
        found = cast(list[str] | None, await self._coalescer.script(self._lease_with_messages_script, keys, args))
        if found is None:
            return None
        return LeasedHistory(token, _session_with_messages(account_id, found[1:]), prompt_written=found[:1] == ["1"])

    def _history_keys(self, session_id: str) -> list[str]:
        return [self._keys.session(session_id), self._keys.message_ids(session_id), self._keys.messages(session_id)]

    async def get_by_access_key(self, access_key: str) -> Session | None:
        remembered = self._ids_by_access_key.get(access_key)
        if remembered is not None:
            raw = cast(str | None, await self._coalescer.command("GET", self._keys.session(remembered)))
            session = None if raw is None else Session.model_validate_json(raw)
            if session is not None and session.access_key == access_key:
                return session
            self._ids_by_access_key.pop(access_key, None)
        session = await self._by_pointer(Session, self._keys.session_by_access_key(access_key), self._keys.session)
        if session is not None:
            if len(self._ids_by_access_key) >= REMEMBERED_ACCESS_KEYS:
                del self._ids_by_access_key[next(iter(self._ids_by_access_key))]  # the oldest
            self._ids_by_access_key[access_key] = session.id
        return session

    async def get_by_tag(self, account_id: str, chat_client_id: str, tag: str) -> Session | None:
        """The highest (created_at, id) in the tag's zset, like SQLite's `ORDER BY created_at DESC,
        id DESC`. Every tagged session stays in that zset (not only the newest behind a pointer),
        so deleting the newest one makes the next newest with that tag found again."""
        tagged = self._keys.sessions_with_tag(account_id, chat_client_id, tag)
        newest = cast(list[str], await self._redis.zrange(tagged, 0, 0, desc=True))
        if not newest:
            return None
        session = await self._get(Session, self._keys.session(newest[0]))
        # Checked again: an update or a delete may land between the two reads.
        found = None if session is None else (session.account_id, session.chat_client_id, session.tag)
        return session if found == (account_id, chat_client_id, tag) else None

    async def update(self, session: Session) -> None:
        """Ignored for an unknown id or a session stored under another account; the indexes follow
        a new access key, tag, chat client or expiry."""
        doc_key = self._keys.session(session.id)

        async def body(pipe: Pipeline) -> None:
            old = await _fetch(pipe, Session, doc_key)
            if old is None or old.account_id != session.account_id:
                return
            old_access = self._keys.session_by_access_key(old.access_key)
            new_access = self._keys.session_by_access_key(session.access_key)
            await _claim(pipe, old_access, new_access, "session access key")
            pipe.multi()
            _repoint(pipe, old_access, new_access, session.id)
            self._unindex(pipe, old)
            self._index(pipe, session, _score(old.created_at))
            pipe.set(doc_key, _dump(session))

        await self._atomic(body, doc_key)

    async def renew(
        self, account_id: str, session_id: str, *, expires_at: datetime, extend_only: bool = False,
        context: SessionContext | None = None,
    ) -> Session | None:
        def renewed(stored: Session) -> Session:
            update: dict[str, object] = {"expires_at": max(stored.expires_at, expires_at) if extend_only
                                         else expires_at}
            if context is not None:
                update.update(vars(context))
            return stored.model_copy(update=update)

        def reindex(pipe: Pipeline, session: Session) -> None:
            pipe.zadd(self._keys.sessions_by_expiry(), {session.id: _epoch_seconds(session.expires_at)})

        return await self._change(account_id, session_id, renewed, reindex)

    async def set_handoff(self, account_id: str, session_id: str, handoff: Handoff | None) -> Session | None:
        return await self._change(account_id, session_id, lambda s: s.model_copy(update={"handoff": handoff}))

    async def record_delivery_error(self, account_id: str, session_id: str, error: str | None) -> None:
        await self._change(account_id, session_id, lambda s: s.model_copy(update={"last_delivery_error": error}))

    async def recount(self, account_id: str, session_id: str, delta: int | None) -> None:
        def recounted(stored: Session) -> Session:
            count = 0 if delta is None else max(stored.message_count + delta, 0)
            return stored.model_copy(update={"message_count": count})

        await self._change(account_id, session_id, recounted)

    async def _change(
        self, account_id: str, session_id: str, change: Callable[[Session], Session],
        also: Callable[[Pipeline, Session], None] | None = None,
    ) -> Session | None:
        """A field edit of the stored session (never of another account's); access key, tag and
        client stay as stored, so only the expiry index may need to follow (`also`)."""
        def owned(stored: Session) -> Session | None:
            return change(stored) if stored.account_id == account_id else None

        return await self._modify(Session, self._keys.session(session_id), owned, also)

    async def add_messages(
        self, account_id: str, session_id: str, messages: Sequence[Message], change: SessionChange, *,
        freeing: HeldLease | None = None,
    ) -> bool:
        """One script (ADD_MESSAGES_SCRIPT): the access key, tag and client stay as stored, so only
        the expiry index can move; a lease to free rides on it (the lock key of RedisLocks)."""
        keys = self._keys
        token = "" if freeing is None else freeing.token
        args: list[EncodableT] = [account_id, session_id, *_change_args(change), token]
        for message in messages:
            args += [message.id, _dump(message)]
        script_keys = [keys.session(session_id), keys.messages(session_id), keys.message_ids(session_id),
                       keys.sessions_by_expiry()]
        if freeing is not None:
            script_keys.append(keys.lock(freeing.name))
        written = await self._coalescer.script(self._add_messages_script, script_keys, args)
        if written == 0:
            raise ConflictError("a message with that id already exists")
        return written is not None

    async def list_for_client(self, account_id: str, chat_client_id: str) -> list[Session]:
        index = self._keys.sessions_of_client(account_id, chat_client_id)
        return await self._indexed(Session, index, self._keys.session)

    async def delete(self, account_id: str, session_id: str) -> bool:
        doc_key = self._keys.session(session_id)

        async def body(pipe: Pipeline) -> bool:
            session = await _fetch(pipe, Session, doc_key)
            if session is None or session.account_id != account_id:
                return False
            pipe.multi()
            self._drop(pipe, session)
            return True

        return await self._atomic(body, doc_key)

    async def delete_for_client(self, account_id: str, chat_client_id: str) -> int:
        """One transaction over the client's index and every session in it: a session created in
        the client meanwhile restarts it, so none is left behind."""
        index = self._keys.sessions_of_client(account_id, chat_client_id)

        async def body(pipe: Pipeline) -> int:
            ids = cast(list[str], await pipe.zrange(index, 0, -1))
            if not ids:
                return 0
            doc_keys = [self._keys.session(session_id) for session_id in ids]
            await pipe.watch(*doc_keys)
            sessions = await _fetch_many(pipe, Session, doc_keys)
            pipe.multi()
            pipe.zrem(index, *ids)  # also drops ids whose document is gone
            owner = (account_id, chat_client_id)
            doomed = [s for s in sessions if s is not None and (s.account_id, s.chat_client_id) == owner]
            for session in doomed:
                self._drop(pipe, session)
            return len(doomed)

        return await self._atomic(body, index)

    async def delete_expired(self, now: datetime, *, limit: int = 500) -> int:
        """Picks up to `limit` ids from the expiry zset (lowest expiry first), then deletes, under
        WATCH of their documents, those whose stored `expires_at` is still due. The expiry zset
        itself is not watched, so sessions created meanwhile never make this retry."""
        expiry = self._keys.sessions_by_expiry()
        due = _epoch_seconds(now)
        ids = cast(list[str], await self._redis.zrangebyscore(expiry, MIN_SCORE, due, start=0, num=limit))
        if not ids:
            return 0
        doc_keys = [self._keys.session(session_id) for session_id in ids]

        async def body(pipe: Pipeline) -> int:
            sessions = await _fetch_many(pipe, Session, doc_keys)
            pipe.multi()
            deleted = 0
            for session_id, session in zip(ids, sessions, strict=True):
                if session is None:
                    pipe.zrem(expiry, session_id)  # deleted meanwhile (or a stale entry)
                elif _epoch_seconds(session.expires_at) <= due:
                    self._drop(pipe, session)
                    deleted += 1
            return deleted

        return await self._atomic(body, *doc_keys)


@_reachable_methods
class RedisMessages(_Repo, MessageRepository):
    """Per session: a list of ids (the order) and a hash id -> JSON (the documents)."""

    async def append(self, message: Message) -> None:
        documents = self._keys.messages(message.session_id)

        async def body(pipe: Pipeline) -> None:
            if await pipe.hexists(documents, message.id):
                raise ConflictError(f"message {message.id} already exists")
            pipe.multi()
            pipe.hset(documents, message.id, _dump(message))
            pipe.rpush(self._keys.message_ids(message.session_id), message.id)

        await self._atomic(body, documents)

    async def update(self, message: Message) -> None:
        documents = self._keys.messages(message.session_id)

        async def body(pipe: Pipeline) -> None:
            if await pipe.hexists(documents, message.id):
                pipe.multi()
                pipe.hset(documents, message.id, _dump(message))

        await self._atomic(body, documents)

    async def list(self, session_id: str) -> list[Message]:
        async with self._redis.pipeline(transaction=True) as pipe:
            _queue_messages(pipe, self._keys, session_id)
            ids, documents = await pipe.execute()
        return _in_order(ids, documents)

    async def delete_after(self, session_id: str, message_id: str) -> int:
        """Under WATCH of the order and of the session's answer files, whose records name their message."""
        order = self._keys.message_ids(session_id)
        media, media_data, media_ids = _media_keys(self._keys, session_id)

        async def body(pipe: Pipeline) -> int:
            position = cast(int | None, await pipe.lpos(order, message_id))
            if position is None:
                return 0
            later = cast(list[str], await pipe.lrange(order, position + 1, -1))
            if not later:
                return 0
            files = cast(dict[str, str], await pipe.hgetall(media))
            dropped = set(later)
            doomed = [f.id for f in load_many(AnswerMedia, files.values()) if f.message_id in dropped]
            pipe.multi()
            pipe.ltrim(order, 0, position)
            pipe.hdel(self._keys.messages(session_id), *later)
            if doomed:
                pipe.hdel(media, *doomed)
                pipe.hdel(media_data, *doomed)
                for file_id in doomed:
                    pipe.lrem(media_ids, 1, file_id)
            return len(later)

        return await self._atomic(body, order, media)

    async def clear(self, session_id: str) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hlen(self._keys.messages(session_id))
            pipe.delete(self._keys.message_ids(session_id), self._keys.messages(session_id),
                        *_media_keys(self._keys, session_id))
            count, _ = await pipe.execute()
        return int(count)
