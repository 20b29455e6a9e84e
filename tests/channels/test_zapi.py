"""Z-API end to end: the fake Z-API pushes ReceivedCallbacks to a real botline, which answers through
the fake LLM and sends the reply back to the fake Z-API's send-text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from botline.api.state import SERVICES
from botline.channels.base import DeliveryError
from botline.channels.zapi import ZapiAdapter
from botline.domain.inbound import MediaKind, MediaRef
from botline.domain.integrations import GroupPolicy, ZapiIntegration
from tests.channels.conftest import (
    assert_no_more_sends,
    connect,
    last_user_text,
    post,
    redeliver,
    roll_salt,
    session_of,
    store_of,
    wait_for_delivery_error,
)
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.emulators.webhook_pusher import JSON, encode_payload
from tests.emulators.zapi import FakeZapi
from tests.support.egress import loopback_provider_http
from tests.support.server import RunningServer

CLIENT_TOKEN = "F0f70a10da4b747c2836a33992d5531a2S"
PHONE = "5511999999999"
OTHER = "5521988887777"
DRAIN_GRACE_SECONDS = 0.3
ABANDONED_TURN_SECONDS = 1.0


@pytest.fixture
async def zapi() -> AsyncIterator[FakeZapi]:
    async with FakeZapi(client_token=CLIENT_TOKEN) as fake:
        yield fake


@pytest.fixture
def settings_overrides(zapi: FakeZapi) -> dict[str, Any]:
    return {"providers": {"zapi": {"api_url": zapi.url}}}


def integration(zapi: FakeZapi, **extra: Any) -> dict[str, Any]:
    return {"instanceId": zapi.instance_id, "instanceToken": zapi.instance_token, "clientToken": CLIENT_TOKEN,
            **extra}


async def deliver(server: RunningServer, url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    """POSTs a callback exactly as Z-API does (JSON, no signature) and returns the server's answer."""
    return await post(server, url, encode_payload(payload), {"Content-Type": JSON})


async def test_a_message_gets_exactly_one_reply_in_z_api_format(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    assert channel.saved["registration"] == {"mode": "manual", "error": None}

    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "hello there", name="Ana")) == 200

    sent = (await zapi.wait_for_sends(1))[0]
    assert sent.path == f"/instances/{zapi.instance_id}/token/{zapi.instance_token}/send-text"
    assert sent.headers["Client-Token"] == CLIENT_TOKEN
    assert sent.body == {"phone": PHONE, "message": "echo: hello there", "delayTyping": 1}
    await assert_no_more_sends(zapi, 1)
    assert len(fake_llm.requests) == 1
    session = await session_of(server, channel.client_id, f"Zapi:{PHONE}")
    assert session is not None and session.message_count == 2


async def test_the_same_callback_twice_gets_one_reply(server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))

    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "only once")) == 200
    status, answer = await redeliver(server, zapi.deliveries[0])

    assert (status, answer) == (200, {"received": 0, "ignored": 0, "duplicates": 1})
    await zapi.wait_for_sends(1)
    await assert_no_more_sends(zapi, 1)
    assert len(fake_llm.requests) == 1


async def test_a_wrong_url_token_is_404_and_records_nothing(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    message = zapi.text_message(PHONE, "let me in", message_id="3EB0AAAAAAAAAAAAAAAA")

    assert await zapi.push(channel.with_token("A" * 32), message) == 404
    await assert_no_more_sends(zapi, 0)
    assert fake_llm.requests == []

    status, answer = await deliver(server, channel.webhook_url, message)  # not a duplicate: nothing was recorded
    assert (status, answer["received"]) == (200, 1)
    await zapi.wait_for_sends(1)


async def test_a_burst_inside_the_debounce_window_is_one_turn(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi), messageDebounceInterval="00:00:01")

    for text in ("first", "second", "third"):
        assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, text)) == 200

    sent = (await zapi.wait_for_sends(1, timeout=5))[0]
    assert len(fake_llm.requests) == 1
    assert last_user_text(fake_llm) == "first\nsecond\nthird"
    assert sent.body["message"] == "echo: first\nsecond\nthird"
    await assert_no_more_sends(zapi, 1)


