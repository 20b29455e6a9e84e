"""Redis repositories of bytes: answer files (three keys per session) and shared blobs (one key each).

The client decodes replies to str, so bytes are stored as base64. A session's answer files are
deleted with it (RedisSessions._drop), with its messages (RedisMessages.clear, delete_after), in the
same MULTI/EXEC. Shared blobs carry a PX TTL, so Redis expires them itself.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import cast

import orjson
from redis.asyncio import Redis

from botline.domain.answer_media import AnswerMedia
from botline.store.documents import load_many
from botline.store.keys import RedisKeys
from botline.store.media import Blob, BlobRepository, MediaAdded, MediaRepository
from botline.store.redis_base import _dump, _reachable_methods, _Repo

ADD_MEDIA_SCRIPT = """
local used = 0
for _, raw in ipairs(redis.call('HVALS', KEYS[2])) do used = used + cjson.decode(raw)['size'] end
if used + tonumber(ARGV[4]) > tonumber(ARGV[5]) then return 'full' end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 'no_message' end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[6])
redis.call('RPUSH', KEYS[4], ARGV[2])
return 'stored'
"""
"""media.add in one round trip: the session's byte budget (summed over its files' records, as few as
the budget allows), then the answer in the session's messages, then the three writes."""


@_reachable_methods
class RedisMedia(_Repo, MediaRepository):
    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        super().__init__(client, keys)
        self._add_script = client.register_script(ADD_MEDIA_SCRIPT)

    async def add(self, media: AnswerMedia, data: bytes, *, session_bytes: int) -> MediaAdded:
        keys, session = self._keys, media.session_id
        outcome = await self._add_script(
            keys=[keys.messages(session), keys.media(session), keys.media_data(session), keys.media_ids(session)],
            args=[media.message_id, media.id, _dump(media), len(data), session_bytes,
                  base64.b64encode(data).decode()],
        )
        return MediaAdded(outcome)

    async def get(self, session_id: str, media_id: str) -> tuple[AnswerMedia, bytes] | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._keys.media(session_id), media_id)
            pipe.hget(self._keys.media_data(session_id), media_id)
            meta, data = await pipe.execute()
        if meta is None or data is None:
            return None
        return AnswerMedia.model_validate_json(meta), base64.b64decode(data)

    async def list(self, session_id: str) -> list[AnswerMedia]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrange(self._keys.media_ids(session_id), 0, -1)
            pipe.hgetall(self._keys.media(session_id))
            ids, documents = await pipe.execute()
        return load_many(AnswerMedia, (documents[i] for i in ids if i in documents))


@_reachable_methods
class RedisBlobs(_Repo, BlobRepository):
    async def put(self, key: str, blob: Blob, *, now: datetime, ttl_seconds: float) -> None:
        value = orjson.dumps({"contentType": blob.content_type, "expiresAt": now.timestamp() + ttl_seconds,
                              "data": base64.b64encode(blob.data).decode()})
        await self._redis.set(self._keys.blob(key), value, px=max(int(ttl_seconds * 1000), 1))

    async def get(self, key: str, *, now: datetime) -> Blob | None:
        raw = cast(str | None, await self._redis.get(self._keys.blob(key)))
        if raw is None:
            return None
        stored = orjson.loads(raw)
        if stored["expiresAt"] <= now.timestamp():
            return None
        return Blob(content_type=stored["contentType"], data=base64.b64decode(stored["data"]))

    async def purge(self, now: datetime, *, limit: int = 500) -> int:
        """Nothing to do: Redis expires each blob at its TTL."""
        return 0
