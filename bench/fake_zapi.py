"""A minimal, fast Z-API send endpoint that counts what botline delivers.

    python -m bench.fake_zapi --port N

POST /instances/{id}/token/{token}/send-text {phone, message, ...} -> 200 {zaapId, messageId, id}, and
the send is recorded with its arrival time (time.monotonic(): CLOCK_MONOTONIC, the same clock in
every process on Linux, so the load generator can subtract its own timestamps). Any other POST/PUT
under /instances answers 200 {"value": true}. GET /stats?since=K -> {"count", "sends": [[t, phone,
message], ...]} from the K-th send on. Unlike tests/emulators/zapi.py it checks no credentials and
keeps only (time, phone, text), so it stays cheap at thousands of sends per second.
"""

from __future__ import annotations

import argparse
import itertools
import time

import orjson
from aiohttp import web

from bench.slow_llm import new_loop


class FakeZapi:
    def __init__(self) -> None:
        self.sends: list[tuple[float, str, str]] = []
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/instances/{instance}/token/{token}/send-text", self.send_text)
        app.router.add_route("*", "/instances/{tail:.*}", self.other)
        app.router.add_get("/stats", self.stats)
        return app

    async def send_text(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.sends.append((time.monotonic(), str(body.get("phone")), str(body.get("message"))))
        n = next(self._ids)
        answer = {"zaapId": f"Z{n:031d}", "messageId": f"3EB0{n:016X}", "id": f"3EB0{n:016X}"}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def other(self, _: web.Request) -> web.Response:
        return web.json_response({"value": True})

    async def stats(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.Response(body=orjson.dumps({"count": len(self.sends), "sends": self.sends[since:]}),
                            content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_zapi", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(FakeZapi().app(), host=args.host, port=args.port, print=None, access_log=None, backlog=4096,
                shutdown_timeout=1.0, loop=new_loop())


if __name__ == "__main__":
    main()
