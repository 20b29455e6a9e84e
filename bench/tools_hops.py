"""Tool hops (issue 12): what botline adds to an MCP tool call and to a worker call.

In one process on 127.0.0.1:
- MCP: the SDK's own server (tests/tools/mcp_server.py, Streamable HTTP) with its `add` tool (text) and
  `picture` tool (a caption and a PNG). The same call is timed through botline's `McpTool.run` (what a
  turn runs: cached nonce, `_meta`, `McpPool` over the egress transport with a reused session, the
  result read into text and images) and directly with the SDK's `ClientSession.call_tool` on a session
  opened once. Added latency = p50 through botline minus p50 of the direct call.
- Worker: an aiohttp worker answering a plain 200 that times its own handler. `WorkerHook.received`
  (nonce from cache, egress POST, Content-Type check) is timed; the hop = hook time minus the worker's
  own time, per call.

    .venv/bin/python -m bench.tools_hops [--calls 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx2
from aiohttp import web
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from botline.config import ToolsSettings
from botline.domain.accounts import Account
from botline.domain.clock import SystemClock
from botline.domain.gateways import Gateway, GatewayParameters, RemoteResource
from botline.egress import Egress, EgressPolicy, Trust
from botline.gateway.caller import Caller, CallSource
from botline.gateway.draft import TurnDraft
from botline.gateway.tools import ResponseCaps
from botline.tools.mcp_pool import McpPool
from botline.tools.mcp_tools import McpExtension, McpLimits
from botline.tools.nonce import RequestNonces
from botline.tools.workers import WorkerHook
from tests.tools.mcp_server import McpTestServer

LOOPBACK = ["127.0.0.1/32"]


@dataclass(frozen=True)
class Result:
    calls: int
    mcp_direct_p50_ms: float
    mcp_tool_p50_ms: float
    mcp_added_p50_ms: float
    image_direct_p50_ms: float
    image_tool_p50_ms: float
    image_added_p50_ms: float
    worker_hop_p50_ms: float
    worker_hop_p95_ms: float


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


BENCH_ACCOUNT = Account(name="bench", salt="s" * 32, is_admin=True)


async def _find(account_id: str) -> Account:
    return BENCH_ACCOUNT


async def _operator(account_id: str) -> Trust:
    return Trust.OPERATOR


async def _mcp(calls: int, egress: Egress, nonces: RequestNonces) -> dict[str, tuple[list[float], list[float]]]:
    """Per tool (`add`: text, `picture`: a caption and a PNG): (direct SDK times, McpTool.run times)."""
    times: dict[str, tuple[list[float], list[float]]] = {"add": ([], []), "picture": ([], [])}
    async with McpTestServer() as server:
        pool = McpPool(egress, ToolsSettings())
        extension = McpExtension(pool, nonces, trust_of=_operator,
                                 limits=McpLimits(text_chars=64 * 1024, image_bytes=3 << 20))
        gateway = Gateway(account_id=BENCH_ACCOUNT.id, name="g", slug="g", parameters=GatewayParameters(
            base_address="http://127.0.0.1:1/v1", model_name="m",
            mcp_sources=[RemoteResource(name="calc", url=server.url)]))
        tools = {tool.name: tool for tool in await extension.tools(gateway, gateway.parameters.mcp_sources)}
        caller = Caller(call_source=CallSource.WEB_CHAT, account_id=BENCH_ACCOUNT.id, external_user_id="u")
        try:
            async with (
                httpx2.AsyncClient() as http,
                streamable_http_client(server.url, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                await tools["calc__add"].run({"a": 1, "b": 2}, caller)  # the nonce, cached from here on
                for n in range(calls):  # interleaved, so drift hits both alike
                    for name, arguments in (("add", {"a": n, "b": 1}), ("picture", {})):
                        direct, through = times[name]
                        started = time.perf_counter()
                        await session.call_tool(name, arguments)
                        direct.append(time.perf_counter() - started)
                        started = time.perf_counter()
                        await tools[f"calc__{name}"].run(arguments, caller)
                        through.append(time.perf_counter() - started)
        finally:
            await pool.close()
    return times


async def _worker(calls: int, egress: Egress, nonces: RequestNonces) -> list[float]:
    own: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        await request.read()
        response = web.Response(text="ok")
        own.append(time.perf_counter() - started)
        return response

    app = web.Application()
    app.router.add_post("/worker", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    account = BENCH_ACCOUNT
    mcp = McpExtension(McpPool(egress, ToolsSettings()), nonces, trust_of=_operator,
                       limits=McpLimits(text_chars=1000, image_bytes=1 << 20))
    hook = WorkerHook(egress, nonces, mcp, ToolsSettings(), trust_of=_operator, clock=SystemClock(), tool_timeout=5,
                      tool_caps=ResponseCaps(text=1 << 20, media=1 << 20))
    gateway = Gateway(account_id=account.id, name="g", slug="g", parameters=GatewayParameters(
        base_address="http://127.0.0.1:1/v1", model_name="m", worker_script_source=f"http://127.0.0.1:{port}/worker"))
    caller = Caller(call_source=CallSource.WEB_CHAT, account_id=account.id, external_user_id="u")
    hops: list[float] = []
    try:
        for n in range(calls + 20):
            draft = TurnDraft(system=[("", "Be brief.")], system_role="system",
                              conversation=[{"role": "user", "content": f"hello {n}"}], tools=[], client_tools=None,
                              shapers=[], caller=caller)
            started = time.perf_counter()
            await hook.received(gateway, draft)
            elapsed = time.perf_counter() - started
            if n >= 20:  # warm-up: the first connection and the nonce
                hops.append(elapsed - own[-1])
    finally:
        await runner.cleanup()
    return hops


async def run(calls: int) -> Result:
    nonces = RequestNonces(_find)
    async with Egress(EgressPolicy(LOOPBACK)) as egress:
        times = await _mcp(calls, egress, nonces)
        hops = await _worker(calls, egress, nonces)
    (direct, tool), (image_direct, image_tool) = times["add"], times["picture"]
    return Result(calls=calls, mcp_direct_p50_ms=_ms(direct), mcp_tool_p50_ms=_ms(tool),
                  mcp_added_p50_ms=round(_ms(tool) - _ms(direct), 3), image_direct_p50_ms=_ms(image_direct),
                  image_tool_p50_ms=_ms(image_tool), image_added_p50_ms=round(_ms(image_tool) - _ms(image_direct), 3),
                  worker_hop_p50_ms=_ms(hops), worker_hop_p95_ms=round(sorted(hops)[int(len(hops) * 0.95)] * 1000, 3))


def table(result: Result) -> str:
    return "\n".join([
        "| measure | p50 ms |",
        "|---|---|",
        f"| MCP tools/call `add` (text), SDK ClientSession directly | {result.mcp_direct_p50_ms} |",
        f"| the same through McpTool.run (nonce, _meta, egress, reused session, result read) | "
        f"{result.mcp_tool_p50_ms} |",
        f"| **added by botline** (budget 2 ms) | **{result.mcp_added_p50_ms}** |",
        f"| MCP tools/call `picture` (caption + 4x4 PNG), SDK directly | {result.image_direct_p50_ms} |",
        f"| the same through McpTool.run (+ base64 decode, type check) | {result.image_tool_p50_ms} |",
        f"| added by botline, image result | {result.image_added_p50_ms} |",
        f"| worker hop over the worker's own time (budget 1 ms; p95 {result.worker_hop_p95_ms}) | "
        f"**{result.worker_hop_p50_ms}** |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    result = asyncio.run(run(args.calls))
    print(table(result))
    print(f"({result.calls} calls each)")


if __name__ == "__main__":
    main()
