"""Human handoff on WhatsApp, end to end: a message typed on the business's own phone (Z-API, Evolution,
Kapso) takes the chat over, the bot stays silent for the takeover window, then answers again knowing
what the person said. The server's clock is frozen: the window passes without sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botline.api.state import SERVICES
from botline.domain.base import new_id
from botline.domain.clock import FrozenClock
from botline.domain.conversations import Session
from botline.domain.handoff import Controller, HandoffTrigger
from botline.domain.inbound import InboundRecord
from botline.domain.integrations import IntegrationType
from tests.channels.conftest import assert_no_more_sends, connect, post, session_of, store_of
from tests.emulators.evolution import FakeEvolution
from tests.emulators.fake_llm import FakeLLM
from tests.emulators.kapso import FakeKapso
from tests.emulators.webhook_pusher import JSON, ProviderEmulator, encode_payload
from tests.emulators.zapi import FakeZapi
from tests.support.server import RunningServer

PHONE = "5511999999999"
KAPSO_SECRET = "wh_sec_3kfj9dmfkg8s2"
WINDOW = timedelta(minutes=30)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def zapi() -> AsyncIterator[FakeZapi]:
    async with FakeZapi() as fake:
        yield fake


@pytest.fixture
async def evo() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution(expose_apikey=True, retry_scale=0.001) as fake:
        yield fake


@pytest.fixture
async def kapso() -> AsyncIterator[FakeKapso]:
    async with FakeKapso(webhook_secret=KAPSO_SECRET) as fake:
        yield fake


@pytest.fixture
def settings_overrides(zapi: FakeZapi, kapso: FakeKapso) -> dict[str, Any]:
    return {"providers": {"zapi": {"api_url": zapi.url}, "kapso": {"api_url": kapso.url}}}


@dataclass
class Phone:
    """One provider as the customer and the business's own phone use it."""

    kind: str
    emulator: ProviderEmulator
    integration: dict[str, Any]
    customer: Callable[[str], dict[str, Any]]
    operator: Callable[[str], dict[str, Any]]
    sent_text: Callable[[Any], str]
    tag: str
    url: str = ""

    async def send(self, server: RunningServer, payload: dict[str, Any]) -> None:
        body = encode_payload(payload)
        headers = {"Content-Type": JSON}
        if isinstance(self.emulator, FakeKapso):
            headers = self.emulator.webhook_headers(body, self.emulator.event_of(payload))
        status, answer = await post(server, self.url, body, headers)
        assert status == 200 and answer["received"] == 1, answer


def phones(zapi: FakeZapi, evo: FakeEvolution, kapso: FakeKapso) -> dict[str, Phone]:
    return {
        "zapi": Phone(
            "Zapi", zapi, {"instanceId": zapi.instance_id, "instanceToken": zapi.instance_token},
            lambda text: zapi.text_message(PHONE, text, name="Ana"),
            lambda text: zapi.text_message(PHONE, text, from_me=True, from_api=False),
            lambda sent: str(sent.body["message"]), f"Zapi:{PHONE}"),
        "evolution": Phone(
            "EvolutionApi", evo, {"endpointUrl": evo.url, "instanceName": evo.instance, "apiKey": evo.default.token},
            lambda text: evo.text_message(PHONE, text, name="Ana"),
            lambda text: evo.text_message(PHONE, text, from_me=True),
            lambda sent: str(sent.body["text"]), f"EvolutionApi:{PHONE}"),
        "kapso": Phone(
            "Kapso", kapso, {"apiKey": kapso.api_key, "phoneNumberId": kapso.phone_number_id,
                             "webhookSecretKey": KAPSO_SECRET},
            lambda text: kapso.text_message(PHONE, text, name="Ana"),
            lambda text: kapso.echo_message(PHONE, text),
            lambda sent: str(sent.body["text"]["body"]), f"Kapso:{PHONE}"),
    }


@pytest.fixture(params=["zapi", "evolution", "kapso"])
def phone(request: pytest.FixtureRequest, zapi: FakeZapi, evo: FakeEvolution, kapso: FakeKapso) -> Phone:
    return phones(zapi, evo, kapso)[request.param]


