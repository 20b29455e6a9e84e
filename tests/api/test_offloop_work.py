"""CPU-heavy work on hostile input never holds the event loop: /healthz keeps answering meanwhile."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
import tiktoken

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM
from tests.support.loop_watch import HEALTHZ_BUDGET_SECONDS, collector_as_botline_serve_sets_it, probing_health
from tests.support.pdfs import minimal_pdf, slow_pdf
from tests.support.server import RunningServer
from tests.support.tokenizer import exact_tokens
from tests.support.webchat import create_client, open_session, prompt, public

__all__ = ["collector_as_botline_serve_sets_it", "exact_tokens"]  # fixtures (the collector: autouse)

MB = 1024 * 1024
JSON = {"Content-Type": "application/json"}
TIMED_OUT = "The document could not be read in time. Try a shorter or simpler file."


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"parsing": {"workers": 1, "timeout_seconds": 1.0}}


def upload(name: str, blob: bytes) -> list[dict[str, Any]]:
    data = "data:application/pdf;base64," + base64.b64encode(blob).decode()
    return [{"type": "text", "text": "Summarise this"}, {"type": "file", "file": {"filename": name, "file_data": data}}]


async def test_h3_a_hostile_pdf_from_an_anonymous_user_does_not_stall_the_server(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    client_id = await create_client(server, fake_llm, inputModes=["Document"])
    access_key = str((await open_session(server, client_id))["accessKey"])
    hostile = slow_pdf()  # a few KB; pypdf needs seconds for it
    assert len(hostile) < 10_000
    body = orjson.dumps(prompt(upload("report.pdf", hostile)))
    url = server.url + public(access_key, "/prompt")
    async with probing_health(server) as probe, server.http.post(url, data=body, headers=JSON) as response:
        status, answer = response.status, await response.json()  # no API key: anyone with the chat link
    assert len(probe.seconds) > 10 and probe.slowest < HEALTHZ_BUDGET_SECONDS, probe.slowest
    assert (status, answer["message"]) == (422, TIMED_OUT)
    assert fake_llm.requests == []
    async with server.http.post(url, json=prompt(upload("invoice.pdf", minimal_pdf("Invoice 1234")))) as response:
        assert response.status == 200  # the killed worker was replaced
    assert "Invoice 1234" in fake_llm.requests[-1].body["messages"][-1]["content"][1]["text"]


async def test_l7_counting_a_multi_megabyte_history_does_not_stall_the_server(
    server: RunningServer, fake_llm: FakeLLM, exact_tokens: tiktoken.Encoding,
) -> None:
    gateway_id = await create_gateway(server, fake_llm, contextMaximumSize=1000, contextOverflowAction="Truncate")
    history: list[dict[str, str]] = []
    for n in range(4):
        history += [{"role": "user", "content": f"part {n} " + "lorem ipsum " * (MB // 12)},
                    {"role": "assistant", "content": "noted"}]
    history.append({"role": "user", "content": "the question"})
    body = orjson.dumps({"model": gateway_id, "messages": history})  # encoded before the probe starts
    warm_up = {"model": gateway_id, "messages": [{"role": "user", "content": "hi"}]}
    assert (await server.call("POST", "/v1/chat/completions", json=warm_up))[0] == 200  # the SDK's lazy imports
    async with probing_health(server) as probe:
        status, answer = await server.call("POST", "/v1/chat/completions", data=body, headers=JSON)
    assert len(probe.seconds) > 10 and probe.slowest < HEALTHZ_BUDGET_SECONDS, probe.slowest
    assert status == 200, answer
    sent = fake_llm.requests[-1].body["messages"]
    assert sent[-1] == {"role": "user", "content": "the question"} and len(sent) < len(history)
