"""AI policies through a running server: CRUD in Flashback's shapes, and the judge on the turn pipeline
(log, alert and block; input and output; streamed and not)."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson
import pytest

from botline.accounts import create_account
from botline.app import STORE
from botline.config import GovernanceSettings
from tests.conftest import UPSTREAM_KEY, create_gateway
from tests.emulators.fake_llm import FakeLLM, Reply, ToolCall
from tests.support.callback_server import Answer, CallbackServer
from tests.support.server import RunningServer

BASE = "/api/v1/policy"
RULE = "Never reveal internal discount codes (they look like SAVE followed by digits)."
LEAK = "Sure! Use the internal code SAVE50 at checkout."
REFUSAL = GovernanceSettings().refusal_text


def verdict(*rules: int, why: str = "It reveals an internal discount code.") -> Reply:
    return Reply(text=orjson.dumps({"violations": [{"rule": r, "explanation": why} for r in rules]}).decode())


CLEAN = verdict()


async def add_policy(server: RunningServer, action: int, **fields: Any) -> str:
    status, body = await server.call("POST", BASE, json={
        "name": "Discount codes", "content": RULE, "riskType": "HIGH", "actionType": action, **fields})
    assert status == 200 and body["success"] is True, body
    return str(body["policy"]["id"])


async def ask(server: RunningServer, gateway: str, text: str = "Any discount?") -> tuple[int, Any]:
    return await server.call("POST", "/v1/chat/completions", json={
        "model": gateway, "messages": [{"role": "user", "content": text}], "user": "customer-7"})


async def listed(server: RunningServer, path: str, **params: str) -> dict[str, Any]:
    status, body = await server.call("GET", path, params=params)
    assert status == 200 and body["success"] is True, body
    return dict(body)


async def test_a_blocked_answer_is_not_shown_and_the_violation_is_listed(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    gateway = await create_gateway(server, fake_llm)
    policy = await add_policy(server, 2)
    fake_llm.script(Reply(text=LEAK))
    fake_llm.script_judge(CLEAN, verdict(1))
    status, body = await ask(server, gateway)
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == REFUSAL
    assert body["choices"][0]["finish_reason"] == "content_filter" and "SAVE50" not in str(body)
    judge_calls = [r for r in fake_llm.requests if r.body.get("response_format") == {"type": "json_object"}]
    assert len(judge_calls) == 2 and RULE in judge_calls[0].body["messages"][0]["content"]
    assert judge_calls[1].body["messages"][1]["content"] == LEAK
    [violation] = (await listed(server, f"{BASE}/violations"))["violations"]
    assert violation["policyId"] == policy and violation["explanation"] == "It reveals an internal discount code."
    assert (violation["severity"], violation["block"], violation["phase"]) == ("HIGH", True, "output")
    assert violation["userId"] == "customer-7" and violation["host"] == gateway
    [alert] = (await listed(server, f"{BASE}/{policy}/alerts"))["alerts"]
    assert alert["message"] == violation["explanation"] and "severity" not in alert


async def test_a_log_only_rule_lets_the_answer_pass_and_records_the_violation(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    gateway = await create_gateway(server, fake_llm)
    await add_policy(server, 0)
    fake_llm.script(Reply(text=LEAK))
    fake_llm.script_judge(CLEAN, verdict(1))
    status, body = await ask(server, gateway)
    assert status == 200 and body["choices"][0]["message"]["content"] == LEAK
    page = await listed(server, f"{BASE}/violations")
    assert page["total"] == 1 and page["violations"][0]["block"] is False
    assert (await listed(server, f"{BASE}/alerts"))["alerts"] == []


async def test_in_sequential_mode_a_blocked_message_never_reaches_the_model(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    gateway = await create_gateway(server, fake_llm)
    await add_policy(server, 2)
    status, body = await server.call("PUT", f"{BASE}/settings", json={"inputCheck": "sequential"})
    assert status == 200 and body["settings"]["inputCheck"] == "sequential"
    fake_llm.script_judge(verdict(1, why="Asks for internal codes."))
    status, body = await ask(server, gateway, "Tell me the internal discount codes")
    assert status == 400 and body["error"]["message"] == REFUSAL
    assert len(fake_llm.requests) == 1  # the judge only
    [violation] = (await listed(server, f"{BASE}/violations"))["violations"]
    assert violation["phase"] == "input"


async def test_in_parallel_mode_a_blocked_message_gets_the_refusal_and_the_answer_is_dropped(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    gateway = await create_gateway(server, fake_llm)
    await add_policy(server, 2)
    fake_llm.script(Reply(text="The internal codes are SAVE50 and SAVE70."))
    fake_llm.script_judge(verdict(1, why="Asks for internal codes."))
    sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        stream = await sdk.chat.completions.create(
            model=gateway, messages=[{"role": "user", "content": "Tell me the internal discount codes"}], stream=True)
        [chunk async for chunk in stream]
    await sdk.close()
    assert REFUSAL in str(refused.value) and "SAVE50" not in str(refused.value)
    assert len(fake_llm.requests) == 2  # the judge and the model, at once; the model's answer is dropped
    _status, stats = await server.call("GET", f"/api/v1/ai-gateways/{gateway}/stats")
    assert stats["requests"] == 1 and stats["outputTokens"] > 0  # its tokens are still recorded
    [violation] = (await listed(server, f"{BASE}/violations"))["violations"]
    assert violation["phase"] == "input"


async def test_in_parallel_mode_no_tool_runs_before_the_input_check_passed(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    async with CallbackServer() as site:
        function = {"name": "apply_discount", "description": "Applies a discount code to the cart.",
                    "callbackUrl": site.answer("/discount", Answer(body="applied")),
                    "contentFormat": {"type": "object", "properties": {"code": {"type": "string"}}}}
        gateway = await create_gateway(server, fake_llm, protocolFunctions=[function])
        await add_policy(server, 2)
        for judged_input, refused in ((verdict(1, why="Asks for internal codes."), True), (CLEAN, False)):
            judged = asyncio.Event()
            fake_llm.requests.clear()
            fake_llm.script(Reply(tool_calls=[ToolCall("apply_discount", {"code": "SAVE50"})]),
                            *([] if refused else [Reply(text="Done.")]))
            fake_llm.script_judge(Reply(text=judged_input.text, hold=judged), *([] if refused else [CLEAN]))
            turn = asyncio.create_task(ask(server, gateway, "Apply the internal code SAVE50"))
            await fake_llm.wait_for_requests(2)  # the judge (held) and the model, at once
            assert site.received_at("/discount") == []
            judged.set()
            status, body = await turn
            if refused:
                assert status == 400 and body["error"]["message"] == REFUSAL
                assert site.received_at("/discount") == [] and len(fake_llm.requests) == 2
            else:
                assert status == 200 and body["choices"][0]["message"]["content"] == "Done."
                assert len(site.received_at("/discount")) == 1


async def test_streamed_answers_under_a_block_rule_never_leak(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway = await create_gateway(server, fake_llm)
    await add_policy(server, 2)
    fake_llm.script(Reply(text=LEAK))
    fake_llm.script_judge(CLEAN, verdict(1))
    sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0)
    stream = await sdk.chat.completions.create(
        model=gateway, messages=[{"role": "user", "content": "Any discount?"}], stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REFUSAL and "SAVE50" not in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    fake_llm.script(Reply(text="We have no discounts today."))
    fake_llm.script_judge(CLEAN, CLEAN)
    stream = await sdk.chat.completions.create(
        model=gateway, messages=[{"role": "user", "content": "Any discount?"}], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == \
        "We have no discounts today."
    await sdk.close()


async def test_no_policy_in_scope_means_no_judge_call(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway = await create_gateway(server, fake_llm, name="Plain")
    other = await create_gateway(server, fake_llm, name="Guarded")
    await add_policy(server, 2, aiGatewayId=other)
    assert (await ask(server, gateway))[0] == 200
    assert len(fake_llm.requests) == 1


async def test_connection_stats_count_policy_tokens_violations_alerts_and_blocks(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    _, created = await server.call("POST", "/api/v1/ai/llm", json={
        "name": "Main", "aiType": "OTHER", "endpoint": fake_llm.base_url, "secret": UPSTREAM_KEY})
    connection = created["aiLlmId"]
    _, made = await server.call("POST", "/api/v1/ai-gateways", json={
        "name": "Shop", "parameters": {"llmConnectionId": connection, "modelName": "fake-model"}})
    await add_policy(server, 2)
    fake_llm.script(Reply(text=LEAK))
    fake_llm.script_judge(CLEAN, verdict(1))
    assert (await ask(server, made["aiGatewayId"]))[0] == 200
    status, body = await server.call("GET", "/api/v1/ai/llm/stats", params={"aiLlmId": connection})
    assert status == 200
    [stats] = body["stats"]
    assert stats["totalApiCalls"] == "3" and stats["totalPolicyViolations"] == "1"
    assert stats["totalAlerts"] == "1" and stats["totalBlocks"] == "1"
    assert int(stats["totalPolicyTokensIn"]) > 0
    assert int(stats["totalTokensIn"]) == int(stats["totalLlmTokensIn"]) + int(stats["totalPolicyTokensIn"])


async def test_crud_scopes_and_filters(server: RunningServer, fake_llm: FakeLLM) -> None:
    gateway = await create_gateway(server, fake_llm)
    policy = await add_policy(server, 1, aiGatewayId=gateway, orgId="flashback-org")
    status, body = await server.call("POST", BASE, json={
        "name": "x", "content": "y", "riskType": "LOW", "actionType": 0, "aiGatewayId": "nope"})
    assert status == 400 and body["success"] is False and "aiGatewayId" in body["message"]
    status, body = await server.call("POST", BASE, json={"name": "x", "content": "y", "riskType": "SEVERE",
                                                         "actionType": 0})
    assert status == 400 and "riskType" in body["message"]
    status, body = await server.call("PUT", f"{BASE}/{policy}", json={"aiGatewayId": None})
    assert status == 400 and "aiGatewayId" in body["message"]  # the scope is fixed
    status, body = await server.call("PUT", f"{BASE}/{policy}", json={"actionType": 2, "content": "Be nice."})
    assert status == 200 and body["policy"]["actionType"] == 2 and body["policy"]["content"] == "Be nice."
    status, body = await server.call("GET", f"{BASE}/{policy}")
    assert body["policy"]["aiGatewayId"] == gateway and body["policy"]["orgId"] != "flashback-org"
    assert [p["id"] for p in (await listed(server, BASE, aiGatewayId=gateway))["policies"]] == [policy]
    for params in ({"take": "101"}, {"from": "yesterday"}, {"severity": "SEVERE"}, {"block": "maybe"}):
        status, body = await server.call("GET", f"{BASE}/violations", params=params)
        assert status == 400 and body["success"] is False, params
    assert server.app is not None
    other = (await create_account(server.app[STORE], name="Tenant B")).secret
    assert (await server.call("GET", f"{BASE}/{policy}", key=other))[0] == 404
    assert (await server.call("DELETE", f"{BASE}/{policy}", key=other))[0] == 404
    assert (await server.call("DELETE", f"{BASE}/{policy}"))[1]["success"] is True
    assert (await listed(server, BASE))["policies"] == []


@pytest.mark.parametrize("answer", ["not json", '{"violations": [{"rule": "x"}]}'])
async def test_a_judge_that_cannot_answer_lets_the_turn_go_on(
    server: RunningServer, fake_llm: FakeLLM, answer: str,
) -> None:
    gateway = await create_gateway(server, fake_llm)
    await add_policy(server, 2)
    fake_llm.script(Reply(text="Hello!"))
    fake_llm.script_judge(Reply(text=answer), Reply(status=500))
    status, body = await ask(server, gateway)
    assert status == 200 and body["choices"][0]["message"]["content"] == "Hello!"
    assert (await listed(server, f"{BASE}/violations"))["total"] == 0
    status, metrics = await server.call("GET", "/metrics")
    assert 'botline_policy_checks_total{outcome="failed",phase="input"} 1.0' in metrics
    assert 'botline_policy_checks_total{outcome="failed",phase="output"} 1.0' in metrics


async def test_an_account_judge_connection_runs_the_checks_and_its_tokens_are_counted_apart(
    server: RunningServer, fake_llm: FakeLLM,
) -> None:
    async with FakeLLM(api_key="sk-judge-key") as judge:
        _, created = await server.call("POST", "/api/v1/ai/llm", json={
            "name": "Judge", "aiType": "OTHER", "endpoint": judge.base_url, "secret": "sk-judge-key"})
        connection = created["aiLlmId"]
        status, body = await server.call("PUT", f"{BASE}/settings",
                                         json={"judgeConnectionId": connection, "judgeModel": "judge-model"})
        assert status == 200 and body["settings"]["judgeConnectionId"] == connection
        gateway = await create_gateway(server, fake_llm)
        await add_policy(server, 0)
        judge.script_judge(CLEAN, verdict(1))
        fake_llm.script(Reply(text=LEAK))
        status, body = await ask(server, gateway)
        assert status == 200 and body["choices"][0]["message"]["content"] == LEAK
        assert [r.body["model"] for r in judge.requests] == ["judge-model", "judge-model"]
        assert [r.body.get("response_format") for r in fake_llm.requests] == [None]  # the model call only
        assert (await listed(server, f"{BASE}/violations"))["total"] == 1
        status, stats = await server.call("GET", f"/api/v1/ai-gateways/{gateway}/stats")
        assert (stats["requests"], stats["policyRequests"]) == (1, 2)
        assert stats["policyInputTokens"] > 0 and stats["policyOutputTokens"] > 0
        assert stats["inputTokens"] == body["usage"]["prompt_tokens"]  # the gateway's own call only
        status, body = await server.call("GET", "/api/v1/ai/llm/stats", params={"aiLlmId": connection})
        [judged] = body["stats"]
        assert judged["totalApiCalls"] == "2" and judged["totalLlmTokensIn"] == "0"
        assert judged["totalPolicyTokensIn"] == judged["totalTokensIn"] != "0"
        status, body = await server.call("DELETE", f"/api/v1/ai/llm/{connection}")
        assert status == 409 and "judge" in body["message"]
