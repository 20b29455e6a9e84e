"""Name resolution that drops the addresses a tenant may not reach.

aiohttp connects to exactly the addresses its resolver returns, so filtering here checks the address
actually connected to: a name that resolves to a public address for a check and to 127.0.0.1 for the
connection (DNS rebinding) cannot slip through. IP literals skip resolvers; the client checks those.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from botline.egress.errors import DestinationRefused
from botline.egress.policy import EgressPolicy


class GuardedResolver(AbstractResolver):
    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [result for result in results if self._policy.permits(host, port, result["host"])]
        if not allowed:
            raise DestinationRefused()
        return allowed

    async def close(self) -> None:
        await self._inner.close()
