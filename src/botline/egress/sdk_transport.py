"""The openai SDK's HTTP transport, routed through the egress pools.

The SDK follows redirects itself (httpx): each hop comes back through `handle_async_request`, so IP
literals are checked per hop here and host names by the tenant pool's resolver; httpx drops the
Authorization header when a redirect leaves the origin. The response body is capped while it is
read: an upstream cannot make a replica buffer gigabytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
from openai._vendor.httpx_aiohttp.transport import AiohttpTransport  # the SDK's own aiohttp transport
from yarl import URL

from botline.egress.client import Egress
from botline.egress.errors import EgressError, ResponseTooLarge
from botline.egress.policy import Trust


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: httpx2.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                too_large = ResponseTooLarge(self._limit)  # kept as the cause: the error names the limit
                raise httpx2.ReadError(too_large.message) from too_large
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class EgressTransport(httpx2.AsyncBaseTransport):
    def __init__(self, egress: Egress, trust: Trust, *, max_response_bytes: int) -> None:
        self._egress = egress
        self._trust = trust
        self._limit = max_response_bytes
        self._inner = AiohttpTransport(client=lambda: egress.session(trust))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            self._egress.check_destination(URL(str(request.url)), self._trust)
        except EgressError as exc:  # the SDK maps httpx errors (and only those) to APIConnectionError
            raise httpx2.ConnectError(exc.message, request=request) from exc
        response = await self._inner.handle_async_request(request)
        response.stream = _CappedStream(response.stream, self._limit)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        """The pools belong to Egress (shared by every client); nothing to release here."""
