"""Bounded spend on public links (review finding M6): limits on by default, the hourly limit before any
paid work, caps on queued prompts and on parts, and a budget for scheduled continuations."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from botline.accounts import admin_account
from botline.api.state import SERVICES, Services
from botline.domain.chat_clients import DEFAULT_MAX_MESSAGES, DEFAULT_MESSAGES_PER_HOUR
from botline.domain.clock import FrozenClock
from botline.domain.schedules import ActivationOutcome, ScheduledItem, ScheduleKind, ScheduleTarget
from botline.scheduler.activation import ScheduleActivator
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer
from tests.support.webchat import create_client, open_session, prompt, public

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CONTINUATIONS_PER_HOUR = 2
WAIT_SECONDS = 10
"""Only a guard against a hang: the refusals come back while the first answer is still held."""
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 32).decode()
AUDIO = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF....WAVE").decode(), "format": "wav"}}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"scheduler": {"continuations_per_user_per_hour": CONTINUATIONS_PER_HOUR}}


def chat_completions(fake: FakeLLM) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions"))


def transcriptions(fake: FakeLLM) -> int:
    return sum(1 for r in fake.requests if r.path.endswith("/audio/transcriptions"))


def svc(server: RunningServer) -> Services:
    assert server.app is not None
    return server.app[SERVICES]


async def test_m6_new_clients_are_limited_by_default_and_an_explicit_0_still_means_none(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    limited = await create_client(server, fake_llm)
    unlimited = await create_client(server, fake_llm, limitingParameters={"messagesPerHour": 0, "maxMessages": 0})
    _, view = await server.call("GET", f"/api/v1/web-chat-client/{limited}")
    assert view["limitingParameters"] == {"messagesPerHour": DEFAULT_MESSAGES_PER_HOUR,
                                          "maxMessages": DEFAULT_MAX_MESSAGES}
    # An edit of something else keeps the stored limits (0 stays unlimited, it is not replaced by a default).
    assert (await server.call("PUT", f"/api/v1/web-chat-client/{unlimited}",
                              json={"clientParameters": {"helloLabel": "Hi"}}))[0] == 200
    _, view = await server.call("GET", f"/api/v1/web-chat-client/{unlimited}")
    assert view["limitingParameters"] == {"messagesPerHour": 0, "maxMessages": 0}


async def test_m6_a_throttled_users_audio_is_never_transcribed(server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(server, fake_llm, inputModes=["Audio"], limitingParameters={"messagesPerHour": 1})
    key = (await open_session(server, client_id, tag="ana"))["accessKey"]
    assert (await server.call("POST", public(key, "/prompt"), json=prompt("hello")))[0] == 200

    for _ in range(3):  # several voice notes, each with several audio parts
        status, body = await server.call("POST", public(key, "/prompt"), json=prompt([AUDIO, AUDIO, AUDIO]))
        assert status == 429 and "1 message per hour" in body["message"]

    assert transcriptions(fake_llm) == 0  # the paid call never happened
    assert chat_completions(fake_llm) == 1


async def test_m6_prompts_queued_beyond_the_cap_get_429_and_never_reach_the_model(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    cap = svc(server).settings.webchat.max_pending_prompts
    client_id = await create_client(server, fake_llm)
    key = (await open_session(server, client_id))["accessKey"]
    release = asyncio.Event()
    fake_llm.script(Reply(text="first answer", hold=release))
    first = asyncio.create_task(server.call("POST", public(key, "/prompt"), json=prompt("first")))
    await fake_llm.wait_for_requests(1)

    extra = 2
    more = [asyncio.create_task(server.call("POST", public(key, "/prompt"), json=prompt(f"more {n}")))
            for n in range(cap - 1 + extra)]
    refused: list[tuple[int, Any]] = []
    pending = set(more)
    while len(refused) < extra:  # answered while the first turn is still held: these are the refusals
        done, pending = await asyncio.wait(pending, timeout=WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        assert done, "no prompt was refused while the session already had a full queue"
        refused += [task.result() for task in done]
    assert all(status == 429 and "waiting for an answer" in body["message"] for status, body in refused)

    release.set()
    accepted = await asyncio.gather(first, *pending)
    assert [status for status, _ in accepted] == [200] * cap
    assert chat_completions(fake_llm) == cap
    _, info = await server.call("GET", public(key))
    assert len(info["messages"]) == 2 * cap  # the refused prompts were not stored either


async def test_m6_a_prompt_with_too_many_parts_is_413_and_costs_nothing(
    server: RunningServer, fake_llm: FakeLLM
) -> None:
    parts = svc(server).settings.webchat.max_prompt_parts
    client_id = await create_client(server, fake_llm, inputModes=["Image", "Audio"],
                                    limitingParameters={"messagesPerHour": 1})
    key = (await open_session(server, client_id))["accessKey"]
    too_many = [{"type": "text", "text": "look"}] + [AUDIO] * parts

    status, body = await server.call("POST", public(key, "/prompt"), json=prompt(too_many))

    assert status == 413 and f"at most {parts} parts" in body["message"]
    assert fake_llm.requests == []
    # Refused before the hourly count: the one message this hour is still there to send.
    images = [{"type": "text", "text": "look"}] + [{"type": "image_url", "image_url": {"url": PNG}}] * (parts - 1)
    assert (await server.call("POST", public(key, "/prompt"), json=prompt(images)))[0] == 200


async def test_m6_scheduled_continuations_count_against_a_per_user_hourly_budget(
    server: RunningServer, fake_llm: FakeLLM, clock: FrozenClock
) -> None:
    services = svc(server)
    client_id = await create_client(server, fake_llm, allowScheduledContinuations=True)
    account = await admin_account(services.store)
    sessions = {user: (await open_session(server, client_id, tag=user, expires=86400))["sessionId"]
                for user in ("ana", "bo")}
    activator = ScheduleActivator(
        services.store, services.chat, services.sessions, services.inbound, {}, clock, services.settings.scheduler,
        metrics=services.metrics, limiter=services.limiter)

    async def fire(user: str) -> tuple[ActivationOutcome, str | None]:
        item = ScheduledItem(
            kind=ScheduleKind.ONE_SHOT, account_id=account.id, chat_client_id=client_id, external_user_id=user,
            target=ScheduleTarget.WEB_CHAT, target_identifier=sessions[user], reason="a ten-minute check-in",
            scheduled_time=clock.now() + timedelta(days=1), next_activation=clock.now() + timedelta(days=1))
        await services.store.schedules.create(item)
        await activator.activate(item, clock.now())
        stored = await services.store.schedules.get(account.id, item.id)
        assert stored is not None
        return stored.history[-1].outcome, stored.activation_result

    fired = [await fire("ana") for _ in range(CONTINUATIONS_PER_HOUR + 2)]
    assert [outcome for outcome, _ in fired] == (
        [ActivationOutcome.DELIVERED] * CONTINUATIONS_PER_HOUR + [ActivationOutcome.SKIPPED] * 2)
    assert fired[-1][1] == (f"skipped: this user's budget of {CONTINUATIONS_PER_HOUR} scheduled continuations "
                            "per hour is used up")
    assert chat_completions(fake_llm) == CONTINUATIONS_PER_HOUR

    assert (await fire("bo"))[0] is ActivationOutcome.DELIVERED  # another user has a budget of their own
    clock.advance(timedelta(hours=1))
    assert (await fire("ana"))[0] is ActivationOutcome.DELIVERED  # and the next hour brings a new one
