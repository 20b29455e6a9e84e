"""CPU per Redis script call from botline's client, whole and without redis-py's command wrappers.

Answers where a Store command's CPU goes: in redis-py's machinery around it (retries, response
callbacks, script objects), or in the round trip itself (a send, an event-loop wake-up, a receive).
One call at a time through botline's own pool (`WaitingConnectionPool`, hiredis, `DirectPacker`), the
same EVALSHA twice: through `Script.__call__` as the Store sends it, then straight on a pooled
connection (`send_command` + `read_response`). Not part of `make bench`.

    .venv/bin/python -m bench.redis_roundtrip [--calls 5000]
"""

from __future__ import annotations

import argparse
import time

import uvloop
from redis.asyncio import Redis

from bench import servers
from botline.store.redis_pool import WaitingConnectionPool

SCRIPT = "return redis.call('GET', KEYS[1])"
ARGS = ["a" * 32, 15_000, "account", "session"]


async def measure(calls: int) -> tuple[float, float]:
    """(µs of CPU per call through redis-py's script call, µs straight on a connection)."""
    pool = WaitingConnectionPool.from_url(servers.REDIS_URL, decode_responses=True, max_connections=8)
    client = Redis(connection_pool=pool)
    key = servers.redis_prefix("roundtrip") + ":value"
    script = client.register_script(SCRIPT)
    try:
        await client.set(key, "x" * 200)
        await script(keys=[key], args=ARGS)  # loaded: EVALSHA from here on
        started = time.process_time()
        for _ in range(calls):
            await script(keys=[key], args=ARGS)
        whole = (time.process_time() - started) / calls
        started = time.process_time()
        for _ in range(calls):
            connection = await pool.get_connection()
            try:
                await connection.send_command("EVALSHA", script.sha, 1, key, *ARGS)
                await connection.read_response()
            finally:
                await pool.release(connection)
        direct = (time.process_time() - started) / calls
    finally:
        await client.delete(key)
        await client.aclose()
    return whole * 1e6, direct * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5_000)
    args = parser.parse_args()
    if not servers.redis_available():
        raise SystemExit(f"no Redis at {servers.REDIS_URL}")
    for _ in range(3):
        whole, direct = uvloop.run(measure(args.calls))
        print(f"script call {whole:6.1f} µs CPU   straight on a connection {direct:6.1f} µs CPU")


if __name__ == "__main__":
    main()
