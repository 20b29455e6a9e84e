"""An OpenAI-compatible upstream for the batch benchmark: every chat completion answers a valid batch
envelope (`{"result": {"ok": true}, "confidence": 1}`) after `--latency` seconds.

    python -m bench.batch_llm --port N [--latency 1.0]
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from aiohttp import web

MODEL = "fake-model"
ANSWER = orjson.dumps({"result": {"ok": True}, "confidence": 1}).decode()


def build(latency: float) -> web.Application:
    body = orjson.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER, "refusal": None},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    })

    async def complete(request: web.Request) -> web.Response:
        await request.read()
        if latency:
            await asyncio.sleep(latency)
        return web.Response(body=body, content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_get("/v1/models", models)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_llm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    web.run_app(build(args.latency), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
