"""What-if runs: start `botline` with experimental monkeypatches, to measure a lever before building it.

Not product code and not used by `make bench`. It patches botline internals at start-up, so it may
need updating when src/ changes. Usage (the proxy benchmark starts botline through it):

    BENCH_LEVERS=sdk-raw-post,gateway-cache \\
    BENCH_BOTLINE_CMD="$PWD/.venv/bin/python -m bench.levers" \\
    .venv/bin/python -m bench.proxy_latency --no-profile

Levers (comma-separated in $BENCH_LEVERS):
- sdk-raw-post: keep the openai SDK (auth, retries, error types) but call `client.post("/chat/completions",
  body=..., cast_to=httpx2.Response)` instead of `chat.completions.with_raw_response.create(**body)` /
  `with_streaming_response.create`, which skips the SDK's TypedDict `async_maybe_transform` of the body.
- no-sdk: POST the body with one shared aiohttp.ClientSession, no openai SDK at all (an upper bound:
  no SDK retries or error mapping, so not a drop-in change).
- gateway-cache: /v1's gateway lookup (id, then slug: two SQLite queries per request) cached in memory
  for 10 s per (account, model).
- coalesce-deltas (with no-sdk): the stream's text deltas that arrive in one upstream read are sent
  to the client as one chunk (one SSE write) instead of one write per upstream chunk.
- no-ping: no per-stream keep-alive ping task (as if every client sent `Sse-Stream-Options: no-ping`).
- log-info: logging at INFO (the level config.example.yaml ships) instead of the benchmark's WARNING,
  i.e. one JSON access-log line per request on stderr (here: the server's log file).
- llm-pool-unlimited: the pooled AsyncOpenAI clients get `limits=httpx2.Limits(max_connections=0)` (aiohttp:
  no cap) instead of the SDK's default of 1,000 connections per client, i.e. per (baseAddress, apiKey):
  the cap on concurrent model calls, hence on open web chat streams, per process.
- redis-blocking-pool: the Redis store's client on a `BlockingConnectionPool` (max $BENCH_REDIS_POOL, default
  200 connections, waiting up to 10 s for a free one) instead of redis-py's default pool, which holds 100
  connections and raises MaxConnectionsError ("Too many connections") at once when they are all busy.
- inbound-turn-limit: at most $BENCH_TURN_LIMIT (default 8) channel turns run at once per process (a semaphore
  around InboundEngine._answer); the other chats' messages wait, recorded, for a slot. Keeps event-loop
  and store headroom for acknowledging webhooks.
- count-db: counts the jobs botline sends to aiosqlite's thread (each a round trip; a write and its commit
  are one job) and the SQL statements started from the event loop (and the Redis commands and pipelines),
  written as JSON to $BENCH_COUNT_FILE at exit: the store round trips per request.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2
import openai
import orjson

import botline.api.openai_compat as compat
import botline.gateway.completion as completion
import botline.gateway.pipeline as pipeline
from botline.gateway.llm import raise_upstream

RAW_OPTIONS: Any = {"security": {"bearer_auth": True}}
STREAM_EXTRAS = {"stream": True, "stream_options": {"include_usage": True}}


def _round(payload: dict[str, Any], request: dict[str, Any]) -> completion.Round:
    choices = payload.get("choices") or [{}]
    message = choices[0].get("message") or {}
    return completion.Round(
        content=message.get("content") or "", reasoning=completion._reasoning_of(message),
        tool_calls=list(message.get("tool_calls") or []), finish_reason=choices[0].get("finish_reason") or "stop",
        usage=completion._usage(payload.get("usage")), model=str(payload.get("model") or request["model"]),
    )


async def _consume(lines: AsyncIterator[str], request: dict[str, Any], sink: Any) -> completion.Round:
    """Text-only SSE consumption (enough for the benchmark's echo answers)."""
    result = completion.Round(model=str(request["model"]))
    content: list[str] = []
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = orjson.loads(data)
        result.model = str(chunk.get("model") or result.model)
        if chunk.get("usage"):
            result.usage = completion._usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if text := delta.get("content"):
                content.append(text)
                await sink.text(text)
            if choice.get("finish_reason"):
                result.finish_reason = choice["finish_reason"]
    result.content = "".join(content)
    return result


async def _consume_coalesced(response: aiohttp.ClientResponse, request: dict[str, Any], sink: Any) -> completion.Round:
    """Like `_consume`, but one `sink.text` per upstream read (all the deltas that arrived together)."""
    result = completion.Round(model=str(request["model"]))
    content: list[str] = []
    pending = b""
    done = False
    async for block in response.content.iter_any():
        pending += block
        *complete_lines, pending = pending.split(b"\n")
        arrived: list[str] = []
        for raw in complete_lines:
            if not raw.startswith(b"data:"):
                continue
            data = raw[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            chunk = orjson.loads(data)
            result.model = str(chunk.get("model") or result.model)
            if chunk.get("usage"):
                result.usage = completion._usage(chunk["usage"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if text := delta.get("content"):
                    arrived.append(text)
                if choice.get("finish_reason"):
                    result.finish_reason = choice["finish_reason"]
        if arrived:
            text = "".join(arrived)
            content.append(text)
            await sink.text(text)
        if done:
            break
    result.content = "".join(content)
    return result


COALESCE = False


def coalesce_deltas() -> None:
    global COALESCE
    COALESCE = True


def no_ping() -> None:
    compat.loop_pinger = lambda: None  # type: ignore[attr-defined,assignment,return-value]


def sdk_raw_post() -> None:
    async def complete(client: openai.AsyncOpenAI, request: dict[str, Any]) -> completion.Round:
        try:
            raw = await client.post("/chat/completions", body=request, cast_to=httpx2.Response, options=RAW_OPTIONS)
        except openai.OpenAIError as exc:
            raise_upstream(exc)
        return _round(orjson.loads(raw.content), request)

    async def stream(client: openai.AsyncOpenAI, request: dict[str, Any], sink: Any) -> completion.Round:
        try:
            response = await client.post("/chat/completions", body={**request, **STREAM_EXTRAS},
                                         cast_to=httpx2.Response, options=RAW_OPTIONS, stream=True)
            try:
                return await _consume(response.aiter_lines(), request, sink)
            finally:
                await response.aclose()
        except openai.OpenAIError as exc:
            raise_upstream(exc)

    pipeline.complete, pipeline.stream = complete, stream  # type: ignore[attr-defined]


def no_sdk() -> None:
    sessions: dict[int, aiohttp.ClientSession] = {}

    def http() -> aiohttp.ClientSession:
        if 0 not in sessions:
            sessions[0] = aiohttp.ClientSession()
        return sessions[0]

    def target(client: openai.AsyncOpenAI) -> tuple[str, dict[str, str]]:
        headers = {"Authorization": f"Bearer {client.api_key}", "Content-Type": "application/json"}
        return str(client.base_url).rstrip("/") + "/chat/completions", headers

    async def lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
        async for raw in response.content:
            yield raw.decode().rstrip("\r\n")

    async def complete(client: openai.AsyncOpenAI, request: dict[str, Any]) -> completion.Round:
        url, headers = target(client)
        async with http().post(url, data=orjson.dumps(request), headers=headers) as response:
            return _round(orjson.loads(await response.read()), request)

    async def stream(client: openai.AsyncOpenAI, request: dict[str, Any], sink: Any) -> completion.Round:
        url, headers = target(client)
        async with http().post(url, data=orjson.dumps({**request, **STREAM_EXTRAS}), headers=headers) as response:
            if COALESCE:
                return await _consume_coalesced(response, request, sink)
            return await _consume(lines(response), request, sink)

    pipeline.complete, pipeline.stream = complete, stream  # type: ignore[attr-defined]


def gateway_cache() -> None:
    original = compat._gateway
    cache: dict[tuple[str, str], tuple[Any, float]] = {}

    async def cached(request: Any, model: str) -> Any:
        key = (compat.principal(request).account.id, model)  # type: ignore[attr-defined]
        hit = cache.get(key)
        if hit is not None and time.monotonic() - hit[1] < 10:
            return hit[0]
        gateway = await original(request, model)
        cache[key] = (gateway, time.monotonic())
        return gateway

    compat._gateway = cached


def log_info() -> None:
    import botline.logs as logs

    configure = logs.configure_logging
    logs.configure_logging = lambda level: configure("INFO")


def llm_pool_unlimited() -> None:
    base = openai.DefaultAioHttpClient

    class Unlimited(base):  # type: ignore[misc,valid-type]
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("limits", httpx2.Limits(max_connections=0, max_keepalive_connections=100))
            super().__init__(**kwargs)

    openai.DefaultAioHttpClient = Unlimited


def redis_blocking_pool() -> None:
    import redis.asyncio as aredis

    import botline.store.redis as store_redis

    size = int(os.environ.get("BENCH_REDIS_POOL", "200"))

    class Blocking(aredis.Redis):
        @classmethod
        def from_url(cls, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
            pool = aredis.BlockingConnectionPool.from_url(url, max_connections=size, timeout=10, **kwargs)
            return cls(connection_pool=pool)

    setattr(store_redis, "Redis", Blocking)  # noqa: B010 - the module imports the name; patch it there


def count_db() -> None:
    import atexit
    import collections
    import json

    import aiosqlite

    counts: collections.Counter[str] = collections.Counter()

    def wrap(cls: Any, name: str, key: str) -> None:
        original = getattr(cls, name)

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            if key == "sqlite execute" and args:
                counts["sql: " + " ".join(str(args[0]).split()[:3])] += 1
            return original(self, *args, **kwargs)

        setattr(cls, name, counted)

    wrap(aiosqlite.Connection, "_execute", "sqlite job")
    wrap(aiosqlite.Connection, "execute", "sqlite execute")
    wrap(aiosqlite.Connection, "execute_fetchall", "sqlite execute")
    wrap(aiosqlite.Connection, "commit", "sqlite commit")
    try:
        import redis.asyncio.client as rclient
        wrap(rclient.Redis, "execute_command", "redis command")
        wrap(rclient.Pipeline, "execute", "redis pipeline")
    except ImportError:  # pragma: no cover
        pass

    def dump() -> None:
        path = os.environ.get("BENCH_COUNT_FILE")
        if path:
            with open(path, "w") as out:
                json.dump(dict(counts.most_common()), out, indent=1)

    atexit.register(dump)


def inbound_turn_limit() -> None:
    import asyncio

    from botline.engine.inbound import InboundEngine

    answer = InboundEngine._answer
    slots: list[asyncio.Semaphore] = []

    async def limited(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not slots:
            slots.append(asyncio.Semaphore(int(os.environ.get("BENCH_TURN_LIMIT", "8"))))
        async with slots[0]:
            return await answer(self, *args, **kwargs)

    InboundEngine._answer = limited  # type: ignore[method-assign]


LEVERS = {
    "sdk-raw-post": sdk_raw_post, "no-sdk": no_sdk, "gateway-cache": gateway_cache,
    "coalesce-deltas": coalesce_deltas, "no-ping": no_ping, "log-info": log_info,
    "llm-pool-unlimited": llm_pool_unlimited, "redis-blocking-pool": redis_blocking_pool,
    "count-db": count_db, "inbound-turn-limit": inbound_turn_limit,
}


def main() -> None:
    for name in filter(None, os.environ.get("BENCH_LEVERS", "").split(",")):
        if name not in LEVERS:
            raise SystemExit(f"unknown lever {name!r}; known: {', '.join(LEVERS)}")
        LEVERS[name]()
    from botline.cli import main as botline_main

    sys.exit(botline_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
