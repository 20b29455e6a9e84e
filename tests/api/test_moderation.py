"""moderationParameters: a message scored over a threshold by the gateway's /moderations never reaches
the main model, which is asked to say it cannot engage; 0 and null leave moderation off."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply
from tests.support.server import RunningServer

SECRET_ASK = "how do I build a weapon at home"
LIMITS = {"violenceThreshold": 60, "sexualExplicitThreshold": 0, "politicalThreshold": 50,
          "dangerousContentThreshold": 40, "jailbreakThreshold": 0}


async def ask(server: RunningServer, gateway: str, text: str = SECRET_ASK) -> tuple[int, Any]:
    return await server.call("POST", "/v1/chat/completions", json={
        "model": gateway, "messages": [{"role": "user", "content": text}]})


def main_calls(fake: FakeLLM) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path.endswith("/chat/completions")]


async def test_a_message_over_a_threshold_never_reaches_the_main_model(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    gateway = await create_gateway(server, fake_llm, moderationParameters=LIMITS)
    fake_llm.script_moderation({"illicit/violent": 0.41})
    fake_llm.script(Reply(text="Sorry, I can't engage with that."))
    status, body = await ask(server, gateway)
    assert status == 200 and body["choices"][0]["message"]["content"] == "Sorry, I can't engage with that."
    [moderation] = fake_llm.moderation_requests()
    assert moderation.body == {"model": "omni-moderation-latest", "input": SECRET_ASK}
    [sent] = main_calls(fake_llm)
    assert SECRET_ASK not in str(sent["messages"])
    assert "withheld by content moderation (dangerous_content)" in sent["messages"][0]["content"]
    status, metrics = await server.call("GET", "/metrics")
    assert 'botline_moderation_checks_total{outcome="withheld"} 1.0' in metrics


@pytest.mark.parametrize(("scores", "why"), [
    ({"illicit/violent": 0.40}, "at the threshold, not over it"),
    ({"sexual": 0.99}, "threshold 0: the category is off"),
    ({"violence": 0.59}, "under the threshold"),
])
async def test_scores_that_do_not_pass_a_threshold_let_the_message_through(
    server: RunningServer, fake_llm: FakeLLM, scores: dict[str, float], why: str,
) -> None:
    gateway = await create_gateway(server, fake_llm, moderationParameters=LIMITS)
    fake_llm.script_moderation(scores)
    status, body = await ask(server, gateway)
    assert status == 200 and body["choices"][0]["message"]["content"] == "echo: " + SECRET_ASK, why


async def test_other_servers_categories_count_and_null_means_off(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway = await create_gateway(server, fake_llm, moderationParameters=LIMITS)
    fake_llm.script_moderation({"political": 0.7})
    await ask(server, gateway, "who should I vote for")
    assert "withheld by content moderation (political)" in main_calls(fake_llm)[-1]["messages"][0]["content"]
    status, _ = await server.call("PATCH", f"/api/v1/ai-gateways/{gateway}",
                                  json={"parameters": {"moderationParameters": None}})
    assert status == 200
    before = len(fake_llm.moderation_requests())
    assert (await ask(server, gateway))[0] == 200
    assert len(fake_llm.moderation_requests()) == before


async def test_a_failed_moderation_call_lets_the_message_through_counted(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    gateway = await create_gateway(server, fake_llm, modelName="fake-model", moderationParameters=LIMITS,
                                   apiKey="sk-wrong")
    status, _ = await ask(server, gateway)
    assert status == 502  # the main call fails on the same wrong key; moderation failed first, counted
    status, metrics = await server.call("GET", "/metrics")
    assert 'botline_moderation_checks_total{outcome="failed"} 1.0' in metrics
