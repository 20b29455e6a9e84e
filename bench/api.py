"""Setting botline up through its management API, as a user would: chat clients, sessions, integrations.

Every call uses the benchmark's fixed admin key (servers.BENCH_KEY) and fails loudly on a non-2xx.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from bench import servers


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {servers.BENCH_KEY}", "Content-Type": "application/json"}


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body, headers=_headers()) as response:
        data = await response.json(content_type=None)
        if response.status >= 300:
            raise RuntimeError(f"{method} {url} -> {response.status}: {data}")
        return data


async def gateway_id(http: aiohttp.ClientSession, base: str, slug: str = servers.GATEWAY_SLUG) -> str:
    """The id of the gateway declared in the temp config."""
    gateways = await call(http, "GET", f"{base}/api/v1/ai-gateways")
    for gateway in gateways:
        if gateway.get("slug") == slug or gateway.get("name") == slug:
            return str(gateway["id"])
    raise RuntimeError(f"no gateway {slug!r} in {gateways}")


async def create_client(http: aiohttp.ClientSession, base: str, **client_parameters: Any) -> str:
    """A web chat client on the `bench` gateway, no limits."""
    body = {
        "name": "bench", "aiGatewayId": await gateway_id(http, base),
        "limitingParameters": {"messagesPerHour": 0, "maxMessages": 0},  # explicit: new clients are limited
        "clientParameters": {"primaryColor": "#6366f1", "pageTitle": "Bench", **client_parameters},
    }
    return str((await call(http, "POST", f"{base}/api/v1/web-chat-client", body))["id"])


async def create_sessions(http: aiohttp.ClientSession, base: str, client_id: str, n: int, *,
                          concurrency: int = 50, tag_prefix: str | None = None,
                          expires: int = 24 * 3600) -> list[dict[str, Any]]:
    """`n` sessions ({sessionId, accessKey, talkUrl}), created `concurrency` at a time."""
    url = f"{base}/api/v1/web-chat-client/{client_id}/sessions"
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            body: dict[str, Any] = {"expires": expires}
            if tag_prefix:
                body["tag"] = f"{tag_prefix}{i}"
            out[i] = await call(http, "POST", url, body)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return out


async def save_integration(http: aiohttp.ClientSession, base: str, client_id: str, kind: str,
                           integration: dict[str, Any]) -> dict[str, Any]:
    alias = {"Zapi": "zapiIntegration", "EvolutionApi": "evolutionIntegration", "Kapso": "kapsoIntegration",
             "Telegram": "telegramIntegration"}[kind]
    body = {"integrationType": kind, "integrations": {alias: integration}}
    return dict(await call(http, "PUT", f"{base}/api/v1/web-chat-client/{client_id}/integrations", body))


def prompt_url(base: str, access_key: str, *, stream: bool = False) -> str:
    return f"{base}/api/v1/public/chat-clients/{access_key}/prompt" + ("?stream=true" if stream else "")
