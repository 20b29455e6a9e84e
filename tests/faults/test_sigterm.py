"""SIGTERM during turns: what fits in `server.shutdown_grace_seconds` finishes and is delivered once;
what does not is abandoned at the deadline and, for a channel, answered once after the restart.

botline is a real `botline serve` child (SQLite), the channel is Z-API's emulator and the model the
fake LLM, whose answers take as long as each message asks for.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from tests.channels.test_crash_recovery import connect_zapi
from tests.conftest import UPSTREAM_KEY
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.emulators.zapi import FakeZapi
from tests.faults.conftest import client_of, write_config
from tests.support.processes import botline_process
from tests.support.server import RunningServer, free_port
from tests.support.webchat import create_client, open_session, prompt, public, sse_events

GRACE_SECONDS = 1.5
SHORT_TURN = 0.8
"""Still running when the stop comes, and well inside the grace period."""
LONG_TURN = 6.0
"""Longer than the grace period, and than the whole stop: a stop that waited for it would show."""
QUICK, SLOW = "5511900000001", "5511900000002"


class Pace:
    """The fake model's answers: "slow ..." messages take LONG_TURN until `restarted`; the web chat's
    streams its words over that time, so the browser has half an answer when the stop comes."""

    def __init__(self) -> None:
        self.restarted = False

    def __call__(self, body: dict[str, Any]) -> Reply:
        text = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        if not text.startswith("slow") or self.restarted:
            return Reply(text=f"answer to {text}", delay=SHORT_TURN)
        if "web" in text:
            words = "a long answer that streams slowly " * 4
            return Reply(text=words, chunk_delay=LONG_TURN / len(words.split()))
        return Reply(text=f"answer to {text}", delay=LONG_TURN)


async def stream_events(server: RunningServer, access_key: str, text: str) -> list[tuple[str, Any]]:
    """POSTs a streamed prompt and reads its SSE events until the stream ends."""
    async with server.http.post(server.url + public(access_key, "/prompt?stream=true"), json=prompt(text)) as answer:
        return [event async for event in sse_events(answer)]


async def test_sigterm_finishes_short_turns_and_resumes_long_ones_after_the_restart(tmp_path: Path) -> None:
    pace = Pace()
    async with FakeLLM(api_key=UPSTREAM_KEY, default_reply=pace) as fake, FakeZapi() as zapi:
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'botline.db'}", fake,
                              providers={"zapi": {"api_url": zapi.url}},
                              server={"shutdown_grace_seconds": GRACE_SECONDS})
        port = free_port()
        async with botline_process(config, port) as first, client_of(first) as server:
            webhook_url = await connect_zapi(server.http, server.url, zapi)
            web_chat = await open_session(server, await create_client(server, fake))
            assert await zapi.push(webhook_url, zapi.text_message(SLOW, "slow question")) == 200
            assert await zapi.push(webhook_url, zapi.text_message(QUICK, "quick question")) == 200
            browser = asyncio.create_task(stream_events(server, web_chat["accessKey"], "slow web question"))
            await fake.wait_for_requests(3)  # three turns are with the model...
            await asyncio.sleep(0.3)  # (the browser has a few words)
            assert zapi.sent == []

            first.process.send_signal(signal.SIGTERM)  # ...when the orchestrator stops the process
            stopping = time.monotonic()
            await first.process.wait()
            stopped_after = time.monotonic() - stopping
            events = await browser

        assert stopped_after < LONG_TURN  # the long turns were abandoned, not waited for
        [quick] = zapi.sent  # the short turn finished inside the grace period and was delivered
        assert (quick.body["phone"], quick.body["message"]) == (QUICK, "answer to quick question")
        names = [name for name, _ in events]
        assert names[0] == "delta" and names[-1] == "error" and "done" not in names
        assert "restart" in events[-1][1]["message"]  # the half answer is not shown as complete

        pace.restarted = True
        async with botline_process(config, port) as second, client_of(second) as server:
            [_, resumed] = await zapi.wait_for_sends(2, timeout=10)
            assert (resumed.body["phone"], resumed.body["message"]) == (SLOW, "answer to slow question")
            _, transcript = await server.call("GET", public(web_chat["accessKey"], "/transcript.json"))
            assert transcript["messages"] == [{"role": "user", "content": "slow web question"}]  # kept, unanswered
            status, answer = await server.call("POST", public(web_chat["accessKey"], "/prompt"),
                                               json=prompt("slow web question"))  # the person sends it again
            assert (status, answer["completionText"]) == (200, "answer to slow web question")
            _, transcript = await server.call("GET", public(web_chat["accessKey"], "/transcript.json"))
            assert [m["role"] for m in transcript["messages"]] == ["user", "assistant"]
            await asyncio.sleep(0.5)  # a bounded window: a second reply would show up here
        assert len(zapi.sent) == 2
        resumed_call = [r for r in fake.requests if "slow question" in str(r.body["messages"])][-1]
        assert [m["content"] for m in resumed_call.body["messages"] if m["role"] == "user"] == ["slow question"]