async def test_api_echoes_statuses_and_non_chats_are_ignored(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    ignored = [
        zapi.text_message(PHONE, "sent by the API", from_me=True, from_api=True),
        zapi.delivery_callback(PHONE, "3EB0BBBBBBBBBBBBBBBB"),
        zapi.status_callback(PHONE, "3EB0BBBBBBBBBBBBBBBB", "READ"),
        zapi.text_message(PHONE, "channel post", newsletter=True),
        zapi.text_message(PHONE, "broadcast list", broadcast=True),
        zapi.text_message(PHONE, "reply to a status", status_reply=True),
        zapi.text_message(PHONE, "edited", is_edit=True),
        zapi.waiting_message(PHONE),
        {**zapi.text_message(PHONE, ""), "notification": "GROUP_PARTICIPANT_ADD"},
    ]
    for payload in ignored:
        assert await deliver(server, channel.webhook_url, payload) == (
            200, {"received": 0, "ignored": 1, "duplicates": 0}
        ), payload
    await assert_no_more_sends(zapi, 0)
    assert fake_llm.requests == []


async def test_our_own_reply_echoed_back_is_not_answered(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    """With "notify sent by me" on, Z-API posts our reply back as fromMe, and a DeliveryCallback."""
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    zapi.webhooks.update(received=channel.webhook_url, delivery=channel.webhook_url)
    zapi.notify_sent_by_me = True

    assert await zapi.emit(zapi.text_message(PHONE, "ping")) == 200
    await zapi.wait_for_sends(1)
    deliveries = await zapi.wait_for_deliveries(3)  # ping, the echo of our reply, its delivery callback

    assert all(d.status == 200 for d in deliveries)
    assert {d.json()["type"] for d in deliveries[1:]} == {"ReceivedCallback", "DeliveryCallback"}
    await assert_no_more_sends(zapi, 1)
    assert len(fake_llm.requests) == 1


async def test_groups_are_ignored_by_default_and_answered_when_allowed(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    group_message = zapi.text_message(PHONE, "hi all", group=True)
    assert await deliver(server, channel.webhook_url, group_message) == (
        200, {"received": 0, "ignored": 1, "duplicates": 0}
    )
    await assert_no_more_sends(zapi, 0)

    allowed = await connect(server, fake_llm, "Zapi", integration(zapi, groupPolicy="All"))
    assert await zapi.push(allowed.webhook_url, zapi.text_message(PHONE, "hi all", group=True)) == 200
    sent = (await zapi.wait_for_sends(1))[0]
    assert sent.body["phone"] == group_message["phone"] == "120363019502650977-group"


async def test_a_429_with_retry_after_is_retried_and_the_reply_arrives_once(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    zapi.fail_next(429, retry_after=1)

    await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "busy?"))
    await zapi.wait_for_requests(1)
    refused_at = time.monotonic()
    await zapi.wait_for_sends(1, timeout=5)

    assert time.monotonic() - refused_at >= 0.9  # Retry-After, not the 0.5 s first backoff
    assert [r.status for r in zapi.requests] == [429, 200]
    await assert_no_more_sends(zapi, 1)


async def test_a_send_failing_for_good_is_recorded_on_the_session(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    zapi.fail_next(503, retry_after=0.01, count=5)

    await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "anyone?"))
    session = await wait_for_delivery_error(server, channel.client_id, f"Zapi:{PHONE}")

    assert [r.status for r in zapi.requests] == [503] * 5
    assert session.last_delivery_error == "Z-API answered HTTP 503: Service Unavailable"
    assert session.message_count == 2  # the turn itself is kept
    await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "still there?"))  # the chat still works
    assert (await zapi.wait_for_sends(1))[0].body["message"] == "echo: still there?"


async def test_the_view_masks_secrets_and_rolling_the_salt_retires_the_url(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))

    status, client = await server.call("GET", f"/api/v1/web-chat-client/{channel.client_id}")
    assert status == 200
    view = client["integrations"]["zapiIntegration"]
    assert view["instanceId"] == zapi.instance_id
    assert view["instanceToken"] == view["clientToken"] == "********"
    assert view["webhookUrl"] == channel.webhook_url
    assert zapi.instance_token not in str(client) and CLIENT_TOKEN not in str(client)

    await roll_salt(server)
    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "old url")) == 404
    await assert_no_more_sends(zapi, 0)
    assert fake_llm.requests == []
    _, client = await server.call("GET", f"/api/v1/web-chat-client/{channel.client_id}")
    assert client["integrations"]["zapiIntegration"]["webhookUrl"] != channel.webhook_url
    assert await store_of(server).inbound.pending_chats() == []


