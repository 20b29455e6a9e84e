"""What GET /metrics shows after WhatsApp (Z-API) traffic: acks, duplicates, merged bursts, send trouble."""

from __future__ import annotations

import asyncio

from tests.channels.conftest import connect, redeliver, wait_for_delivery_error
from tests.channels.test_zapi import PHONE, integration, settings_overrides, zapi
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.zapi import FakeZapi
from tests.support.metrics import scrape
from tests.support.server import RunningServer

__all__ = ["settings_overrides", "zapi"]  # the Z-API tests' fixtures


async def test_a_redelivered_webhook_counts_as_a_duplicate_and_both_acks_are_timed(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))

    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "only once")) == 200
    await redeliver(server, zapi.deliveries[0])
    await zapi.wait_for_sends(1)

    metrics = await scrape(server)
    assert metrics.value("botline_inbound_duplicates_total", provider="zapi") == 1
    assert metrics.value("botline_webhook_ack_seconds_count", provider="zapi") == 2
    assert metrics.value("botline_turns_total", channel="zapi", outcome="answered") == 1


async def test_a_burst_in_the_debounce_window_counts_the_merged_messages(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi), messageDebounceInterval=1)

    for text in ("first", "second", "third"):
        assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, text)) == 200
    await zapi.wait_for_sends(1)

    async with asyncio.timeout(5):  # the reply is out; the worker counts the merge as it finishes
        while (metrics := await scrape(server)).value("botline_inbound_merged_messages_total", provider="zapi") < 2:
            await asyncio.sleep(0.01)
    assert metrics.value("botline_inbound_merged_messages_total", provider="zapi") == 2
    assert metrics.value("botline_turns_total", channel="zapi") == 1


async def test_send_retries_and_a_final_send_failure_are_counted(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    zapi.fail_next(429, retry_after=0.01)  # retried, then accepted
    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "one")) == 200
    await zapi.wait_for_sends(1)
    zapi.fail_next(400)  # not retryable: the reply is lost, and recorded as such

    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "two")) == 200
    await wait_for_delivery_error(server, channel.client_id, f"Zapi:{PHONE}")

    metrics = await scrape(server)
    assert metrics.value("botline_outbound_send_retries_total", provider="zapi") == 1
    assert metrics.value("botline_outbound_send_failures_total", provider="zapi") == 1
