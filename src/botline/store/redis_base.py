"""What every Redis repository shares: the StoreUnavailable boundary, JSON documents, scores and
the WATCH/MULTI helpers. The repositories live in `redis.py`, `redis_conversations.py` and
`redis_inbound.py`.

The client must decode replies (checked by RedisStore), hence the `cast(str, ...)` of replies.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar, cast

from pydantic import BaseModel
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from botline.store.base import ConflictError, ReportsErrors, StoreUnavailable, wrap_public_coroutines
from botline.store.documents import load_many
from botline.store.keys import RedisKeys

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")
P = ParamSpec("P")
C = TypeVar("C")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS_PER_SECOND = 1000
TOKEN_BYTES = 16
MICROSECOND = timedelta(microseconds=1)
# A Redis that is down, slow, full (OOM under noeviction) or a replica mid-failover cannot take writes: all
# of them answer 503 and are retried, never 500.
UNAVAILABLE_ERRORS = (
    redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError, redis_errors.MasterDownError,
)


CLOCK_SLACK_SECONDS = 0.001
"""How early the watchdog may find a deadline due: the event loop's timers round to the millisecond."""


class _Call:
    """A Store call in flight under a deadline."""

    __slots__ = ("at", "cancelling", "expired", "task")

    def __init__(self, task: asyncio.Task[Any], at: float) -> None:
        self.task = task
        self.at = at
        self.cancelling = task.cancelling()
        """The task's pending cancels when the call started: a cancel beyond them is not the deadline's."""
        self.expired = False