async def connected(server: RunningServer, fake_llm: FakeLLM, phone: Phone, **parameters: Any) -> str:
    channel = await connect(server, fake_llm, phone.kind, phone.integration, **parameters)
    phone.url = channel.webhook_url
    return channel.client_id


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    import asyncio

    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_an_operator_typing_on_the_phone_silences_the_bot_until_the_window_passes(
    server: RunningServer, fake_llm: FakeLLM, phone: Phone, clock: FrozenClock
) -> None:
    client_id = await connected(server, fake_llm, phone)
    await phone.send(server, phone.customer("is my order 42 shipped?"))
    await phone.emulator.wait_for_sends(1)  # the bot answered once

    await phone.send(server, phone.operator("Hi Ana, this is Paula: order 42 ships tomorrow, 10% off for the wait."))

    async def taken() -> bool:
        session = await session_of(server, client_id, phone.tag)
        return session is not None and session.handoff is not None and session.handoff.is_human(clock.now())

    await until(taken)
    await phone.send(server, phone.customer("great, thanks!"))
    await assert_no_more_sends(phone.emulator, 1)  # recorded, not answered
    assert len(fake_llm.requests) == 1

    clock.advance(WINDOW + timedelta(seconds=1))
    await phone.send(server, phone.customer("one more thing: can I change the address?"))
    sent = await phone.emulator.wait_for_sends(2)
    assert phone.sent_text(sent[1]) == "echo: one more thing: can I change the address?"
    context = fake_llm.requests[-1].body["messages"]
    said = [(m["role"], m["content"]) for m in context if m["role"] != "system"]
    assert said == [
        ("user", "is my order 42 shipped?"), ("assistant", "echo: is my order 42 shipped?"),
        ("assistant", "Hi Ana, this is Paula: order 42 ships tomorrow, 10% off for the wait."),
        ("user", "great, thanks!"), ("user", "one more thing: can I change the address?"),
    ]


async def test_each_operator_message_slides_the_window_and_the_keyword_gives_the_chat_back(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi, evo: FakeEvolution, kapso: FakeKapso,
    clock: FrozenClock,
) -> None:
    phone = phones(zapi, evo, kapso)["zapi"]
    client_id = await connected(server, fake_llm, phone, handoff={"windowMinutes": 10})
    await phone.send(server, phone.operator("Hello! How can I help?"))
    clock.advance(timedelta(minutes=8))
    await phone.send(server, phone.operator("Still there?"))
    clock.advance(timedelta(minutes=8))  # 16 minutes after the first, 8 after the last: still the person's
    await phone.send(server, phone.customer("yes, sorry"))
    await assert_no_more_sends(zapi, 0)

    await phone.send(server, phone.operator(" #BOT "))
    await phone.send(server, phone.customer("what are your hours?"))
    sent = await zapi.wait_for_sends(1)
    assert phone.sent_text(sent[0]) == "echo: what are your hours?"
    session = await session_of(server, client_id, phone.tag)
    assert session is not None and session.handoff is not None
    assert (session.handoff.state, session.handoff.by.value) == (Controller.BOT, "keyword")
    messages = await store_of(server).messages.list(session.id)
    assert [(m.role.value, m.content, m.agent) for m in messages] == [
        ("assistant", "Hello! How can I help?", "operator"), ("assistant", "Still there?", "operator"),
        ("user", "yes, sorry", None), ("user", "what are your hours?", None),
        ("assistant", "echo: what are your hours?", None),
    ]  # the keyword itself is not part of the conversation


async def test_a_user_asking_for_a_person_gets_the_handoff_message_once(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi, evo: FakeEvolution, kapso: FakeKapso,
) -> None:
    phone = phones(zapi, evo, kapso)["zapi"]
    await connected(server, fake_llm, phone, handoff={"userMessage": "Um atendente já vai falar com você."})
    await phone.send(server, phone.customer("Atendente"))
    sent = await zapi.wait_for_sends(1)
    assert phone.sent_text(sent[0]) == "Um atendente já vai falar com você."
    await phone.send(server, phone.customer("atendente"))
    await phone.send(server, phone.customer("hello?"))
    await assert_no_more_sends(zapi, 1)
    assert fake_llm.requests == []


