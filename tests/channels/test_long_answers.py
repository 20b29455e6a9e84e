"""H1 end to end: an answer whose first line is a fence longer than WhatsApp's limit, stored before
a restart and not yet delivered, reaches the user in chunks once `resume()` picks the chat up again
(the old splitter looped forever on it and froze the event loop after every restart)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from botline.api.state import SERVICES
from botline.domain.conversations import Message, Role, Session
from botline.domain.inbound import InboundRecord
from botline.domain.integrations import IntegrationType
from botline.engine.inbound import DEDUPE_SECONDS
from botline.engine.sessions import new_access_key
from tests.channels.conftest import assert_no_more_sends, connect, store_of
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.zapi import FakeZapi
from tests.support.server import RunningServer

PHONE = "5511999999999"
LONG_FENCE_ANSWER = "```" + "a" * 4100


@pytest.fixture
def settings_overrides(zapi: FakeZapi) -> dict[str, Any]:
    return {"providers": {"zapi": {"api_url": zapi.url}}}


async def store_undelivered_answer(server: RunningServer, client_id: str, answer: str) -> None:
    """What a crash between storing an answer and sending it leaves: the message still pending,
    the answer to it in the session."""
    store = store_of(server)
    client = await store.chat_clients.find(client_id)
    assert client is not None
    record = InboundRecord(account_id=client.account_id, chat_client_id=client.id, integration=IntegrationType.ZAPI,
                           chat_id=PHONE, provider_message_id="msg-1", text="print the a's in a code block")
    assert await store.inbound.record(record, dedupe_seconds=DEDUPE_SECONDS)
    session = Session(account_id=client.account_id, chat_client_id=client.id, access_key=new_access_key(),
                      tag=record.chat.external_user_id, expires_at=record.received_at + timedelta(hours=1))
    await store.sessions.create(session)
    await store.messages.append(Message(session_id=session.id, role=Role.USER, content=record.text))
    await store.messages.append(Message(session_id=session.id, role=Role.ASSISTANT, content=answer,
                                        answers_inbound=[record.id]))


@pytest.mark.timeout(30, method="signal")  # the old splitter froze this loop: fail by timeout, not hang
async def test_h1_a_stored_answer_with_a_long_fence_line_is_delivered_in_chunks_after_resume(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi
) -> None:
    channel = await connect(server, fake_llm, "Zapi", {"instanceId": zapi.instance_id,
                                                       "instanceToken": zapi.instance_token})
    await store_undelivered_answer(server, channel.client_id, LONG_FENCE_ANSWER)
    assert server.app is not None

    assert await server.app[SERVICES].inbound.resume() == 1

    sent = await zapi.wait_for_sends(2, timeout=10)
    assert [s.body["phone"] for s in sent] == [PHONE, PHONE]
    assert [s.body["message"] for s in sent] == [LONG_FENCE_ANSWER[:4096], LONG_FENCE_ANSWER[4096:]]
    await assert_no_more_sends(zapi, 2)
    assert fake_llm.requests == []  # the stored answer was sent; the model was not asked again
