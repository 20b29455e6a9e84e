"""modelRoutingParameters: a classifier's low/medium/high picks the tier's model and reasoning effort;
the answer names the complexity in X-Model-Routed-Complexity; a failed classifier keeps the gateway's model."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer

ROUTING = {"lowComplexityModelName": "small-model", "mediumComplexityModelName": "mid-model",
           "highComplexityModelName": "big-model", "highComplexityModelReasoningEffort": "high"}
HEADER = "X-Model-Routed-Complexity"


async def ask(server: RunningServer, gateway: str) -> tuple[int, Any, dict[str, str]]:
    async with server.http.post(server.url + "/v1/chat/completions", headers=server.headers(), json={
            "model": gateway, "messages": [{"role": "user", "content": "Plan a 3-city trip with a budget"}],
    }) as response:
        return response.status, await response.json(), dict(response.headers)


@pytest.mark.parametrize(("label", "model", "effort"), [("low", "small-model", None), ("High.", "big-model", "high")])
async def test_the_classifiers_label_picks_the_tiers_model(
    server: RunningServer, fake_llm: FakeLLM, label: str, model: str, effort: str | None,
) -> None:
    gateway = await create_gateway(server, fake_llm, modelRoutingParameters=ROUTING)
    fake_llm.script(Reply(text=label), Reply(text="Here is a plan."))
    status, body, headers = await ask(server, gateway)
    assert status == 200 and body["choices"][0]["message"]["content"] == "Here is a plan."
    assert headers[HEADER] == label.strip(".").lower()
    classifier, main = fake_llm.requests
    assert classifier.body["model"] == "small-model" and classifier.body["max_completion_tokens"] == 5
    assert "Plan a 3-city trip" in classifier.body["messages"][1]["content"]
    assert main.body["model"] == model and main.body.get("reasoning_effort") == effort
    status, usage = await server.call("GET", f"/api/v1/admin/accounts/{(await admin_id(server))}/usage")
    assert model in {m["model"] for m in usage["models"]}


async def admin_id(server: RunningServer) -> str:
    _, accounts = await server.call("GET", "/api/v1/admin/accounts")
    return str(accounts[0]["id"])


@pytest.mark.parametrize("classifier", [Reply(text="it depends"), Reply(status=500)])
async def test_a_classifier_that_fails_keeps_the_gateways_model(
    server: RunningServer, fake_llm: FakeLLM, classifier: Reply,
) -> None:
    gateway = await create_gateway(server, fake_llm, modelRoutingParameters=ROUTING)
    fake_llm.script(classifier, Reply(text="ok"))
    status, _, headers = await ask(server, gateway)
    assert status == 200 and HEADER not in headers
    assert fake_llm.requests[-1].body["model"] == "fake-model"


async def test_streams_carry_the_header_too_and_unrouted_gateways_make_no_classifier_call(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    routed = await create_gateway(server, fake_llm, name="Routed", modelRoutingParameters=ROUTING)
    sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    fake_llm.script(Reply(text="medium"), Reply(text="streamed"))
    raw = await sdk.chat.completions.with_raw_response.create(
        model=routed, messages=[{"role": "user", "content": "Explain DNS"}], stream=True)
    assert raw.headers[HEADER] == "medium"
    assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]) == "streamed"
    assert fake_llm.requests[-1].body["model"] == "mid-model"
    plain = await create_gateway(server, fake_llm, name="Plain")
    before = len(fake_llm.requests)
    await sdk.chat.completions.create(model=plain, messages=[{"role": "user", "content": "hi"}])
    assert len(fake_llm.requests) == before + 1
    await sdk.close()
