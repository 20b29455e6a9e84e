"""What-if runs: start `botline` with experimental monkeypatches, to measure a lever before building it.

Not product code and not used by `make bench`. It patches botline internals at start-up, so it may
need updating when src/ changes. Usage (the proxy benchmark starts botline through it):

    BENCH_LEVERS=no-sdk,coalesce-deltas \\
    BENCH_BOTLINE_CMD="$PWD/.venv/bin/python -m bench.levers" \\
    .venv/bin/python -m bench.proxy_latency --no-profile

Levers (comma-separated in $BENCH_LEVERS; those that proved themselves are now product code:
sdk-raw-post, gateway-cache, llm-pool-unlimited, redis-blocking-pool, inbound-turn-limit,
sqlite-no-lease):
- no-sdk: POST the body with one shared aiohttp.ClientSession, no openai SDK at all (an upper bound:
  no SDK retries or error mapping, so not a drop-in change).
- coalesce-deltas (with no-sdk): the stream's text deltas that arrive in one upstream read are sent
  to the client as one chunk (one SSE write) instead of one write per upstream chunk.
- no-ping: no per-stream keep-alive ping task (as if every client sent `Sse-Stream-Options: no-ping`).
- log-info: logging at INFO (the level config.example.yaml ships) instead of the benchmark's WARNING,
  i.e. one JSON access-log line per request on stderr (here: the server's log file).
- count-db: counts the jobs botline sends to aiosqlite's thread (each a round trip; a write and its commit
  are one job) and the SQL statements started from the event loop (and the Redis commands and pipelines),
  written as JSON to $BENCH_COUNT_FILE at exit: the store round trips per request.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson

import botline.api.openai_compat as compat
import botline.gateway.completion as completion
import botline.gateway.pipeline as pipeline

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


def log_info() -> None:
    import botline.logs as logs

    configure = logs.configure_logging
    logs.configure_logging = lambda level: configure("INFO")


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


LEVERS = {
    "no-sdk": no_sdk, "coalesce-deltas": coalesce_deltas, "no-ping": no_ping,
    "log-info": log_info, "count-db": count_db,
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