# -- the adapter on its own ------------------------------------------------------------------------


def test_media_and_names_are_read_from_received_callbacks(zapi: FakeZapi) -> None:
    adapter = ZapiAdapter.__new__(ZapiAdapter)  # parse is pure: no HTTP session needed
    config = ZapiIntegration(instance_id="i", instance_token="t")

    image = adapter.parse(config, zapi.image_message(PHONE, caption="look", name="Ana", moment=1_632_228_828_000))
    audio = adapter.parse(config, zapi.audio_message(PHONE))
    document = adapter.parse(config, zapi.document_message(PHONE, file_name="menu.pdf"))
    group = adapter.parse(config.model_copy(update={"group_policy": GroupPolicy.ALL}),
                          zapi.text_message(PHONE, "hey", group=True, name="Ana", group_name="Family"))

    [message] = image.messages
    assert (message.text, message.sender_name, message.chat_id) == ("look", "Ana", PHONE)
    assert message.media[0].kind is MediaKind.IMAGE and message.media[0].url and message.media[0].mime_type
    assert message.timestamp is not None and message.timestamp.year == 2021
    assert audio.messages[0].media[0].kind is MediaKind.AUDIO and audio.messages[0].text == ""
    assert document.messages[0].media[0].filename == "menu.pdf"
    assert group.messages[0].sender_name == "Ana"
    assert adapter.parse(config, "not an object").ignored == 1


async def test_refusals_never_quote_the_tokens(zapi: FakeZapi) -> None:
    async with loopback_provider_http() as http:
        adapter = ZapiAdapter(http, zapi.url)
        wrong = ZapiIntegration(instance_id=zapi.instance_id, instance_token=zapi.instance_token,
                                client_token="my-wrong-client-token")
        with pytest.raises(DeliveryError) as refused:
            await adapter.send_text(wrong, PHONE, "hi")
        unreachable = ZapiAdapter(http, "http://127.0.0.1:9")
        with pytest.raises(DeliveryError) as down:
            await unreachable.send_text(wrong, PHONE, "hi")
        internal = MediaRef(kind=MediaKind.IMAGE, url=f"{zapi.url}/instances/x/token/y/send-text")
        assert await adapter.fetch_media(wrong, internal) is None  # plain http:// is never fetched

    assert refused.value.retryable is False and "403" in refused.value.message
    assert "my-wrong-client-token" not in refused.value.message and zapi.instance_token not in refused.value.message
    assert down.value.retryable is True and zapi.instance_token not in down.value.message


async def test_a_drain_starts_no_new_turn_and_ends_the_one_it_abandons(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    """SIGTERM's drain: a message arriving meanwhile waits for the next start, and a turn cut off at
    the deadline stops with its worker (its chat's lease is released: another replica may answer)."""
    channel = await connect(server, fake_llm, "Zapi", integration(zapi))
    fake_llm.script(Reply(text="too late", delay=ABANDONED_TURN_SECONDS), Reply(text="not asked"))
    assert await zapi.push(channel.webhook_url, zapi.text_message(PHONE, "slow question")) == 200
    await fake_llm.wait_for_requests(1)
    assert server.app is not None
    draining = asyncio.create_task(server.app[SERVICES].inbound.close(DRAIN_GRACE_SECONDS))
    await asyncio.sleep(0)
    assert await zapi.push(channel.webhook_url, zapi.text_message(OTHER, "arrives while draining")) == 200
    await draining
    await asyncio.sleep(ABANDONED_TURN_SECONDS)  # an abandoned turn still running would be answered by now
    assert len(fake_llm.requests) == 1 and zapi.sent == []
    session = await session_of(server, channel.client_id, f"Zapi:{PHONE}")
    assert session is not None
    messages = await store_of(server).messages.list(session.id)
    assert [m.role.value for m in messages] == ["user"]  # no answer stored behind a released lease
    assert len(await store_of(server).inbound.pending_chats()) == 2  # both answered by the next start
