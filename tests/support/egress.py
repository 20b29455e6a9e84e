"""The egress layer as the tests use it: the emulators run on loopback, so the test servers list it
in security.egress.allow (as an operator lists an on-prem server); tests/egress checks the strict
default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from botline.channels.provider_http import ProviderHttp
from botline.egress import Egress, EgressPolicy

LOOPBACK_ALLOWED = ["127.0.0.0/8", "::1"]


@asynccontextmanager
async def loopback_provider_http() -> AsyncIterator[ProviderHttp]:
    """What the channel adapters get in a server whose egress allow list names loopback."""
    async with Egress(EgressPolicy(LOOPBACK_ALLOWED)) as egress:
        yield ProviderHttp(egress, max_reply_bytes=1024 * 1024, max_media_bytes=25 * 1024 * 1024)