async def test_botlines_own_replies_echoed_back_never_take_the_chat(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi, evo: FakeEvolution, kapso: FakeKapso,
) -> None:
    """"Notify sent by me" on: every reply comes back fromMe with fromApi; the bot keeps answering."""
    zapi.notify_sent_by_me = True
    phone = phones(zapi, evo, kapso)["zapi"]
    client_id = await connected(server, fake_llm, phone)
    zapi.webhooks["received"] = phone.url
    await phone.send(server, phone.customer("first"))
    await zapi.wait_for_sends(1)

    async def echoed() -> bool:
        return any(b'"fromMe":true' in d.body and d.status == 200 for d in zapi.deliveries)

    await until(echoed)
    await phone.send(server, phone.customer("second"))
    await zapi.wait_for_sends(2)
    session = await session_of(server, client_id, phone.tag)
    assert session is not None and session.handoff is None


async def handed_over(server: RunningServer, client_id: str, tag: str) -> Session:
    """The chat's session once the operator's message has been processed (the chat is the person's)."""
    async with asyncio.timeout(5):
        while True:
            session = await session_of(server, client_id, tag)
            if session is not None and session.handoff is not None:
                return session
            await asyncio.sleep(0.01)


def waiting_record(session: Session, *, text: str, at: datetime, operator: bool = False) -> InboundRecord:
    return InboundRecord(account_id=session.account_id, chat_client_id=session.chat_client_id or "",
                         integration=IntegrationType.ZAPI, chat_id="5511999990000", provider_message_id=new_id(),
                         text=text, received_at=at, operator=operator)


async def test_messages_still_waiting_when_the_bot_gets_the_chat_back_stay_the_persons(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi, evo: FakeEvolution, kapso: FakeKapso,
    clock: FrozenClock,
) -> None:
    """A message that arrived while a person had the chat, but was still waiting (a busy replica, the
    debounce) when the chat was given back, is never answered by the bot: the person may have answered."""
    phone = phones(zapi, evo, kapso)["zapi"]
    client_id = await connected(server, fake_llm, phone)
    await phone.send(server, phone.operator("Paula here, how can I help?"))
    session = await handed_over(server, client_id, phone.tag)
    assert server.app is not None
    services = server.app[SERVICES]
    client = await services.store.chat_clients.get(session.account_id, client_id)
    assert client is not None
    waiting = waiting_record(session, text="are you still there?", at=clock.now())
    clock.advance(timedelta(minutes=1))
    session = await services.handoff.resume(session, client, by=HandoffTrigger.API)
    assert session is not None
    later = waiting_record(session, text="what are your hours?", at=clock.now())

    settled = await services.handoff.settle(session, client, [waiting, later])

    assert settled is not None and settled.rest == (later,)
    messages = await store_of(server).messages.list(session.id)
    assert [(m.role.value, m.content) for m in messages][-1] == ("user", "are you still there?")
    assert fake_llm.requests == []


async def test_the_question_after_the_keyword_in_the_same_batch_is_the_bots(
    server: RunningServer, fake_llm: FakeLLM, zapi: FakeZapi, evo: FakeEvolution, kapso: FakeKapso,
    clock: FrozenClock,
) -> None:
    phone = phones(zapi, evo, kapso)["zapi"]
    client_id = await connected(server, fake_llm, phone)
    await phone.send(server, phone.operator("Paula here, how can I help?"))
    session = await handed_over(server, client_id, phone.tag)
    assert server.app is not None
    services = server.app[SERVICES]
    client = await services.store.chat_clients.get(session.account_id, client_id)
    assert client is not None
    keyword = waiting_record(session, text="#bot", at=clock.now(), operator=True)
    question = waiting_record(session, text="what are your hours?", at=clock.now())

    settled = await services.handoff.settle(session, client, [keyword, question])

    assert settled is not None and settled.rest == (question,)
    assert settled.session.handoff is not None and settled.session.handoff.state is Controller.BOT
