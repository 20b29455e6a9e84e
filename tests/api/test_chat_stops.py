"""Stopping a web-chat answer at awkward moments: twice, before the turn exists, while this replica's
own signal connection is down. Each time the person sees one stopped answer, and nothing runs on."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as redis_asyncio

from botline.api.state import SERVICES
from botline.engine.stops import CANCEL_TOPIC
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.redis_server import delete_prefix, unique_prefix
from tests.support.server import RunningServer, make_settings, running_server
from tests.support.webchat import create_client, open_session, prompt, public, sse_events

LONG_ANSWER = " ".join(f"w{n}" for n in range(300))


async def open_chat(server: RunningServer, fake: FakeLLM, **parameters: Any) -> tuple[str, str]:
    """A new chat client with one session: (client id, access key)."""
    client_id = await create_client(server, fake, **parameters)
    return client_id, str((await open_session(server, client_id))["accessKey"])


async def session_of(server: RunningServer, client_id: str) -> dict[str, Any]:
    status, [session] = await server.call("GET", f"/api/v1/web-chat-client/{client_id}/sessions")
    assert status == 200
    return dict(session)


class WriteLock:
    """Holds SQLite's write lock from another connection, as a long write elsewhere would: botline's
    writes wait (up to its busy timeout) until `release`."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._db.execute("ROLLBACK")
        self._db.close()


async def test_a_second_stop_while_the_first_is_storing_keeps_one_stopped_answer(
    server: RunningServer, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    client_id, key = await open_chat(server, fake_llm)
    session_id = (await session_of(server, client_id))["id"]
    fake_llm.script(Reply(text=LONG_ANSWER, chunk_delay=0.01))
    assert server.app is not None
    chat = server.app[SERVICES].chat
    stops_heard = asyncio.Queue[str]()
    await server.app[SERVICES].store.signals.subscribe(CANCEL_TOPIC, stops_heard.put)
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt("long")) as response:
        events = sse_events(response)
        assert (await anext(events))[0] == "delta"
        lock = WriteLock(tmp_path / "botline.db")
        try:
            first = asyncio.create_task(server.call("DELETE", public(key)))
            await fake_llm.wait_for_cancelled(1)  # the turn is stopped and waits to store its partial answer
            # A second stop (a double click, a reset, the shutdown deadline) while that write waits; the
            # engine is called directly because every other request now queues behind the write.
            second = asyncio.create_task(chat.cancel(session_id))
            for _ in range(2):
                await stops_heard.get()  # every replica has handled both stops once this is heard
        finally:
            lock.release()
        assert await first == (200, {"message": "Inference cancelled."})
        await second
        rest = [event async for event in events]
    assert [name for name, _ in rest if name != "delta"] == ["done"]
    assert rest[-1][1]["cancelled"] is True
    _, info = await server.call("GET", public(key))
    assert [(m["role"], m.get("status")) for m in info["messages"]] == [("user", None), ("assistant", "cancelled")]
    assert (await session_of(server, client_id))["messageCount"] == 2


async def test_a_stop_while_the_prompt_is_still_being_read_stops_it(server: RunningServer, fake_llm: FakeLLM) -> None:
    _, key = await open_chat(server, fake_llm, inputModes=["Audio"])
    transcribed = asyncio.Event()
    fake_llm.script(Reply(text="book a table for two", hold=transcribed), Reply(text="Booked."))
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF....WAVE").decode(),
                                                    "format": "wav"}}
    answer = asyncio.create_task(server.call("POST", public(key, "/prompt"), json=prompt([audio])))
    await fake_llm.wait_for_requests(1)  # the voice message is being transcribed: no turn yet
    assert await server.call("DELETE", public(key)) == (200, {"message": "Inference cancelled."})
    transcribed.set()
    status, body = await answer
    assert status == 200 and body["cancelled"] is True and body["completionText"] == ""
    _, info = await server.call("GET", public(key))
    assert info["messages"] == []
    assert [r.path for r in fake_llm.requests] == ["/v1/audio/transcriptions"]  # the model was never asked


@pytest.fixture
async def redis_server(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[RunningServer, str]]:
    """A botline on Redis, and the name of its signal connection."""
    prefix = unique_prefix()
    settings = make_settings(redis_url, storage={"url": redis_url, "redis_prefix": prefix})
    try:
        async with running_server(settings) as running:
            yield running, f"{prefix}:signals"
    finally:
        await delete_prefix(redis_url, prefix)


async def test_a_stop_reaches_this_replicas_turn_while_its_signal_connection_is_down(
    redis_server: tuple[RunningServer, str], redis_url: str, fake_llm: FakeLLM
) -> None:
    server, connection_name = redis_server
    _, key = await open_chat(server, fake_llm)
    fake_llm.script(Reply(text=LONG_ANSWER, chunk_delay=0.01))
    async with server.http.post(server.url + public(key, "/prompt?stream=true"), json=prompt("long")) as response:
        events = sse_events(response)
        assert (await anext(events))[0] == "delta"
        await drop_connection(redis_url, connection_name)  # as a network cut would; it reconnects shortly
        assert await server.call("DELETE", public(key)) == (200, {"message": "Inference cancelled."})
        _, info = await server.call("GET", public(key))
        rest = [event async for event in events]
    assert info["messages"][-1]["status"] == "cancelled"
    assert rest[-1][0] == "done" and rest[-1][1]["cancelled"] is True
    await fake_llm.wait_for_cancelled(1)


async def drop_connection(redis_url: str, name: str) -> None:
    async with redis_asyncio.Redis.from_url(redis_url) as redis:
        [connection] = [c for c in await redis.client_list() if c.get("name") == name]
        await redis.client_kill_filter(_id=connection["id"])

