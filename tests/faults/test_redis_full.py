"""A Redis that is full (maxmemory with noeviction) refuses writes: botline answers 503, then recovers."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as redis

from tests.support.redis_server import OwnRedis
from tests.support.server import make_settings, running_server

GATEWAY = {"name": "support", "parameters": {"baseAddress": "http://127.0.0.1:9/v1", "modelName": "m"}}


async def test_writes_to_a_full_redis_get_503_and_work_again_once_there_is_room(tmp_path: Path) -> None:
    with OwnRedis(tmp_path) as own:
        admin = redis.Redis.from_url(own.url)
        async with running_server(make_settings(own.url)) as server:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")  # every write now fails with Redis's OOM error
            status, refused = await server.call("POST", "/api/v1/ai-gateways", json=GATEWAY)
            assert status == 503 and "try again" in refused["message"]
            await admin.config_set("maxmemory", "0")
            status, created = await server.call("POST", "/api/v1/ai-gateways", json=GATEWAY)
            assert status == 200, created
        await admin.aclose()
