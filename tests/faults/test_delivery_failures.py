"""A reply the provider refuses for good (after its retries) is visible to the operator in the API.

The retries themselves (429 + Retry-After honoured, 5xx backed off) are covered per provider in
tests/channels/; this checks where the final failure shows up.
"""

from __future__ import annotations

import asyncio

from tests.channels.conftest import connect
from tests.channels.test_zapi import CLIENT_TOKEN, settings_overrides, zapi
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.zapi import FakeZapi
from tests.support.server import RunningServer

PHONE = "5511955554444"
ATTEMPTS = 5


__all__ = ["settings_overrides", "zapi"]  # the Z-API emulator, and the server pointed at it


async def test_a_final_send_failure_shows_in_the_sessions_list(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", {
        "instanceId": zapi.instance_id, "instanceToken": zapi.instance_token, "clientToken": CLIENT_TOKEN})
    zapi.fail_next(503, retry_after=0.01, count=ATTEMPTS)

    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "hello?")) == 200
    await zapi.wait_for_requests(ATTEMPTS, timeout=10)

    async with asyncio.timeout(5):
        while True:
            _, sessions = await server.call("GET", f"/api/v1/web-chat-client/{channel.client_id}/sessions")
            if sessions and sessions[0]["lastDeliveryError"]:
                break
            await asyncio.sleep(0.05)
    [session] = sessions
    assert session["tagName"] == f"Zapi:{PHONE}"
    assert session["lastDeliveryError"] == "Z-API answered HTTP 503: Service Unavailable"
    assert session["messageCount"] == 2  # the answer exists; only its delivery failed