class Deadlines:
    """The deadlines of a store's calls in flight, watched by one timer (docs/decisions.md "One watchdog
    for the Store-call deadlines"): `asyncio.timeout` armed and disarmed an event-loop timer per call, ~5 µs
    of CPU each under uvloop. Every call gets the same `seconds`, so calls fall due in the order they
    started, and the timer is set for the oldest one's deadline only. A call that falls due is cancelled
    and `leave` tells that cancel apart from any other, as `asyncio.timeout` does (uncancel)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._calls: dict[_Call, None] = {}
        """In flight, oldest first (a dict keeps insertion order): the first is the next to fall due."""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> _Call:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Store call with a deadline runs in a task")
        loop = task.get_loop()
        call = _Call(task, loop.time() + self.seconds)
        self._calls[call] = None
        if self._timer is None or self._loop is not loop:  # a store kept across event loops (tests)
            self._loop, self._timer = loop, loop.call_at(call.at, self._expire)
        return call

    def leave(self, call: _Call) -> bool:
        """Ends `call`; True when its deadline cancelled it and no other cancel is pending (the
        CancelledError it ends with is then the deadline's, as `asyncio.timeout` turns it into TimeoutError)."""
        if not call.expired:
            del self._calls[call]
            return False
        return call.task.uncancel() <= call.cancelling

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        due = loop.time() + CLOCK_SLACK_SECONDS
        while self._calls:
            call = next(iter(self._calls))
            if call.at > due:
                self._timer = loop.call_at(call.at, self._expire)
                return
            del self._calls[call]
            call.expired = True
            call.task.cancel()


class _Deadline:
    """Where `_reachable` finds the deadlines of its store's calls (None: no bound of botline's own)."""

    deadlines: Deadlines | None = None


WALKS = "_botline_walks"
Walker = TypeVar("Walker", bound=Callable[..., Awaitable[Any]])


def _walks(method: Walker) -> Walker:
    """Marks a Store call whose length grows with the data it walks (a whole collection cleared,
    re-queued or browsed, an index read into memory): `_reachable` bounds it by no deadline as a whole,
    which would fail it on big data however healthy Redis is, but bounds each Redis command it sends
    (`Walk`), so a Redis that stops answering fails it as it fails any other call."""
    setattr(method, WALKS, True)
    return method


class Walk:
    """The deadlines of a walk's commands: each command (from taking a pooled connection to giving it
    back, redis_pool.py) runs under the store's deadline, one at a time; the time between them, the
    walk's own work on what it read, has none."""

    __slots__ = ("_call", "_deadlines", "_open", "expired")

    def __init__(self, deadlines: Deadlines) -> None:
        self._deadlines = deadlines
        self._call: _Call | None = None
        self._open = 0
        self.expired = False
        """A command's deadline cancelled the walk (its CancelledError is then an outage)."""

    def command_started(self) -> None:
        self._open += 1
        if self._call is None:
            self._call = self._deadlines.enter()

    def command_ended(self) -> None:
        self._open = max(self._open - 1, 0)
        if self._open == 0 and self._call is not None:
            self.expired = self._deadlines.leave(self._call) or self.expired
            self._call = None


WALK: contextvars.ContextVar[Walk | None] = contextvars.ContextVar("botline_redis_walk", default=None)
"""The walk the running code is part of (None outside walks, and inside a bounded call a walk makes)."""


def _reachable(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """The one boundary where a lost Redis connection becomes StoreUnavailable, and where a Redis that
    stops answering does too: the whole call (every command of it) runs under one deadline, the
    owner's `deadlines` (docs/decisions.md "One deadline per Store call"). `close` and the
    calls marked `_walks` have none.

    redis-py can turn a cancel that lands while it (re)connects into a ConnectionError: when the task
    is being cancelled the cancel is given back, or a loop that retries StoreError (a lease refresh,
    marking a reply answered) would swallow it and never end (a shutdown that hangs). The deadline's
    own cancel is taken back first (`Deadlines.leave`), so it is reported as the outage it is.
    """
    walks = getattr(method, WALKS, False)
    bounded = method.__name__ != "close" and not walks

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        owner = args[0] if args else None
        store_deadlines = owner.deadlines if isinstance(owner, _Deadline) else None
        deadlines = store_deadlines if bounded else None
        walk = Walk(store_deadlines) if walks and store_deadlines is not None else None
        # Inside a walk a bounded call has its own deadline, and its commands no second one.
        context = WALK.set(walk) if walk is not None or (bounded and WALK.get() is not None) else None
        call = None if deadlines is None else deadlines.enter()
        try:
            return await method(*args, **kwargs)
        except BaseException as exc:
            timed_out = deadlines is not None and call is not None and deadlines.leave(call)
            call = None
            if (timed_out or (walk is not None and walk.expired)) and isinstance(exc, asyncio.CancelledError):
                assert store_deadlines is not None
                raise StoreUnavailable(
                    f"Redis is unavailable: no answer within {store_deadlines.seconds:g} s") from exc
            if isinstance(exc, UNAVAILABLE_ERRORS):
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc
                raise StoreUnavailable(f"Redis is unavailable: {exc}") from exc
            raise
        finally:
            if deadlines is not None and call is not None:
                deadlines.leave(call)
            if context is not None:
                WALK.reset(context)

    return wrapper


def _reachable_methods(cls: type[C]) -> type[C]:
    """Puts every public coroutine method that `cls` defines behind `_reachable`."""
    return wrap_public_coroutines(cls, _reachable)


def _dump(model: BaseModel) -> str:
    return model.model_dump_json(by_alias=True)


def milliseconds(seconds: float) -> int:
    """A positive PX/PEXPIRE argument (Redis refuses 0)."""
    return max(1, round(seconds * MS_PER_SECOND))


def lease_token() -> str:
    """A lease's token: random, so no other holder (another replica) can hold the same one."""
    return secrets.token_hex(TOKEN_BYTES)


async def _fetch(conn: Redis | Pipeline, model_type: type[ModelT], key: str) -> ModelT | None:
    """Reads one document, through the client or through a pipeline that is watching."""
    raw = await conn.get(key)
    return None if raw is None else model_type.model_validate_json(raw)


async def _fetch_many(pipe: Pipeline, model_type: type[ModelT], keys: Sequence[str]) -> list[ModelT | None]:
    """Reads several documents through a pipeline that is watching; None where a key is missing."""
    if not keys:
        return []
    raws = cast(list[str | None], await pipe.mget(list(keys)))
    return [None if raw is None else model_type.model_validate_json(raw) for raw in raws]


async def _claim(pipe: Pipeline, old: str, new: str, what: str) -> None:
    """Before MULTI: when a unique pointer moves from `old` to `new`, watches `new` and raises
    ConflictError if another object holds it."""
    if new != old:
        await pipe.watch(new)
        if await pipe.exists(new):
            raise ConflictError(f"{what} already exists")


def _repoint(pipe: Pipeline, old: str, new: str, object_id: str) -> None:
    """Inside MULTI: moves a unique pointer (DEL then SET, so also right when old == new)."""
    pipe.delete(old)
    pipe.set(new, object_id)


def _score(moment: datetime) -> int:
    """Whole microseconds since the epoch: exact in a sorted-set score (< 2**53), so equal
    timestamps tie and Redis orders them by member (the id), like `ORDER BY created_at, id`."""
    return (moment.astimezone(UTC) - EPOCH) // MICROSECOND


def _epoch_seconds(moment: datetime) -> float:
    """The score of an expiry: the same float SQLite stores in `expires_ts`, so both backends
    compare `expires_at <= now` on identical numbers."""
    return moment.timestamp()


class _Repo(ReportsErrors, _Deadline):
    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        self._redis = client
        self._keys = keys

    async def _atomic(self, body: Callable[[Pipeline], Awaitable[T]], *watch: str) -> T:
        """Runs `body` with `watch` watched; it reads, calls `pipe.multi()`, then queues writes.
        Retried from the start when a watched key changed before EXEC."""
        result: T = await self._redis.transaction(body, *watch, value_from_callable=True)
        return result

    async def _modify(
        self, model_type: type[ModelT], key: str, change: Callable[[ModelT], ModelT | None],
        also: Callable[[Pipeline, ModelT], None] | None = None,
    ) -> ModelT | None:
        """Read-modify-write of one document under WATCH, retried when it changed before EXEC, so
        `change` always applies to the document as stored (a field edit never undoes another
        writer's). `change` returns the new document, or None to write nothing (then None is
        returned); `also` queues more writes of the same transaction (indexes)."""

        async def body(pipe: Pipeline) -> ModelT | None:
            current = await _fetch(pipe, model_type, key)
            changed = None if current is None else change(current)
            if changed is None:
                return None
            pipe.multi()
            pipe.set(key, _dump(changed))
            if also is not None:
                also(pipe, changed)
            return changed

        return await self._atomic(body, key)

    async def _insert(self, unique: Sequence[str], what: str, writes: Callable[[Pipeline], None]) -> None:
        """Queues `writes` in one MULTI unless one of the `unique` keys exists already."""

        async def body(pipe: Pipeline) -> None:
            if await pipe.exists(*unique):
                raise ConflictError(f"{what} already exists")
            pipe.multi()
            writes(pipe)

        await self._atomic(body, *unique)

    async def _get(self, model_type: type[ModelT], key: str) -> ModelT | None:
        return await _fetch(self._redis, model_type, key)

    async def _by_pointer(self, model_type: type[ModelT], pointer: str, key_of: Callable[[str], str]) -> ModelT | None:
        """Follows a unique-index key holding an id to that id's document."""
        object_id = cast(str | None, await self._redis.get(pointer))
        return None if object_id is None else await self._get(model_type, key_of(object_id))

    async def _indexed(self, model_type: type[ModelT], index: str, key_of: Callable[[str], str]) -> list[ModelT]:
        """The documents whose ids a sorted set holds, in score order."""
        ids = cast(list[str], await self._redis.zrange(index, 0, -1))
        if not ids:
            return []
        raws = cast(list[str | None], await self._redis.mget([key_of(object_id) for object_id in ids]))
        return load_many(model_type, (raw for raw in raws if raw is not None))
