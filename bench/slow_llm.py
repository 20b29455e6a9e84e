"""A slow-streaming OpenAI-compatible upstream, to hold many SSE streams open through botline.

    python -m bench.slow_llm --port N [--interval 5] [--max-seconds 120]

POST /v1/chat/completions with `stream: true` answers at once with the role chunk and the first word,
then one more word every `--interval` seconds, until POST /release (every open stream then ends with
its finish chunk, usage and [DONE]) or `--max-seconds` after the stream started, whichever is first.
Without `stream` it answers at once. GET /v1/models lists one model; GET /stats gives
{"open": streams open now, "started": streams started, "finished": ...}.
Everything is bounded: no stream outlives --max-seconds, and the server stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import orjson
from aiohttp import web

MODEL = "fake-model"
WORDS = ("Once ", "upon ", "a ", "time ", "there ", "was ", "a ", "slow ", "model ")


class SlowLLM:
    def __init__(self, interval: float, max_seconds: float) -> None:
        self.interval = interval
        self.max_seconds = max_seconds
        self.release = asyncio.Event()
        self.open = 0
        self.started = 0
        self.finished = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/release", self.do_release)
        app.router.add_post("/hold", self.do_hold)
        return app

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"open": self.open, "started": self.started, "finished": self.finished})

    async def do_release(self, _: web.Request) -> web.Response:
        self.release.set()
        return web.json_response({"released": self.open})

    async def do_hold(self, _: web.Request) -> web.Response:
        self.release = asyncio.Event()
        return web.json_response({"holding": True})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json(loads=orjson.loads)
        envelope = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": body.get("model", MODEL)}
        if not body.get("stream"):
            return web.Response(body=orjson.dumps({
                **envelope, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "fast answer"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }), content_type="application/json")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {**envelope, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        self.open += 1
        self.started += 1
        words = 1
        try:
            await response.prepare(request)
            await response.write(chunk({"role": "assistant", "content": WORDS[0]}))
            deadline = time.monotonic() + self.max_seconds
            release = self.release
            while not release.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(release.wait(), min(self.interval, max(deadline - time.monotonic(), 0)))
                if release.is_set() or time.monotonic() >= deadline:
                    break
                await response.write(chunk({"content": WORDS[words % len(WORDS)]}))
                words += 1
            usage = {"prompt_tokens": 10, "completion_tokens": words, "total_tokens": 10 + words}
            await response.write(chunk({}, "stop") + b"data: " + orjson.dumps(
                {**envelope, "choices": [], "usage": usage}) + b"\n\ndata: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            self.finished += 1
        return response


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_llm", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between words")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="longest a stream stays open")
    args = parser.parse_args()
    server = SlowLLM(args.interval, args.max_seconds)
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=None, backlog=4096,
                shutdown_timeout=1.0, loop=new_loop())


if __name__ == "__main__":
    main()
