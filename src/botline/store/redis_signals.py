"""Signals between replicas over Redis pub/sub: one PUBLISH per signal on `P:signal:{topic}`, and
one subscriber connection per process listening to `P:signal:*` (so PUBLISH's answer counts processes).

The subscriber must outlive Redis restarts and network cuts: it pings when idle, treats a silent
connection as lost, and resubscribes with backoff; every failure is logged, none ends the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from botline.store.base import StoreUnavailable
from botline.store.keys import RedisKeys
from botline.store.redis_base import UNAVAILABLE_ERRORS, _Deadline, _reachable_methods
from botline.store.signals import SignalBus

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
"""An idle subscriber pings this often; no answer within two beats means the connection is lost."""
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 2.0
SUBSCRIBE_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
"""How long close() waits for the listener to end; a listener stuck in redis-py is left behind."""
CANCEL_AGAIN_SECONDS = 0.05


@_reachable_methods
class RedisSignals(SignalBus, _Deadline):
    def __init__(self, client: Redis, keys: RedisKeys) -> None:
        super().__init__()
        self._redis = client
        self._keys = keys
        pool = client.connection_pool
        # Its own connection, named so `CLIENT LIST` shows it: a subscribed connection cannot run commands.
        # Not capped: a connection that failed to close must not keep the next subscription from starting.
        self._subscriber_pool = ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "client_name": f"{keys.prefix}:signals"},
        )
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._closing = False

    async def publish(self, topic: str, payload: str) -> int:
        return int(await self._redis.publish(self._keys.signal(topic), payload))

    async def _listen(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._run(), name="redis-signals")
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                await self._subscribed.wait()
        except TimeoutError:
            raise StoreUnavailable("Redis is unavailable: could not subscribe to signals") from None

    async def _run(self) -> None:
        """Receives until closed; a lost connection is logged and subscribed again."""
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                await self._receive()
            except UNAVAILABLE_ERRORS as exc:
                self._end_if_closing()
                log.warning("signal subscription lost (%s); subscribing again", exc)
            except Exception:
                self._end_if_closing()
                log.exception("signal listener failed; subscribing again")
            if self._subscribed.is_set():  # it worked until now: the first retry comes soon
                delay = FIRST_RETRY_SECONDS
            self._subscribed.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def _receive(self) -> None:
        pubsub = PubSub(self._subscriber_pool)
        try:
            await pubsub.psubscribe(self._keys.signal_pattern())
            loop = asyncio.get_running_loop()
            heard = pinged = loop.time()
            while True:
                message = await pubsub.get_message(timeout=HEARTBEAT_SECONDS)
                now = loop.time()
                if message is not None:
                    heard = now
                    self._handle(message)
                elif now - heard > 2 * HEARTBEAT_SECONDS:
                    raise RedisConnectionError("no answer to pings on the signal connection")
                if now - pinged >= HEARTBEAT_SECONDS:
                    await pubsub.ping()
                    pinged = now
        finally:
            with contextlib.suppress(*UNAVAILABLE_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def _end_if_closing(self) -> None:
        """A cancel that lands while redis-py reconnects comes out as a ConnectionError (redis-py
        swallows the CancelledError): without this the listener would subscribe again, and close()
        would wait for it forever."""
        task = asyncio.current_task()
        if self._closing or (task is not None and task.cancelling()):
            raise asyncio.CancelledError

    def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] == "psubscribe":
            self._subscribed.set()
        elif message["type"] == "pmessage":
            self._deliver(self._keys.signal_topic(message["channel"]), message["data"])

    @staticmethod
    async def _stop_listener(listener: asyncio.Task[None]) -> None:
        """Cancels again until the listener ends (redis-py can swallow a cancel that lands while it
        connects, and the listener then waits for its next message); gives up after a while."""
        deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT_SECONDS
        while not listener.done():
            if asyncio.get_running_loop().time() >= deadline:
                log.warning("the signal listener did not end within %ss; closing without it", CLOSE_TIMEOUT_SECONDS)
                return
            listener.cancel()
            await asyncio.wait({listener}, timeout=CANCEL_AGAIN_SECONDS)

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            await self._stop_listener(self._listener)
            self._listener = None
        await super().close()
        await self._subscriber_pool.aclose()
