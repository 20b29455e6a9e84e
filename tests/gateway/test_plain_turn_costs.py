"""A gateway that uses none of the second-wave features (knowledge, policies, connections, skills, MCP,
workers, shell, speech, handoff, batch) pays nothing for them: its turns start no Store operation of
theirs and no task of theirs (issue 18 §2). Counted by botline_store_operations on /metrics, on SQLite
and on Redis, and by the event loop's task factory (the server runs in this test's loop)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import openai

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.metrics import Scrape, scrape
from tests.support.server import ADMIN_KEY, RunningServer
from tests.support.webchat import create_client, open_session, prompt, public

TURNS = 3
SECOND_WAVE_REPOSITORIES = ("Policies", "LlmConnections", "Collections", "Documents", "Vectors", "Skills", "Batch",
                            "Shell", "Handoff", "Blobs", "Media", "Audio")
SECOND_WAVE_PACKAGES = ("/botline/knowledge/", "/botline/governance/", "/botline/tools/", "/botline/shell/",
                        "/botline/speech/", "/botline/media/", "/botline/batch/", "/botline/engine/handoff")


def operations(scraped: Scrape) -> Counter[str]:
    return Counter({s.labels["operation"]: int(s.value) for s in scraped.samples
                    if s.name == "botline_store_operations_total"})


@contextmanager
def tasks_started() -> Iterator[list[str]]:
    """The source files of the coroutines of every task the loop starts meanwhile."""
    loop = asyncio.get_running_loop()
    started: list[str] = []
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
                **kwargs: Any) -> asyncio.Future[Any]:
        code = getattr(coro, "cr_code", None)
        started.append(code.co_filename if code is not None else repr(coro))
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)  # type: ignore[arg-type]
    try:
        yield started
    finally:
        loop.set_task_factory(previous)


async def web_and_v1_turns(server: RunningServer, gateway_id: str, access_key: str) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=ADMIN_KEY, max_retries=0)
    for n in range(TURNS):
        answer = await sdk.chat.completions.create(model=gateway_id, messages=[{"role": "user", "content": f"q{n}"}])
        assert answer.choices[0].message.content
        status, body = await server.call("POST", public(access_key, "/prompt"), json=prompt(f"p{n}"))
        assert status == 200, body


async def test_a_plain_gateways_turns_touch_no_second_wave_store_data_and_start_none_of_its_tasks(
    kb_server: RunningServer, fake_llm: FakeLLM
) -> None:
    gateway_id = await create_gateway(kb_server, fake_llm)
    client_id = await create_client(kb_server, fake_llm)
    session = await open_session(kb_server, client_id)
    await web_and_v1_turns(kb_server, gateway_id, session["accessKey"])  # caches warm, as on a live server
    before = operations(await scrape(kb_server))

    with tasks_started() as started:
        await web_and_v1_turns(kb_server, gateway_id, session["accessKey"])
    during = operations(await scrape(kb_server)) - before

    assert during, "the turns were stored, so some Store operation ran"
    second_wave_reads = [op for op in during if any(part in op.split(".")[0] for part in SECOND_WAVE_REPOSITORIES)]
    assert second_wave_reads == []
    assert [path for path in started if any(part in path for part in SECOND_WAVE_PACKAGES)] == []


PROMPTS = 4
PER_PROMPT = {
    "sqlite": {"get_by_access_key": 1, "increment": 1, "lease_with_messages": 1, "add_messages": 1},
    "redis": {"get_by_access_key": 1, "increment": 1, "lease_with_messages": 1, "add_messages": 1},
}
"""A steady-state web chat prompt's Store operations (4 on both): the access-key read, the hourly limit's
counter, the session lease taken with the history read and the prompt's write (on Redis one script; on
SQLite the lease is kept in the process and the rest is one transaction), and the answer, which frees the
lease too. Lower these when a round trip goes; never raise them."""


async def test_a_web_chat_prompt_costs_its_pinned_store_operations(kb_server: RunningServer, fake_llm: FakeLLM) -> None:
    client_id = await create_client(kb_server, fake_llm)
    session = await open_session(kb_server, client_id)
    access_key = session["accessKey"]
    status, body = await kb_server.call("POST", public(access_key, "/prompt"), json=prompt("warm-up"))
    assert status == 200, body
    before = operations(await scrape(kb_server))
    for n in range(PROMPTS):
        status, body = await kb_server.call("POST", public(access_key, "/prompt"), json=prompt(f"p{n}"))
        assert status == 200, body
    during = operations(await scrape(kb_server)) - before

    backend = "redis" if any(op.startswith("Redis") for op in during) else "sqlite"
    per_prompt = {op.split(".")[-1]: count / PROMPTS for op, count in during.items()}
    assert per_prompt == PER_PROMPT[backend]
